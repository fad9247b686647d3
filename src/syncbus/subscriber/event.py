"""What a subscriber's handler receives: one decoded share event and where it came from.

The Avro body is authoritative for the change itself (id, op, key, before/after,
timestamps); Kafka headers add what only the transport knows (the source partition
of ``raw.<resource>`` that the router's delivery sequence runs on, and the issue #17
contract's headers, ``core.topics``):

- ``Event.version``: the raw offset of the change (``syncbus-source-offset``). A key
  lives in one raw partition, so it orders the changes of a key; ``None`` on a
  delivery of an older router. ``newer(version, held, resync)`` is the rule the SDK
  and the sink apply: a live delivery only when its version is above the one held for
  (resource, key), a resync delivery when above or equal (a full resync after a lost
  database resends the same versions).
- ``Event.resync``: the resync id on a resync delivery (``syncbus-resync``), else
  ``None``; ``Event.from_resync`` says the same as a bool.

A message with a ``syncbus-marker`` header is a resync marker, not an event:
``parse_marker`` reads it (``Marker``) and the subscriber never hands it to a handler.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncbus.core.jsonconv import to_json
from syncbus.core.topics import (
    H_DELIVERY_SEQUENCE,
    H_MARKER,
    H_RESOURCE,
    H_RESYNC,
    H_RESYNC_KIND,
    H_ROUTED_AT,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_WATERMARK,
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
    version: int | None = None  # raw offset of the change; None from an older router
    resync: str | None = None  # the resync id of a resync delivery; None when live

    @property
    def from_resync(self) -> bool:
        """A delivery of a resync (snapshot or retraction), not a live change."""
        return self.resync is not None

    @property
    def versioned(self) -> bool:
        """Whether the version rule applies: a keyed state change with a version
        (heartbeats are not state; an older router's deliveries carry no version)."""
        return self.version is not None and self.key is not None and self.op != "HEARTBEAT"

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
            "version": self.version,
            "resync": self.resync,
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
        version=_offset(headers.get(H_SOURCE_OFFSET)),
        resync=headers.get(H_RESYNC) or None,
    )


def newer(version: int, held: int | None, resync: bool) -> bool:
    """Whether a delivery of ``version`` replaces the ``held`` one of its key (contract
    section 2): live only when greater, resync when greater or equal; nothing held:
    yes. A DELETE's version is held like any other (a tombstone)."""
    if held is None:
        return True
    return version >= held if resync else version > held


@dataclass(frozen=True, slots=True)
class Marker:
    """A resync's begin or end marker as read from one partition of a share topic.

    ``watermark``: per raw partition, the raw end offset (exclusive) the resync reads
    up to; rows of a key at or above it came from live events after it began."""

    resync: str
    marker: str  # "begin" | "end"
    kind: str  # "delta" | "full"
    resource: str
    watermark: Mapping[int, int]
    topic: str
    partition: int
    offset: int


MARKERS = ("begin", "end")
KINDS = ("delta", "full")


class BadMarker(ValueError):
    """A message with a ``syncbus-marker`` header that is not a contract marker; it is
    skipped (never handed on, never dead-lettered) and the reason is logged."""


def is_marker(headers: Mapping[str, str]) -> bool:
    return H_MARKER in headers


def parse_marker(
    headers: Mapping[str, str], *, resource: str, topic: str, partition: int, offset: int
) -> Marker:
    """The marker a message's headers describe; ``BadMarker`` names what is wrong.
    ``resource`` (from the topic) stands in when the marker lacks ``syncbus-resource``."""
    where = f"{topic}[{partition}]@{offset}"
    resync, marker = headers.get(H_RESYNC), headers.get(H_MARKER)
    kind = headers.get(H_RESYNC_KIND)
    if not resync:
        raise BadMarker(f"marker at {where} has no {H_RESYNC} header (the resync id)")
    if marker not in MARKERS or kind not in KINDS:
        raise BadMarker(
            f"marker at {where}: {H_MARKER}={marker!r}, {H_RESYNC_KIND}={kind!r}; "
            f"expected one of {MARKERS} and one of {KINDS}"
        )
    try:
        raw = json.loads(headers.get(H_WATERMARK) or "{}")
        watermark = {int(p): int(o) for p, o in raw.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise BadMarker(
            f"marker at {where}: {H_WATERMARK} is not JSON {{\"<raw partition>\": <offset>}}: "
            f"{exc}"
        ) from None
    return Marker(
        resync, marker, kind, headers.get(H_RESOURCE) or resource, watermark, topic,
        partition, offset,
    )


def _offset(value: str | None) -> int | None:
    """A source-offset header as an int; a value that is no number is ignored (as if
    the header were absent: the delivery is applied, as an older router's would be)."""
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _micros(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromtimestamp(int(value) / 1_000_000, tz=dt.UTC)
