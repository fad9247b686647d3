"""What a subscriber's handler receives: one decoded share event and where it came from.

The Avro body is authoritative for the change itself (id, op, key, before/after,
timestamps); Kafka headers add what only the transport knows (the source partition
of ``raw.<resource>`` that the router's delivery sequence runs on). Header names that
the router adds on share topics are declared here because the core only names the
raw ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncbus.core.jsonconv import to_json
from syncbus.core.topics import (
    H_DELIVERY_SEQUENCE,
    H_ROUTED_AT,
    H_SOURCE_PARTITION,
    decode_header,
)

Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None]


@dataclass(frozen=True, slots=True)
class Event:
    """One change as the subscriber may see it, with its position on the share topic."""

    event_id: str
    resource: str
    source: str
    op: str
    key: str | None
    region: str | None
    sequence: int
    occurred_at: dt.datetime
    published_at: dt.datetime
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    subscriber: str | None
    delivery_sequence: int | None
    routed_at: dt.datetime | None
    topic: str
    partition: int
    offset: int
    source_partition: int
    writer_fingerprint: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def record(self) -> Mapping[str, Any] | None:
        """The entity as it is now: ``before`` for a DELETE, ``after`` otherwise."""
        return self.before if self.op == "DELETE" else self.after

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (dates as ISO strings) for ``syncbus consume --json`` and logs."""
        return {
            "event_id": self.event_id,
            "resource": self.resource,
            "source": self.source,
            "op": self.op,
            "key": self.key,
            "region": self.region,
            "sequence": self.sequence,
            "delivery_sequence": self.delivery_sequence,
            "occurred_at": to_json(self.occurred_at),
            "published_at": to_json(self.published_at),
            "routed_at": to_json(self.routed_at),
            "before": to_json(self.before),
            "after": to_json(self.after),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }


def header_map(headers: Headers | None) -> dict[str, str]:
    """Kafka headers as str -> str; a repeated name keeps its last value."""
    out: dict[str, str] = {}
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in items:
        decoded = decode_header(value)
        if decoded is not None:
            out[name] = decoded
    return out


def build_event(
    record: Mapping[str, Any],
    *,
    resource: str,
    topic: str,
    partition: int,
    offset: int,
    message_key: bytes | None,
    headers: Mapping[str, str],
    writer_fingerprint: bytes,
) -> Event:
    """An Event from a decoded envelope and its message's coordinates.

    The router's delivery sequence runs per source partition of ``raw.<resource>``;
    a message without that header (not routed by syncbus) falls back to its share
    partition so gap checking still has a stream to follow.
    """
    key = record.get("key")
    if key is None and message_key is not None and record.get("op") != "HEARTBEAT":
        key = message_key.decode("utf-8", "replace")
    source_partition = headers.get(H_SOURCE_PARTITION)
    delivery = record.get("delivery_sequence")
    if delivery is None and H_DELIVERY_SEQUENCE in headers:
        delivery = int(headers[H_DELIVERY_SEQUENCE])
    return Event(
        event_id=str(record["event_id"]),
        resource=str(record.get("resource") or resource),
        source=str(record.get("source", "")),
        op=str(record["op"]),
        key=key,
        region=record.get("region"),
        sequence=int(record.get("sequence", 0)),
        occurred_at=record["occurred_at"],
        published_at=record["published_at"],
        before=record.get("before"),
        after=record.get("after"),
        subscriber=record.get("subscriber"),
        delivery_sequence=delivery,
        routed_at=record.get("routed_at") or _micros(headers.get(H_ROUTED_AT)),
        topic=topic,
        partition=partition,
        offset=offset,
        source_partition=int(source_partition) if source_partition else partition,
        writer_fingerprint=writer_fingerprint,
        headers=headers,
    )


def _micros(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromtimestamp(int(value) / 1_000_000, tz=dt.UTC)
