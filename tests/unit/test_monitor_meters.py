"""The monitor's per-route and per-resource bookkeeping, without a broker."""

from __future__ import annotations

from syncbus.core.sla import Route
from syncbus.monitor.meters import LatencyHistogram, ResourceMeter, RouteMeter

BOUNDS = (0.1, 1.0, 2.0, 5.0)


def _meter() -> RouteMeter:
    return RouteMeter(Route("population.resident", "city.nanjing"), "t", LatencyHistogram(BOUNDS))


def test_histogram_counts_into_prometheus_buckets() -> None:
    histogram = LatencyHistogram(BOUNDS)
    for seconds in (0.05, 0.1, 0.5, 3.0, 60.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [2, 3, 3, 4, 5]  # le=0.1 includes 0.1; +Inf last
    assert histogram.total_seconds == 63.65


def test_recent_quantile_keeps_the_last_figure_of_a_quiet_route() -> None:
    meter = _meter()
    assert meter.recent_quantile(0.99) is None
    for _ in range(100):
        meter.latency.observe(0.5)
    meter.close_cycle(1.0)
    assert meter.recent_quantile(0.5) is not None and 0.1 < meter.recent_quantile(0.5) <= 1.0
    for at in range(2, 80):  # a full window with no new events
        meter.close_cycle(float(at))
    assert meter.recent_quantile(0.99) is not None


def test_chart_gives_throughput_per_cycle() -> None:
    meter = _meter()
    meter.close_cycle(0.0)
    meter.routed = 50
    meter.latency.observe(1.5)
    meter.close_cycle(5.0)
    (point,) = meter.chart()
    assert point["events_per_s"] == 10.0
    assert point["p99_s"] is not None and 1.0 < point["p99_s"] <= 2.0


def test_freshness_breaches_count_each_silence_once() -> None:
    resource = ResourceMeter("legal.company", last_event_s=100.0)
    assert resource.silent_seconds(now=105.0, watching_since=0.0) == 5.0
    for silent in (1.0, 5.0, 6.0, 1.0, 9.0):
        resource.judge_freshness(silent, target_seconds=4.0)
    assert resource.freshness_breaches == 2
    never = ResourceMeter("spatial.parcel")
    assert never.silent_seconds(now=50.0, watching_since=20.0) == 30.0
