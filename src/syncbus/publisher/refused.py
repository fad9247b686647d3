"""Events the broker refused for good, kept beside the spool instead of blocking it.

(``SpooledEvent``, an event as the spool keeps it, lives here too: a refused event
is one of them, with the broker's error.)

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

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

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


class SpooledEvent(NamedTuple):
    """One event as the spool keeps it (``meta``: the per-event header parts)."""

    id: int
    resource: str
    key: bytes
    value: bytes
    meta: str
    accepted_at: float


class RefusedEvent(NamedTuple):
    """One refused event: what it was, and why the broker refused it."""

    event: SpooledEvent
    refused_at: float
    error: str  # librdkafka's error name, e.g. MSG_SIZE_TOO_LARGE
    reason: str  # librdkafka's text

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RefusedEvent:
        """From a row of the ``refused`` table (its columns in order)."""
        return cls(SpooledEvent(*row[:6]), *row[6:])

    def row(self) -> tuple[Any, ...]:
        return (*self.event, self.refused_at, self.error, self.reason)

    @property
    def id(self) -> int:
        return self.event.id

    @property
    def resource(self) -> str:
        return self.event.resource

    @property
    def value(self) -> bytes:
        return self.event.value

    @property
    def event_id(self) -> str:
        return self.event.meta.split("\x1f", 1)[0]

    @property
    def sequence(self) -> int:
        return int(self.event.meta.split("\x1f")[4])

    def __str__(self) -> str:
        return (f"event {self.event_id} of {self.resource} (sequence {self.sequence}, "
                f"{len(self.value)} bytes) refused by the broker: {self.error}: {self.reason}")


Also = Callable[[sqlite3.Connection], None]


class RefusedEvents(ABC):
    """The spool's half that keeps refused events (``Spool`` inherits it): the same file,
    lock and transactions as the send queue, so an event is in exactly one of them.
    The three abstract methods are the send queue's, which ``Spool`` defines."""

    _lock: threading.Lock
    _db: sqlite3.Connection

    @abstractmethod
    def _unsent(self, ids: list[int]) -> list[SpooledEvent]:
        """Defined by ``Spool``."""

    @abstractmethod
    def _take_off(self, ids: list[int], also: Also | None = None) -> Any:
        """Defined by ``Spool``."""

    @abstractmethod
    def _append_locked(self, resource: str, keys: list[bytes], values: list[bytes],
                       metas: list[str], now: float, last_seq: int | None,
                       also: Also | None = None) -> int:
        """Defined by ``Spool``."""

    def refuse(self, ids: Iterable[int], error: str, reason: str,
               now: float) -> list[RefusedEvent]:
        """Take events the broker refused for good off the send queue and keep them in
        ``refused``, in one transaction (see ``syncbus.publisher.refused``)."""
        wanted = sorted(set(ids))
        with self._lock:
            found = [RefusedEvent(e, now, error, reason) for e in self._unsent(wanted)]
            if not found:
                return []

            def keep(db: sqlite3.Connection) -> None:
                db.executemany("INSERT OR REPLACE INTO refused VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               [e.row() for e in found])

            self._take_off([e.id for e in found], keep)
            return found

    def refused(self) -> list[RefusedEvent]:
        """Every refused event kept, oldest first."""
        with self._lock:
            return [RefusedEvent.from_row(row) for row in self._db.execute(
                "SELECT * FROM refused ORDER BY id")]

    def requeue(self, ids: Iterable[int] | None = None, now: float = 0.0) -> int:
        """Queue refused events (all, or ``ids``) again, after everything spooled, with
        their event ids and sequence numbers; returns how many."""
        chosen = None if ids is None else set(ids)
        with self._lock:
            events = [RefusedEvent.from_row(row) for row in self._db.execute(
                "SELECT * FROM refused ORDER BY id")]
            events = [e for e in events if chosen is None or e.id in chosen]
            runs: list[list[RefusedEvent]] = []
            for event in events:  # a batch holds one resource
                if runs and runs[-1][0].resource == event.resource:
                    runs[-1].append(event)
                else:
                    runs.append([event])
            for run in runs:
                def forget(db: sqlite3.Connection, run: list[RefusedEvent] = run) -> None:
                    db.executemany("DELETE FROM refused WHERE id = ?", [(e.id,) for e in run])

                self._append_locked(run[0].resource, [e.event.key for e in run],
                                    [e.value for e in run], [e.event.meta for e in run],
                                    now or run[0].event.accepted_at, None, forget)
            return len(events)

    def drop_refused(self, ids: Iterable[int]) -> int:
        """Forget refused events for good; returns how many were kept."""
        with self._lock:
            cursor = self._db.executemany("DELETE FROM refused WHERE id = ?",
                                          [(i,) for i in ids])
            return max(cursor.rowcount, 0)

