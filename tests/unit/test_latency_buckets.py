"""Every hop's latency histogram resolves 1 ms (a hop on one machine) to 10 s (#18)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram

from syncbus.publisher.metrics import PublisherMetrics
from syncbus.router.metrics import RouterMetrics
from syncbus.subscriber.metrics import SubscriberMetrics


def _histograms(metrics: Any) -> dict[str, Histogram]:
    return {name: value for name, value in vars(metrics).items() if isinstance(value, Histogram)}


@pytest.mark.parametrize("component", [PublisherMetrics, RouterMetrics, SubscriberMetrics])
def test_latency_histograms_resolve_one_millisecond_to_ten_seconds(component: Any) -> None:
    histograms = _histograms(component(CollectorRegistry()))
    assert histograms, f"{component.__name__} declares no latency histogram"
    for name, histogram in histograms.items():
        bounds = [b for b in histogram._upper_bounds if b != float("inf")]
        assert bounds[0] <= 0.001, f"{component.__name__}.{name} starts at {bounds[0]} s"
        assert bounds[-1] >= 10.0, f"{component.__name__}.{name} ends at {bounds[-1]} s"
        below_10ms = [b for b in bounds if b <= 0.01]
        assert len(below_10ms) >= 3, f"{component.__name__}.{name}: {below_10ms} below 10 ms"
