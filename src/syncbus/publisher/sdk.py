"""``Publisher``: what a department system embeds to publish its changes.

Per batch: every change is checked (op rules, schema, field formats, ownership)
before anything is stored; accepted changes get their sequence numbers and event
ids, are encoded once, committed to the durable spool in one transaction, and
only then handed to librdkafka's idempotent producer. An event leaves the spool
when the broker acknowledges it, so ``publish`` returning means "will be
delivered, even across a crash", and ``flush`` returning 0 means "delivered".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from syncbus.connection import Connection
from syncbus.core.model import Bus
from syncbus.core.topics import raw_topic
from syncbus.publisher.changes import (
    HEADROOM_BYTES,
    MAX_EVENT_BYTES,
    Change,
    Prepared,
    ResourceWriter,
    new_event_ids,
    now_micros,
    resolve,
)
from syncbus.publisher.errors import ChangeRejected, PublisherClosed, SpoolFull, UnknownResource
from syncbus.publisher.heartbeat import Heartbeats
from syncbus.publisher.metrics import PublisherMetrics
from syncbus.publisher.refused import RefusedEvent
from syncbus.publisher.sender import Sender
from syncbus.publisher.spool import Spool, default_spool_path

OnReject = Callable[[int, ChangeRejected], None]


class Publisher:
    """Publishes the resources one department owns to ``raw.<resource>``.

    ``heartbeats``: ``True`` sends a HEARTBEAT for every owned resource that was
    quiet for half its catalog update cycle; a mapping gives resource -> seconds.
    ``max_spooled`` bounds the undelivered events kept while the broker is away;
    beyond it ``publish`` raises ``SpoolFull`` instead of accepting more.
    ``max_event_bytes`` bounds one event's key and value (the broker's default
    ``max.message.bytes`` is about 1 MB): a bigger change is rejected at ``publish``,
    naming the resource and both sizes. An event the broker still refuses for good (a
    topic with a smaller limit, a missing ACL or topic) is kept aside in the spool, not
    retried ahead of the others: ``on_refused`` is called with it (from the sending
    thread), ``refused()`` lists it, ``resend_refused()`` sends it again.
    Each ``publish`` call is one spool transaction (about 0.5 ms here); systems with
    more than a few hundred changes a second hand them over with ``publish_many``.
    ``sync="full"`` (the default) puts every accepted batch on disk before ``publish``
    returns; ``"normal"`` survives a crash of the process but not of the host (see
    ``syncbus.publisher.spool``).
    ``topic_of`` maps a resource to its topic; anything but the default
    (``raw.<resource>``) is for benchmarks that must not feed a live router.
    """

    def __init__(
        self,
        department: str,
        bus: Bus,
        connection: Connection | str | None = None,
        *,
        spool_path: Path | str | None = None,
        max_spooled: int = 1_000_000,
        window: int = 100_000,
        heartbeats: bool | Mapping[str, float] = False,
        sync: Literal["normal", "full"] = "full",
        registry: CollectorRegistry | None = None,
        producer_config: dict[str, Any] | None = None,
        topic_of: Callable[[str], str] = raw_topic,
        max_event_bytes: int = MAX_EVENT_BYTES,
        on_refused: Callable[[list[RefusedEvent]], None] | None = None,
    ) -> None:
        if department not in bus.departments:
            known = ", ".join(sorted(bus.departments))
            raise UnknownResource(f"unknown department {department!r}; the bus has: {known}")
        if not isinstance(connection, Connection):
            connection = Connection.from_env(connection)
        self.department = department
        self.bus = bus
        self.max_spooled = max_spooled
        self.max_event_bytes = max_event_bytes
        self.metrics = PublisherMetrics.of(registry)
        self._writers: dict[str, ResourceWriter] = {}
        self._lock = threading.RLock()  # sequence order == spool order == send order
        self._closed = False
        self.spool = Spool(spool_path or default_spool_path(department), sync, department)
        for resource, _, events in self.spool.lost:
            self.metrics.lost.labels(resource).inc(events)
        self._sequences = self.spool.sequences()
        self._heartbeats = self._heartbeat_plan(heartbeats)
        self._sender = Sender(
            self.spool, connection, department, self.metrics, window=window,
            on_tick=self._heartbeats.tick if self._heartbeats else None,
            config={"message.max.bytes": max(max_event_bytes, 1000) + HEADROOM_BYTES,
                    **(producer_config or {})},
            topic_of=topic_of, on_refused=on_refused,
        )
        self.metrics.spool_depth.set(self.spool.depth)

    def _heartbeat_plan(self, heartbeats: bool | Mapping[str, float]) -> Heartbeats | None:
        if heartbeats is False:
            return None
        if heartbeats is True:
            owned = [r for r in self.bus.resources.values() if r.owner == self.department]
            intervals = {r.id: r.update_cycle_seconds / 2 for r in owned}
        else:
            intervals = dict(heartbeats)
            for resource in intervals:
                resolve(self.bus, self.department, resource)
        return Heartbeats(intervals, self.heartbeat)

    def writer(self, resource: str) -> ResourceWriter:
        """The compiled checker and encoder of a resource this department owns."""
        found = self._writers.get(resource)
        if found is None:
            try:
                found = ResourceWriter(self.bus, self.department, resource,
                                       max_event_bytes=self.max_event_bytes)
            except Exception:
                self.metrics.rejected.labels(resource).inc()
                raise
            self._writers[resource] = found
        return found

    def sequence(self, resource: str) -> int:
        """The last sequence number given to an event of ``resource`` (0: none yet)."""
        return self._sequences.get(resource, 0)

    # ------------------------------------------------------------------ publish

    def publish(
        self,
        resource: str,
        op: str,
        after: Mapping[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        occurred_at: Any = None,
    ) -> str:
        """Accept one change; returns its event id. Raises ChangeRejected naming the field."""
        return self.publish_many(resource, [Change(op, after, before, occurred_at)])[0]

    def publish_many(
        self,
        resource: str,
        changes: Iterable[Change | Mapping[str, Any]],
        on_reject: OnReject | None = None,
    ) -> list[str]:
        """Accept a batch; returns the event ids of the accepted changes, in order.

        Without ``on_reject`` the batch is all or nothing: the first bad change
        raises (its ``index`` says which) and nothing is spooled. With it, each bad
        change is reported as ``on_reject(index, error)`` and the good ones go on.
        """
        writer = self.writer(resource)
        items = [item if isinstance(item, Change) else Change(**item) for item in changes]
        with self._lock:
            first = self._sequences.get(resource, 0) + 1
            rows, accepted = writer.prepare(
                items, first, new_event_ids(len(items)), now_micros(),
                partial(self._reject, resource, on_reject=on_reject),
            )
            if rows:
                self._check_room(len(rows))
                self._store(resource, rows, first + len(rows) - 1)
        return accepted

    def _reject(
        self, resource: str, exc: ChangeRejected, on_reject: OnReject | None = None
    ) -> None:
        self.metrics.rejected.labels(resource).inc()
        if on_reject is None:
            raise exc
        on_reject(exc.index, exc)

    def _check_room(self, n: int) -> None:
        if self._closed:
            raise PublisherClosed(f"publisher of {self.department} is closed")
        if self.spool.depth + n > self.max_spooled:
            self.metrics.spool_full.inc()
            raise SpoolFull(
                f"spool {self.spool.path} holds {self.spool.depth} undelivered events and "
                f"the bound is {self.max_spooled}: the broker has not acknowledged events for "
                "a while (is it reachable?); nothing of this batch of "
                f"{n} was accepted, retry later or raise max_spooled"
            )

    def _store(self, resource: str, rows: list[Prepared], last_seq: int) -> None:
        if not rows:
            return
        accepted_at = time.time()
        first = self.spool.append(resource, rows, last_seq, accepted_at)
        self._sequences[resource] = last_seq
        self._sender.offer(first, resource, rows)
        self.metrics.spooled.labels(resource).inc(len(rows))
        self.metrics.spool_depth.set(self.spool.depth)
        if self._heartbeats is not None:
            self._heartbeats.touch(resource)

    def heartbeat(self, resource: str) -> str:
        """Publish a HEARTBEAT for ``resource`` now; returns its event id."""
        writer = self.writer(resource)
        region = self.bus.departments[self.department].region
        with self._lock:
            self._check_room(1)
            seq = self._sequences.get(resource, 0) + 1
            event_id = new_event_ids(1)[0]
            row = writer.heartbeat(seq, event_id, now_micros(), region)
            self._store(resource, [row], seq)
        self.metrics.heartbeats.labels(resource).inc()
        return event_id

    # ------------------------------------------------- refused by the broker

    def refused(self) -> list[RefusedEvent]:
        """Events the broker refused for good, kept in the spool (oldest first)."""
        return self.spool.refused()

    def resend_refused(self, spool_ids: Iterable[int] | None = None) -> int:
        """Queue refused events again (all, or these), once their cause is fixed: the topic
        created, the ACL granted. They keep their event ids and sequence numbers, and go
        after everything accepted before; returns how many."""
        with self._lock:
            self._sender.renew_producer()  # its metadata may still say "no such topic"
            count = self.spool.requeue(spool_ids, time.time())
        self.metrics.spool_depth.set(self.spool.depth)
        return count

    def drop_refused(self, spool_ids: Iterable[int]) -> int:
        """Forget refused events for good (after republishing them another way)."""
        return self.spool.drop_refused(spool_ids)

    # ---------------------------------------------------------------- lifecycle

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until every accepted event is acknowledged; returns how many are not yet."""
        return self._sender.wait(timeout)

    def close(self, timeout: float = 30.0) -> int:
        """Flush, then stop; unacknowledged events stay spooled for the next publisher
        on this spool. Returns how many stayed."""
        with self._lock:
            if self._closed:
                return self.spool.depth
            self._closed = True
        left = self.flush(timeout)
        self._sender.close()
        self.spool.close()
        return left

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
