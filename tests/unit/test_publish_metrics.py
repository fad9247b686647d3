"""Publisher metrics: bulk latency observations read like one per event; lost events count."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from syncbus.core.model import Bus
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


def test_events_lost_to_an_unclean_shutdown_are_counted_by_resource(
    tmp_path: Path, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publisher opened on a spool whose last blob never reached the disk says so."""
    from syncbus.publisher import Publisher
    from syncbus.publisher import spool as spool_module
    from syncbus.publisher.spool import Spool

    monkeypatch.setattr(spool_module, "INLINE_BYTES", 0)  # the blob in a segment file

    path = tmp_path / "s.db"
    spool = Spool(path, department="js-scjgj")
    spool.append("licence.business", [(b"k", b"v%d" % i, "m") for i in range(3)], 3, 1.0)
    spool.close()
    (segment,) = (tmp_path / "s.db.segments").glob("*.seg")
    segment.write_bytes(segment.read_bytes()[:-1])  # cut short, as by a power cut

    registry = CollectorRegistry()
    # nothing listens on port 1: the publisher is built, never connects, and is closed
    publisher = Publisher("js-scjgj", bus, "127.0.0.1:1", spool_path=path, registry=registry)
    try:
        value = registry.get_sample_value(
            "syncbus_publisher_lost_total", {"resource": "licence.business"})
        assert value == 3 and publisher.spool.depth == 0
    finally:
        publisher.close(timeout=0)


def test_two_publishers_on_the_default_registry_share_one_set_of_metrics() -> None:
    """A front-end processor may host two departments' publishers in one process."""
    assert PublisherMetrics.of(None) is PublisherMetrics.of(None)
    assert PublisherMetrics.of(CollectorRegistry()) is not PublisherMetrics.of(None)
