"""``Sink``: a subscriber's share landed in its own database, exactly once per event.

The sink is a transactional handler of the Subscriber SDK whose store lives in the
sink database itself: the upsert or delete of an event, its id in the dedupe table
and the last delivery sequence commit in one database transaction, so a crash at
any point leaves the tables either before or after the event, never half, and a
redelivered event is skipped. ``CREATE``/``UPDATE``/``SNAPSHOT`` upsert on the
delivered key, ``DELETE`` removes the row (the router sends one when a record leaves
the subscriber's scope, a move from Gusu to Xuanwu for example), ``HEARTBEAT`` only
counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from syncbus.connection import Connection
from syncbus.sink.tables import Table, field_kinds
from syncbus.subscriber import Event, SqlStore, Subscriber

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
        if event.op in UPSERT_OPS and event.after is not None:
            meta = {
                "_event_id": event.event_id,
                "_op": event.op,
                "_source_partition": event.source_partition,
                "_offset": event.offset,
                "_occurred_at": table.value("_occurred_at", event.occurred_at),
            }
            table.upsert(event.key, event.after, meta)
            self.subscriber.metrics.sink_rows.labels(*labels, "upsert").inc()
        else:
            table.delete(event.key)
            self.subscriber.metrics.sink_rows.labels(*labels, "delete").inc()

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
    try:
        return subscriber.run(
            Sink(subscriber), transactional=True, max_events=max_events, idle_timeout=idle_timeout
        )
    finally:
        subscriber.close()
        store.close()
