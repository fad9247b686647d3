"""The sharing SLA of a resource: what ``streams/`` may declare, and how a route is judged.

A route is one resource delivered to one subscriber (``share.<subscriber>.<resource>``).
Three SLAs are judged per route, all from figures measured on the central side:

- ``latency``: at least 99% of events reach the share topic within ``latency_p99``
  of ``occurred_at`` (the measured p99 is at or under the target);
- ``completeness``: of the events routed to the subscriber, the share it has taken
  (committed) is at least ``completeness``. An event is missing when the subscriber
  dead-lettered it, or when it is still uncommitted although the oldest uncommitted
  record is older than the freshness target; events younger than that are in flight;
- ``freshness``: the resource showed life (an event or a publisher heartbeat) within
  ``freshness``. A resource never seen counts as silent since monitoring began.

Durations in an SLA must carry their unit (``2s``, ``15m``): a bare ``2`` is refused,
because a reader cannot tell seconds from minutes, and the generated alert rules
would silently use the wrong one. Pure: no Kafka, no clock (``now`` is passed in).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from syncbus.core.model import Bus, Sla
from syncbus.core.policy import RoutingTable

SLA_KEYS = ("latency_p99", "completeness", "freshness")
SLA_NAMES = ("latency", "completeness", "freshness")
LATENCY_QUANTILE = 0.99

Verdict = Literal["ok", "breached", "no_data"]

_WITH_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_with_unit(key: str, value: Any) -> float:
    """Seconds from ``"500ms"``, ``"2s"``, ``"15m"``, ``"1h"``, ``"1d"``; positive only."""
    match = _WITH_UNIT.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"{key} {value!r} needs a number and a unit (ms, s, m, h, d), for example '2s'"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"{key} is out of range: {value[:20]!r}... is longer than any clock")
    if seconds <= 0:
        raise ValueError(f"{key} {value!r} must be longer than zero")
    return seconds


def parse_sla(raw: Any) -> Sla:
    """The ``sla`` mapping of one resource; ValueError naming the key that is wrong."""
    if not isinstance(raw, Mapping) or set(raw) != set(SLA_KEYS):
        raise ValueError(f"sla needs exactly {', '.join(SLA_KEYS)}")
    completeness = raw["completeness"]
    if isinstance(completeness, bool) or not isinstance(completeness, int | float):
        raise ValueError(f"sla completeness {completeness!r} must be a number such as 0.999")
    if not 0 < completeness <= 1 or math.isnan(completeness):
        raise ValueError(f"sla completeness {completeness!r} must be above 0 and at most 1")
    return Sla(
        latency_p99_seconds=parse_duration_with_unit("sla latency_p99", raw["latency_p99"]),
        completeness=float(completeness),
        freshness_seconds=parse_duration_with_unit("sla freshness", raw["freshness"]),
    )


def parse_update_cycle(raw: Any) -> float:
    """A resource's ``update_cycle`` in seconds: with its unit, longer than zero."""
    return parse_duration_with_unit("update_cycle", raw)


@dataclass(frozen=True, slots=True)
class RouteFigures:
    """What the monitor measured of one route; ``None`` where nothing was seen yet."""

    routed: int
    committed: int
    dead_letters: int
    latency_p99_seconds: float | None
    lag_seconds: float
    silent_seconds: float


@dataclass(frozen=True, slots=True)
class RouteState:
    """The verdict per SLA of one route, and the figures they were drawn from."""

    latency: Verdict
    completeness: Verdict
    freshness: Verdict
    completeness_ratio: float | None

    @property
    def verdicts(self) -> dict[str, Verdict]:
        return {name: getattr(self, name) for name in SLA_NAMES}

    @property
    def ok(self) -> bool:
        """No SLA breached (an SLA without data yet is not a breach)."""
        return "breached" not in self.verdicts.values()


def missing_events(sla: Sla, figures: RouteFigures) -> int:
    """Events the subscriber lacks: dead-lettered, or uncommitted past the freshness target."""
    uncommitted = max(figures.routed - figures.committed, 0)
    late = uncommitted if figures.lag_seconds > sla.freshness_seconds else 0
    return min(figures.dead_letters + late, figures.routed)


def completeness_ratio(sla: Sla, figures: RouteFigures) -> float | None:
    if figures.routed <= 0:
        return None
    return 1.0 - missing_events(sla, figures) / figures.routed


def evaluate_route(sla: Sla, figures: RouteFigures) -> RouteState:
    """Judge one route against its resource's SLA."""
    p99 = figures.latency_p99_seconds
    latency: Verdict = (
        "no_data" if p99 is None else "ok" if p99 <= sla.latency_p99_seconds else "breached"
    )
    ratio = completeness_ratio(sla, figures)
    completeness: Verdict = (
        "no_data" if ratio is None else "ok" if ratio >= sla.completeness else "breached"
    )
    freshness: Verdict = "ok" if figures.silent_seconds <= sla.freshness_seconds else "breached"
    return RouteState(latency, completeness, freshness, ratio)


def quantile_from_buckets(
    bounds: tuple[float, ...], counts: tuple[int, ...], quantile: float
) -> float | None:
    """Prometheus's ``histogram_quantile`` on cumulative ``counts`` per upper ``bounds``.

    Linear interpolation inside the bucket, as Prometheus does, so the status page and
    Grafana show the same figure; the last bound stands for ``+Inf``.
    """
    if not counts or counts[-1] <= 0:
        return None
    rank = quantile * counts[-1]
    lower, below = 0.0, 0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """One resource delivered to one subscriber: what an SLA is judged on."""

    resource: str
    subscriber: str


def bus_routes(bus: Bus, now: datetime) -> list[Route]:
    """The routes through which data flows at ``now`` (effective, unexpired grants)."""
    table = RoutingTable(bus)
    return sorted(
        Route(resource_id, grant.subscriber)
        for resource_id in bus.resources
        for grant in table.effective(resource_id, now)
    )


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """One route over a reporting period (``syncbus sla report``)."""

    resource: str
    subscriber: str
    volume: int
    within_latency: float | None  # share of events within latency_p99
    completeness: float | None
    freshness_breaches: int  # times the resource went silent past its freshness target

    def verdict(self, sla: Sla) -> Literal["OK", "BREACHED"]:
        """BREACHED when any SLA failed over the period; no events is not a failure."""
        late = self.within_latency is not None and self.within_latency < LATENCY_QUANTILE
        short = self.completeness is not None and self.completeness < sla.completeness
        return "BREACHED" if late or short or self.freshness_breaches > 0 else "OK"

    def row(self, sla: Sla) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "subscriber": self.subscriber,
            "volume": self.volume,
            "within_latency": self.within_latency,
            "latency_target_seconds": sla.latency_p99_seconds,
            "completeness": self.completeness,
            "completeness_target": sla.completeness,
            "freshness_breaches": self.freshness_breaches,
            "state": self.verdict(sla),
        }


def share_within(bounds: tuple[float, ...], counts: tuple[int, ...], target: float) -> float | None:
    """Share of observations at or under ``target`` (a bound), from per-bucket ``counts``."""
    total = sum(counts)
    if not total:
        return None
    return sum(n for bound, n in zip(bounds, counts, strict=False) if bound <= target) / total
