"""Events the broker refused for good, kept beside the spool instead of blocking it.

Kafka refuses some records whatever the number of retries: a record larger than
the topic's ``max.message.bytes``, a topic the department's principal may not
write, a topic that does not exist. Retried, such a record would hold back every
later event of its department forever. The sender takes it out of the send queue
and the spool keeps it here, in the same SQLite file and transaction that takes
it off the queue, with the broker's error and reason: nothing is lost, and the
host is told (``Publisher(on_refused=...)``, ``Publisher.refused()``, the metric
``syncbus_publisher_refused_total``).

They stay local on purpose: a department's principal may write only its own raw
topics, not ``syncbus.dlq``. Once the cause is fixed (the topic created, the ACL
granted) ``Publisher.resend_refused()`` queues them again with their event ids
and sequence numbers; ``drop_refused()`` forgets them.
"""

from __future__ import annotations

from typing import NamedTuple

# librdkafka error names (``KafkaError.name()``) of refusals that retrying cannot fix
PERMANENT_ERRORS = frozenset({
    "MSG_SIZE_TOO_LARGE",  # the broker: over the topic's max.message.bytes
    "_MSG_SIZE_TOO_LARGE",  # librdkafka: over the producer's message.max.bytes
    "RECORD_LIST_TOO_LARGE",
    "INVALID_RECORD",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "UNKNOWN_TOPIC_OR_PART",  # the broker, or librdkafka once metadata says so
    "_UNKNOWN_TOPIC",
    "TOPIC_EXCEPTION",  # an invalid topic name
    "_INVALID_ARG",
})

SCHEMA = """
CREATE TABLE IF NOT EXISTS refused (
    id INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    meta TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    refused_at REAL NOT NULL,
    error TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


def is_permanent(error_name: str) -> bool:
    """Does retrying this librdkafka error never help (see ``PERMANENT_ERRORS``)?"""
    return error_name in PERMANENT_ERRORS


class RefusedEvent(NamedTuple):
    """One refused event: its spool id, what it was, and why the broker refused it."""

    id: int
    resource: str
    key: bytes
    value: bytes
    meta: str
    accepted_at: float
    refused_at: float
    error: str  # librdkafka's error name, e.g. MSG_SIZE_TOO_LARGE
    reason: str  # librdkafka's text

    @property
    def event_id(self) -> str:
        return self.meta.split("\x1f", 1)[0]

    @property
    def sequence(self) -> int:
        return int(self.meta.split("\x1f")[4])

    def __str__(self) -> str:
        return (f"event {self.event_id} of {self.resource} (sequence {self.sequence}, "
                f"{len(self.value)} bytes) refused by the broker: {self.error}: {self.reason}")
