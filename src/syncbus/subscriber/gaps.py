"""Completeness on the subscriber side: holes in the router's delivery sequence, and
whether a resync has arrived whole.

The router numbers its deliveries per (subscriber, resource, source partition of
``raw.<resource>``), +1 each. A number above the expected one means deliveries
went missing between router and subscriber; a number at or below the last one is
a redelivery (or a replay) and not a gap, so after a restart with state that lags
the stream nothing is reported twice. No Kafka here: the state is a dict the
subscriber persists with its dedupe store. Resync deliveries carry no meaningful
delivery sequence and are never fed to ``GapChecker`` (the SDK knows them by their
``syncbus-resync`` header).

Resyncs (contract section 4): the router writes a ``begin`` marker to every
partition of a share topic before a resync's first delivery and an ``end`` marker to
every partition after its last. ``advance`` is the bookkeeping, pure: it takes what
the store knows of a resync, one marker and the topic's partition count, and says
what the application is to be told: ``begin`` once (at the first marker of the
resync seen), ``end`` once, when end markers have been recorded for every partition
of the share topic. The state lives in the subscriber's store, so members of a
consumer group that share one store (the sink's database, one PostgreSQL) complete a
resync together, whichever records the last end; a member with a store of its own
that owns only some partitions records only those and never sees it complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from syncbus.subscriber.event import Marker

Stream = tuple[str, int]  # (resource, source partition)


@dataclass(frozen=True, slots=True)
class Gap:
    """Deliveries ``expected`` .. ``received - 1`` of one stream never arrived."""

    resource: str
    source_partition: int
    expected: int
    received: int

    @property
    def missing(self) -> int:
        return self.received - self.expected

    def __str__(self) -> str:
        return (
            f"{self.missing} deliveries missing on {self.resource} source partition "
            f"{self.source_partition}: expected {self.expected}, received {self.received}"
        )


class GapChecker:
    """Follows the last delivery sequence per stream; ``observe`` returns a Gap or None."""

    def __init__(self, last: Mapping[Stream, int] | None = None) -> None:
        self._last: dict[Stream, int] = dict(last or {})
        self._dirty: dict[Stream, int] = {}

    def observe(self, resource: str, source_partition: int, sequence: int | None) -> Gap | None:
        if sequence is None:
            return None
        stream = (resource, source_partition)
        last = self._last.get(stream)
        if last is not None and sequence <= last:
            return None
        self._last[stream] = self._dirty[stream] = sequence
        if last is not None and sequence > last + 1:
            return Gap(resource, source_partition, last + 1, sequence)
        return None

    def reset(self) -> None:
        """Forget every stream (a replay starts the numbering over)."""
        self._last.clear()
        self._dirty.clear()

    def take_changes(self) -> dict[Stream, int]:
        """Streams advanced since the last call, to persist with the batch."""
        changes, self._dirty = self._dirty, {}
        return changes


@dataclass(frozen=True, slots=True)
class ResyncInfo:
    """What the application is told of a resync of one share topic: its id, resource,
    ``kind`` (``delta``: only changed keys; ``full``: every key of the share), the
    ``watermark`` (raw partition -> raw end offset it read up to), the partitions of
    the share topic whose end marker was recorded, out of ``partitions``, and
    ``begun``: share partition -> offset of its begin marker, where one was seen
    (what came after it on that partition was written after the resync began)."""

    resync: str
    resource: str
    topic: str
    kind: str
    watermark: Mapping[int, int]
    partitions: int
    ended: frozenset[int] = field(default_factory=frozenset)
    complete: bool = False
    begun: Mapping[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "resync": self.resync,
            "resource": self.resource,
            "topic": self.topic,
            "kind": self.kind,
            "watermark": {str(p): o for p, o in sorted(self.watermark.items())},
            "partitions": self.partitions,
            "ended": sorted(self.ended),
            "complete": self.complete,
            "begun": {str(p): o for p, o in sorted(self.begun.items())},
        }


Notice = Literal["begin", "end"]


def advance(
    held: ResyncInfo | None, marker: Marker, partitions: int
) -> tuple[ResyncInfo, list[Notice]]:
    """The resync's state after ``marker`` and what to announce: ``begin`` at its first
    marker (a member that joined after the begin markers still hears of it first),
    ``end`` once every partition's end marker is in. Markers seen again (a redelivery,
    a replay) change nothing and announce nothing. ``partitions``: the share topic's
    partition count now (the largest seen wins, if partitions were added)."""
    notices: list[Notice] = []
    if held is None:
        held = ResyncInfo(
            marker.resync, marker.resource, marker.topic, marker.kind, marker.watermark,
            partitions,
        )
        notices.append("begin")
    if marker.marker == "begin" and marker.partition not in held.begun:
        held = replace(held, begun={**held.begun, marker.partition: marker.offset})
    if held.complete or marker.marker != "end":
        return held, notices
    ended = held.ended | {marker.partition}
    count = max(partitions, held.partitions, max(ended) + 1)
    state = replace(
        held,
        ended=ended,
        partitions=count,
        watermark=marker.watermark or held.watermark,
        complete=len(ended) >= count,
    )
    if state.complete:
        notices.append("end")
    return state, notices
