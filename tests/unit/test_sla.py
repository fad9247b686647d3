"""The SLA core: what ``streams/`` may declare, and how a route is judged."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from syncbus.cli.check import check
from syncbus.core.model import Sla
from syncbus.core.sla import (
    RouteFigures,
    evaluate_route,
    parse_sla,
    parse_update_cycle,
    quantile_from_buckets,
)

SLA = Sla(latency_p99_seconds=2.0, completeness=0.999, freshness_seconds=600.0)


def test_parse_sla_reads_units() -> None:
    sla = parse_sla({"latency_p99": "500ms", "completeness": 0.99, "freshness": "2h"})
    assert sla == Sla(0.5, 0.99, 7200.0)
    assert parse_update_cycle("15m") == 900.0


@pytest.mark.parametrize(
    ("sla", "message"),
    [
        ({"latency_p99": 2, "completeness": 0.9, "freshness": "1m"}, "sla latency_p99 2 needs"),
        ({"latency_p99": "2", "completeness": 0.9, "freshness": "1m"}, "needs a number and a unit"),
        ({"latency_p99": "2s", "completeness": 1.5, "freshness": "1m"}, "at most 1"),
        ({"latency_p99": "2s", "completeness": 0, "freshness": "1m"}, "above 0"),
        ({"latency_p99": "2s", "completeness": "high", "freshness": "1m"}, "must be a number"),
        ({"latency_p99": "2s", "completeness": 0.9, "freshness": "0s"}, "longer than zero"),
        ({"latency_p99": "2s", "completeness": 0.9}, "sla needs exactly"),
    ],
)
def test_parse_sla_refuses_what_cannot_be_evaluated(sla: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sla(sla)


def test_zero_update_cycle_is_refused() -> None:
    with pytest.raises(ValueError, match="update_cycle '0m' must be longer than zero"):
        parse_update_cycle("0m")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "update_cycle: 5m\n    sla: {latency_p99: 2s,",
            "update_cycle: 0s\n    sla: {latency_p99: 2s,",
            "update_cycle '0s' must be longer than zero",
        ),
        (
            "latency_p99: 2s, completeness: 0.9999",
            "latency_p99: 2, completeness: 0.9999",
            "sla latency_p99 2 needs a number and a unit",
        ),
        (
            "latency_p99: 2s, completeness: 0.9999",
            "latency_p99: 2s, completeness: 1.5",
            "sla completeness 1.5 must be above 0 and at most 1",
        ),
    ],
)
def test_check_names_file_and_entry(
    bus_copy: tuple[Path, Path], old: str, new: str, message: str
) -> None:
    streams, schemas = bus_copy
    resources = streams / "resources.yaml"
    text = resources.read_text(encoding="utf-8")
    assert old in text
    resources.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = CliRunner().invoke(check, ["--streams", str(streams), "--schemas", str(schemas)])
    assert result.exit_code == 1
    assert f"{resources}: resource population.resident: {message}" in result.output
    assert "Traceback" not in result.output


def _figures(**changes: float) -> RouteFigures:
    base = dict(
        routed=1000,
        committed=1000,
        dead_letters=0,
        latency_p99_seconds=0.5,
        lag_seconds=0.0,
        silent_seconds=10.0,
    )
    base.update(changes)
    return RouteFigures(**base)  # type: ignore[arg-type]


def test_a_healthy_route_is_ok() -> None:
    state = evaluate_route(SLA, _figures())
    assert state.ok and state.verdicts == dict.fromkeys(
        ("latency", "completeness", "freshness"), "ok"
    )


def test_each_sla_breaches_on_its_own_figure() -> None:
    assert evaluate_route(SLA, _figures(latency_p99_seconds=2.5)).latency == "breached"
    assert evaluate_route(SLA, _figures(silent_seconds=601)).freshness == "breached"
    assert evaluate_route(SLA, _figures(dead_letters=2)).completeness == "breached"
    assert not evaluate_route(SLA, _figures(dead_letters=2)).ok


def test_uncommitted_events_are_in_flight_until_the_freshness_target() -> None:
    in_flight = evaluate_route(SLA, _figures(committed=900, lag_seconds=30))
    assert in_flight.completeness == "ok" and in_flight.completeness_ratio == 1.0
    late = evaluate_route(SLA, _figures(committed=900, lag_seconds=700))
    assert late.completeness == "breached" and late.completeness_ratio == pytest.approx(0.9)


def test_no_data_is_not_a_breach() -> None:
    state = evaluate_route(SLA, _figures(routed=0, committed=0, latency_p99_seconds=None))
    assert state.latency == state.completeness == "no_data" and state.ok


def test_quantile_interpolates_like_prometheus() -> None:
    bounds = (1.0, 2.0, 4.0, float("inf"))
    assert quantile_from_buckets(bounds, (0, 0, 0, 0), 0.99) is None
    assert quantile_from_buckets(bounds, (50, 100, 100, 100), 0.5) == 1.0
    assert quantile_from_buckets(bounds, (50, 100, 100, 100), 0.75) == 1.5
    assert quantile_from_buckets(bounds, (0, 0, 0, 10), 0.99) == 4.0
