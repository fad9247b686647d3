"""Which path routes each resource is visible: a log line per resource and a metric.

The byte path (C) declines whole resources whose schema or plans it does not know,
and those run on the Python path about 5x slower. The shipped bus is pinned here:
a resource that leaves the byte path (a new field type, mask kind or format added
only in Python) fails this test, naming the reason the byte path gave.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry
from tests.unit.test_bytepath import NAMES, NOT_BUILT, _bytepath, _engines, _event

from syncbus.core.catalog import Bus
from syncbus.router.metrics import RouterMetrics

# Declined on purpose, with the byte path's reason. Decimals (bytes) and doubles would
# need the byte path to vouch that their encoding is the one the Python path re-encodes
# (a non-minimal decimal or a NaN payload is rewritten there, copied here), and a nested
# record a recursive scanner; all three are low-volume resources (5m-1h update cycles).
# Extend the byte path, with a `syncbus bench router` figure, before removing a row.
ON_PYTHON = {
    "credit.penalty": "field amount: type bytes (decimal)",
    "legal.company": "field registered_capital: type bytes (decimal)",
    "spatial.parcel": "field area_m2: type double",
}


@pytest.fixture(autouse=True)
def _built() -> None:
    assert _bytepath is not None, NOT_BUILT


def test_every_shipped_resource_but_the_pinned_ones_takes_the_byte_path(bus: Bus) -> None:
    fast, _ = _engines(bus)
    for resource in bus.resources:
        fast._byte_route(NAMES.raw(resource))
    declined = {r: why for r, (path, why) in fast.paths.paths.items() if path == "python"}
    assert declined == ON_PYTHON, (
        "the byte path's verdicts on the shipped bus changed; a resource on the Python "
        "path runs about 5x slower. Teach _bytepath.pyx the new shape, or pin the "
        f"resource with its reason in ON_PYTHON. Declined now: {declined}"
    )
    assert set(fast.paths.paths) == set(bus.resources)


def test_events_are_counted_per_resource_and_path(bus: Bus) -> None:
    fast, slow = _engines(bus)
    rng = random.Random(3)
    batch = [_event(bus, rng.choice(["population.resident", "legal.company"]), rng, n)
             for n in range(300)]
    now = datetime.now(UTC)
    out = fast.process(batch, now, lambda _: 0)
    per_resource = {r: sum(1 for m in batch if m.topic == NAMES.raw(r))
                    for r in ("population.resident", "legal.company")}
    assert out.paths["legal.company", "python"] == per_resource["legal.company"]
    assert ("legal.company", "byte") not in out.paths
    route = fast._byte_routes[NAMES.raw("population.resident")]
    assert out.paths["population.resident", "byte"] == route.routed > 60
    assert sum(out.paths.values()) == len(batch)
    # a second batch counts only its own events
    again = fast.process(batch[:50], now, lambda _: 0)
    assert sum(again.paths.values()) == 50
    assert slow.process(batch, now, lambda _: 0).paths == {
        (r, "python"): n for r, n in per_resource.items()}

    registry = CollectorRegistry()
    RouterMetrics(registry).observe(out, 0.01)
    for (resource, path), n in out.paths.items():
        labels = {"resource": resource, "path": path}
        assert registry.get_sample_value("syncbus_router_events_total", labels) == n


def test_the_path_of_a_resource_is_logged_once_with_its_reason(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    fast, _ = _engines(bus)
    rng = random.Random(5)
    batch = [_event(bus, "legal.company", rng, n) for n in range(20)]
    with caplog.at_level(logging.INFO, logger="syncbus.router"):
        for _ in range(3):
            fast.process(batch, datetime.now(UTC), lambda _: 0)
            fast.set_policy(fast.policy)  # recompiles the routes: same path, no new line
    lines = [r.getMessage() for r in caplog.records if "legal.company" in r.getMessage()]
    assert lines == ["resource legal.company is routed on the Python path, about 5x slower: "
                     "field registered_capital: type bytes (decimal)"]
