"""``Sink``: a subscriber's share landed in its own database, exactly once per event.

The sink is a transactional handler of the Subscriber SDK whose store lives in the
sink database itself: the upsert or delete of an event, its id in the dedupe table
and the last delivery sequence commit in one database transaction, so a crash at
any point leaves the tables either before or after the event, never half, and a
redelivered event is skipped. ``CREATE``/``UPDATE``/``SNAPSHOT`` upsert on the
delivered key, ``DELETE`` removes the row (the router sends one when a record leaves
the subscriber's scope, a move from Gusu to Xuanwu for example), ``HEARTBEAT`` only
counts.

Grants move data both ways (issue #17): each row keeps its version (``_version``, the
raw offset of its change), the resync that last wrote it (``_resync``), its raw
partition (``_source_partition``) and where on the share it came from
(``_share_partition``, ``_offset``). The SDK already hands on only newer versions; the
table applies the same rule again in SQL (``tables``), so a restart or a second sink
on the same database cannot move a row back, and a DELETE leaves a tombstone so that
an older snapshot cannot bring the key back. When a ``full`` resync of a resource is
complete (its end markers are in on every partition of the share topic,
``Subscriber.on_resync_end``), the rows of that resource it did not write and whose
version is below the watermark of their raw partition are dropped, in the same
transaction as the last end marker: the table then equals the share again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from syncbus.connection import Connection
from syncbus.sink.tables import Table, field_kinds
from syncbus.subscriber import Event, ResyncInfo, SqlStore, Subscriber

UPSERT_OPS = frozenset({"CREATE", "UPDATE", "SNAPSHOT"})


class Sink:
    """Applies events to one table per resource; call it as ``handler(event, store)``."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.codec = subscriber.codec
        self._tables: dict[str, Table] = {}
        self._kinds: dict[bytes, dict[str, str]] = {}

    def __call__(self, event: Event, store: SqlStore) -> None:
        if event.op == "HEARTBEAT":
            return
        if event.key is None:
            raise ValueError(f"{event.op} event {event.event_id} without a key: cannot place it")
        table = self._table(event, store)
        labels = (self.subscriber.subscriber_id, event.resource)
        version = event.version if event.versioned else None
        if event.op in UPSERT_OPS and event.after is not None:
            meta = {
                "_event_id": event.event_id,
                "_op": event.op,
                "_source_partition": event.source_partition,
                "_offset": event.offset,
                "_share_partition": event.partition,
                "_occurred_at": table.value("_occurred_at", event.occurred_at),
                "_version": version,
                "_resync": event.resync,
            }
            table.upsert(event.key, event.after, meta)
            self.subscriber.metrics.sink_rows.labels(*labels, "upsert").inc()
        else:
            table.delete(event.key, version, event.resync, event.source_partition)
            self.subscriber.metrics.sink_rows.labels(*labels, "delete").inc()

    def resync_ended(self, info: ResyncInfo) -> None:
        """A resync is complete: after a ``full`` one, drop the rows of its resource that
        the share no longer holds (``Table.drop_unsent``); a ``delta`` one sent its
        deletes itself. Runs in the batch transaction of its last end marker."""
        if info.kind != "full":
            return
        table = self._tables.get(info.resource) or Table(self.subscriber.store, info.resource)
        if not table.exists():
            return  # nothing landed yet: nothing to drop
        dropped = table.drop_unsent(info.resync, info.watermark, info.begun)
        labels = (self.subscriber.subscriber_id, info.resource)
        self.subscriber.metrics.sink_rows.labels(*labels, "resync_drop").inc(dropped)

    def _table(self, event: Event, store: SqlStore) -> Table:
        kinds = self._kinds.get(event.writer_fingerprint)
        if kinds is None:
            schema = self.codec.writer_schema(event.writer_fingerprint)
            assert schema is not None, "a decoded event's writer schema is registered"
            kinds = self._kinds[event.writer_fingerprint] = field_kinds(schema)
        table = self._tables.get(event.resource)
        if table is None:
            table = self._tables[event.resource] = Table(store, event.resource)
        if not table.columns or not kinds.keys() <= table.columns.keys():
            table.ensure(kinds)
        return table


def run_sink(
    subscriber_id: str,
    database: str | Path,
    resources: Sequence[str],
    *,
    connection: Connection | None = None,
    group_id: str | None = None,
    max_events: int | None = None,
    idle_timeout: float | None = None,
    registry: CollectorRegistry | None = None,
    **subscriber_options: Any,
) -> int:
    """Keep ``database`` equal to the subscriber's share of ``resources``; returns how
    many events were applied. The consumer group defaults to ``<subscriber>.sink``."""
    store = SqlStore.open(database)
    subscriber = Subscriber(
        subscriber_id,
        resources,
        connection=connection,
        group_id=group_id or f"{subscriber_id}.sink",
        store=store,
        registry=registry,
        **subscriber_options,
    )
    sink = Sink(subscriber)
    also = subscriber.on_resync_end  # the caller's own, if it passed one

    def resync_ended(info: ResyncInfo) -> None:
        sink.resync_ended(info)
        if also is not None:
            also(info)

    subscriber.on_resync_end = resync_ended
    try:
        return subscriber.run(
            sink, transactional=True, max_events=max_events, idle_timeout=idle_timeout
        )
    finally:
        subscriber.close()
        store.close()
