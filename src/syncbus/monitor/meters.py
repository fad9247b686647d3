"""The figures the monitor keeps per route and per resource, between two cycles.

A latency histogram counts samples into the bounds of ``latency_buckets`` (so the
Prometheus series and the rules' ``le`` labels agree); a short window of recent
cycles gives the status page its p50/p99 and throughput of the last minutes.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from itertools import accumulate

from syncbus.core.sla import (
    Route,
    RouteFigures,
    RouteState,
    quantile_from_buckets,
)

WINDOW_CYCLES = 60  # recent cycles kept for the page's quantiles and charts


@dataclass(slots=True)
class LatencyHistogram:
    """Counts per bucket (the last one is +Inf) and their sum, as Prometheus wants."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total_seconds += seconds

    def cumulative(self) -> list[int]:
        return list(accumulate(self.counts))


@dataclass(slots=True)
class Sample:
    """One cycle of one route, for the charts and the recent quantiles."""

    at: float
    routed: int
    counts: tuple[int, ...]


@dataclass(slots=True)
class RouteMeter:
    route: Route
    topic: str
    latency: LatencyHistogram
    routed: int = 0
    committed: int = 0
    dead_letters: int = 0
    lag_events: int = 0
    lag_seconds: float = 0.0
    topic_exists: bool = False
    state: RouteState | None = None
    recent: deque[Sample] = field(default_factory=lambda: deque(maxlen=WINDOW_CYCLES))

    def close_cycle(self, at: float) -> None:
        self.recent.append(Sample(at, self.routed, tuple(self.latency.counts)))

    def recent_quantile(self, quantile: float) -> float | None:
        """The quantile over the recent window (Prometheus's interpolation), or over
        everything seen while the window is not yet full or had no events."""
        counts = self.latency.counts
        if len(self.recent) == self.recent.maxlen:
            first = self.recent[0].counts
            window = [b - a for a, b in zip(first, counts, strict=True)]
            if sum(window):  # else the last figure known: a quiet route keeps its p99
                counts = window
        return quantile_from_buckets(
            (*self.latency.bounds, float("inf")), tuple(accumulate(counts)), quantile
        )

    def figures(self, silent_seconds: float) -> RouteFigures:
        return RouteFigures(
            routed=self.routed,
            committed=self.committed,
            dead_letters=self.dead_letters,
            latency_p99_seconds=self.recent_quantile(0.99),
            lag_seconds=self.lag_seconds,
            silent_seconds=silent_seconds,
        )

    def chart(self) -> list[dict[str, float | None]]:
        """Per cycle: events/s routed and the p99 of that cycle's samples."""
        points: list[dict[str, float | None]] = []
        bounds = (*self.latency.bounds, float("inf"))
        for before, after in zip(self.recent, list(self.recent)[1:], strict=False):
            seconds = max(after.at - before.at, 1e-9)
            delta = [b - a for a, b in zip(before.counts, after.counts, strict=True)]
            points.append(
                {
                    "at": after.at,
                    "events_per_s": max(after.routed - before.routed, 0) / seconds,
                    "p99_s": quantile_from_buckets(bounds, tuple(accumulate(delta)), 0.99),
                }
            )
        return points


@dataclass(slots=True)
class ResourceMeter:
    """Freshness of one resource (raw topic) and the router's dead letters of it."""

    resource: str
    last_event_s: float | None = None
    dead_letters: int = 0
    raw_ends: dict[int, int] = field(default_factory=dict)
    silent_too_long: bool = False
    freshness_breaches: int = 0  # times it went silent past its target, since start

    def judge_freshness(self, silent_seconds: float, target_seconds: float) -> None:
        breached = silent_seconds > target_seconds
        if breached and not self.silent_too_long:
            self.freshness_breaches += 1
        self.silent_too_long = breached

    def silent_seconds(self, now: float, watching_since: float) -> float:
        """Since its last event or heartbeat; never seen: since monitoring began."""
        return max(now - (self.last_event_s or watching_since), 0.0)
