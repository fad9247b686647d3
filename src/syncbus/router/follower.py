"""Following the compacted policy topic: the router's live policy.

Every worker reads every partition of ``syncbus.policy`` (manual assignment, no
group), so each holds the whole policy; ``poll()`` is cheap and non-blocking, and
the router calls it from a timer, so a grant approved, revoked or expired by
``syncbus apply`` reaches routing within about a second.
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError

from syncbus.admin.compacted import assign_from_beginning, read_to_end
from syncbus.connection import Connection
from syncbus.core.model import Bus
from syncbus.core.policy import bus_from_records


class PolicyFollower:
    def __init__(self, connection: Connection, topic: str) -> None:
        self.topic = topic
        self._records: dict[str, bytes | None] = {}
        self.offset = -1  # of the last record polled: names a policy version (resync ids)
        self._consumer = Consumer(
            connection.confluent(
                **{
                    "group.id": connection.own_group("policy-follower"),
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                }
            )
        )
        assign_from_beginning(self._consumer, topic)

    def _keep(self, key: str, value: bytes | None) -> None:
        self._records[key] = value

    def load(self, timeout: float = 30.0) -> Bus:
        """The whole policy as it stands now; raises ValueError when there is none."""
        read_to_end(self._consumer, self.topic, self._keep, timeout)
        return bus_from_records(self._records)

    def poll(self) -> Bus | None:
        """A new bus when records arrived since the last call, else None."""
        changed = False
        for message in self._consumer.consume(1000, timeout=0):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {self.topic}: {error}")
                continue
            key = message.key()
            self._keep(key.decode() if key else "", message.value())
            self.offset = max(self.offset, message.offset() or 0)
            changed = True
        return bus_from_records(self._records) if changed else None

    def close(self) -> None:
        self._consumer.close()
