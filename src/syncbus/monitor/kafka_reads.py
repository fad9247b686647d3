"""What the monitor asks the brokers: offsets, committed offsets, group members, records.

Everything is read from the central side with the admin API and an assign-only
consumer (no group, no commits), so nothing depends on a city process exporting
metrics. Each call answers for the partitions it could read and leaves out the
rest: a topic deleted between two cycles or a group that never committed is a gap
in one cycle's figures, never an exception out of the monitor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from syncbus.connection import Connection

log = logging.getLogger("syncbus.monitor")

TP = tuple[str, int]
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Record:
    """The parts of a record the monitor uses: when it was written, its headers and
    (for the envelope's timestamps) its value."""

    timestamp_s: float
    headers: dict[str, bytes]
    value: bytes | None = None


def record_of(message: Message) -> Record:
    millis = message.timestamp()[1]
    found = message.headers() or []
    pairs = found.items() if isinstance(found, dict) else found
    headers = {k: v for k, v in pairs if isinstance(v, bytes)}
    return Record(millis / 1000.0, headers, message.value())


class ClusterReader:
    """Batch reads of the cluster's offsets and records for one monitor cycle."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._admin = AdminClient(connection.confluent())
        self._points = Consumer(connection.confluent(**_assign_only("points")))
        self.tail = Consumer(connection.confluent(**_assign_only("tail")))
        self._groups: dict[str, Consumer] = {}  # group -> its offset reader

    def policy_consumer(self) -> Consumer:
        """A consumer for following the policy topic (assigned by the caller)."""
        return Consumer(self._connection.confluent(**_assign_only("policy")))

    def close(self) -> None:
        self.forget_groups(())
        self._points.close()
        self.tail.close()

    def partitions(self) -> dict[str, int]:
        """Partition count of every topic in the cluster."""
        topics = self._admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics
        return {name: len(meta.partitions) for name, meta in topics.items() if meta.error is None}

    def ends(self, tps: Iterable[TP]) -> dict[TP, int]:
        """High watermarks (the offset the next record will get) in one request."""
        return self._list_offsets(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]

    def starts(self, tps: Iterable[TP]) -> dict[TP, int]:
        return self._list_offsets(tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]

    def _list_offsets(self, tps: Iterable[TP], spec: OffsetSpec) -> dict[TP, int]:
        request = {TopicPartition(t, p): spec for t, p in tps}
        if not request:
            return {}
        out: dict[TP, int] = {}
        futures = self._admin.list_offsets(request, request_timeout=REQUEST_TIMEOUT_S)
        for tp, future in futures.items():
            try:
                out[(tp.topic, tp.partition)] = int(future.result().offset)
            except KafkaException as exc:
                log.debug("offsets of %s/%d not read: %s", tp.topic, tp.partition, exc)
        return out

    def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        """The offsets ``group`` committed on ``tps`` (none for a group that never committed).

        Asked through a consumer whose ``group.id`` is ``group`` (it never joins nor
        commits), not through ``AdminClient.list_consumer_group_offsets``: librdkafka's
        admin path dereferences a missing group handle when the coordinator answers
        NOT_COORDINATOR (librdkafka #5040), which killed the monitor with SIGSEGV while a
        fresh cluster was still loading its coordinators.
        """
        wanted = [TopicPartition(t, p) for t, p in tps]
        if not wanted:
            return {}
        try:
            found = self._offsets_of(group).committed(wanted, timeout=REQUEST_TIMEOUT_S)
        except KafkaException as exc:
            log.debug("committed offsets of group %s not read: %s", group, exc)
            return {}
        return {
            (tp.topic, tp.partition): int(tp.offset)
            for tp in found
            if tp.offset >= 0 and tp.error is None
        }

    def _offsets_of(self, group: str) -> Consumer:
        consumer = self._groups.get(group)
        if consumer is None:
            config = _assign_only("offsets") | {"group.id": group}
            consumer = self._groups[group] = Consumer(self._connection.confluent(**config))
        return consumer

    def forget_groups(self, keep: Iterable[str]) -> None:
        """Close the offset readers of groups no route needs any more."""
        for group in set(self._groups) - set(keep):
            self._groups.pop(group).close()

    def members(self, group: str) -> int | None:
        """Live members of ``group``; None when the broker cannot say."""
        try:
            described = self._admin.describe_consumer_groups(
                [group], request_timeout=REQUEST_TIMEOUT_S
            )[group].result()
        except KafkaException as exc:
            log.debug("group %s not described: %s", group, exc)
            return None
        return len(described.members or [])

    def read_at(self, points: dict[TP, int], timeout: float = 5.0) -> dict[TP, Record]:
        """The record at each (topic, partition) -> offset; missing ones are left out."""
        if not points:
            return {}
        self._points.assign([TopicPartition(t, p, o) for (t, p), o in points.items()])
        wanted, out = dict(points), {}
        deadline = time.monotonic() + timeout
        while wanted and time.monotonic() < deadline:
            for message in self._points.consume(len(wanted), timeout=0.2):
                if message.error() is not None:
                    continue
                tp = (message.topic() or "", int(message.partition() or 0))
                if tp in wanted and int(message.offset() or 0) >= wanted[tp]:
                    out[tp] = record_of(message)
                    del wanted[tp]
                    self._points.pause([TopicPartition(*tp)])
        self._points.resume(self._points.assignment())  # pausing outlives the assignment
        self._points.unassign()
        return out


def _assign_only(role: str) -> dict[str, object]:
    """A consumer that only reads assigned partitions: never joins nor commits a group."""
    return {
        "group.id": f"syncbus-monitor-{role}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 50,
        "max.partition.fetch.bytes": 262_144,
    }
