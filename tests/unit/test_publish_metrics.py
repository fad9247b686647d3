"""Bulk latency observations must read exactly like one observation per event."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from syncbus.publisher.metrics import LATENCY_BUCKETS, PublisherMetrics, observe_many


def samples(registry: CollectorRegistry) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for metric in registry.collect() if metric.name.endswith("latency_seconds")
        for s in metric.samples if not s.name.endswith("_created")
    }


def test_observe_many_matches_observing_each_event() -> None:
    one, bulk = CollectorRegistry(), CollectorRegistry()
    each, many = PublisherMetrics(one), PublisherMetrics(bulk)
    amounts = [0.0, 0.001, 0.0011, 0.3, 10.0, 61.0, *LATENCY_BUCKETS]
    for n, amount in enumerate(amounts, start=1):
        for _ in range(n):
            each.latency.observe(amount)
        observe_many(many.latency, amount, n)
    observe_many(many.latency, 5.0, 0)
    assert samples(bulk) == pytest.approx(samples(one)), "every bucket, the count and the sum"
    assert bulk.get_sample_value("syncbus_publisher_publish_latency_seconds_count") == sum(
        range(1, len(amounts) + 1))
