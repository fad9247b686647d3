"""Completeness on the subscriber side: holes in the router's delivery sequence.

The router numbers its deliveries per (subscriber, resource, source partition of
``raw.<resource>``), +1 each. A number above the expected one means deliveries
went missing between router and subscriber; a number at or below the last one is
a redelivery (or a replay) and not a gap, so after a restart with state that lags
the stream nothing is reported twice. No Kafka here: the state is a dict the
subscriber persists with its dedupe store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
