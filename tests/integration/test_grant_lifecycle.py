"""A grant's whole life in the data (#17), through the real bus: ``syncbus apply``,
a ``syncbus router``, the Publisher SDK and one ``syncbus sink`` per city, each
running the whole module long. Only ``apply`` changes the grants (or the clock, for
an expiry); the sinks must follow: filled on approval, emptied of what leaves the
scope, refilled when it widens, re-masked when the clearance drops, emptied when the
grant expires.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.fake import make_record
from syncbus.publisher import Publisher
from tests.grant_helpers import CHANGES, RES, GrantScene
from tests.router_helpers import RouterProcess, wait_for
from tests.subscriber_helpers import REPO

pytestmark = pytest.mark.slow
WUXI = ("320205", "320206", "320211", "320213")
NANJING = ("320102",)  # Xuanwu: Nanjing's and Xuanwu's
SUZHOU = ("320508", "320506")  # Gusu, Wuzhong
SINKS = ("city.wuxi", "city.suzhou", "city.nanjing", "district.xuanwu")


@pytest.fixture(scope="module")
def bus(bus_kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrantScene]:
    """The shipped bus with Wuxi pending; 20 Wuxi residents and 20 others published
    before any grant changes; a router and four sinks running."""
    scene = GrantScene(bus_kafka.bootstrap, tmp_path_factory.mktemp("grants"))
    scene.apply()
    router = RouterProcess(bus_kafka.bootstrap, scene.root / "router").start()
    for subscriber in SINKS:
        scene.start_sink(subscriber)
    records = {
        "wuxi": [make_record(RES, region=WUXI[i % 4], seed=1000 + i) for i in range(20)],
        "nanjing": [make_record(RES, region=NANJING[0], seed=2000 + i) for i in range(10)],
        "suzhou": [make_record(RES, region=SUZHOU[i % 2], seed=3000 + i) for i in range(10)],
    }
    scene.published = records
    definition = load_bus(scene.streams, REPO / "schemas")
    spool = scene.root / "gaj.db"
    with Publisher("js-gaj", definition, Connection(bus_kafka.bootstrap), spool_path=spool) as pub:
        for group in records.values():
            for record in group:
                pub.publish(RES, "CREATE", after=record)
        assert pub.flush(60) == 0
    try:
        scene.wait_regions("city.nanjing", [r["region"] for r in records["nanjing"]],
                           "Nanjing's sink to hold its residents")
        yield scene
    finally:
        scene.stop()
        router.stop()


def test_approving_wuxi_fills_its_sink_with_its_residents_masked(bus: GrantScene) -> None:
    assert bus.rows("city.wuxi") == []  # pending: nothing routed to Wuxi
    bus.edit_grant("city.wuxi", state="approved", approved_by="js-gaj", expires="2027-12-31")
    wuxi = bus.published["wuxi"]
    bus.wait_regions("city.wuxi", [r["region"] for r in wuxi], "Wuxi's 20 residents")
    rows = bus.rows("city.wuxi")
    real_ids = {r["id_number"] for r in wuxi}
    real_names = {r["name"] for r in wuxi}
    assert len(rows) == 20
    for row in rows:  # L2: the ID and the name masked, the L2 gender kept
        assert row["id_number"] not in real_ids and row["id_number"][:6] in WUXI
        assert row["name"] not in real_names
        assert row["gender"] is not None


def test_a_scope_narrowed_to_gusu_and_widened_again(bus: GrantScene) -> None:
    suzhou = [r["region"] for r in bus.published["suzhou"]]
    bus.wait_regions("city.suzhou", suzhou, "Suzhou's residents")
    bus.edit_grant("city.suzhou", regions=["320508"])
    bus.wait_regions("city.suzhou", [r for r in suzhou if r == "320508"], "only Gusu's rows")
    bus.edit_grant("city.suzhou", regions=None)
    bus.wait_regions("city.suzhou", suzhou, "Suzhou's rows back")


def test_a_lowered_clearance_re_masks_the_rows(bus: GrantScene) -> None:
    assert all(r["gender"] is not None for r in bus.rows("city.nanjing"))
    bus.edit_grant("city.nanjing", clearance="L1")

    def re_masked() -> bool:
        rows = bus.rows("city.nanjing")
        return len(rows) == 10 and all(r["gender"] is None for r in rows)

    wait_for(re_masked, CHANGES, "Nanjing's rows without the L2 fields")


def test_an_expiring_grant_empties_the_table_with_no_apply(bus: GrantScene) -> None:
    nanjing = [r["region"] for r in bus.published["nanjing"]]
    bus.wait_regions("district.xuanwu", nanjing, "Xuanwu's residents")
    expires = datetime.now(UTC) + timedelta(seconds=20)
    bus.edit_grant("district.xuanwu", expires=expires.strftime("%Y-%m-%dT%H:%M:%S"))
    assert bus.regions("district.xuanwu") == sorted(nanjing)  # in force until it expires
    bus.wait_regions("district.xuanwu", [], "Xuanwu's table empty at expiry")
    assert datetime.now(UTC) >= expires
