"""Kill -9 a router under load, restart it: no entitled delivery is missing, and no
delivery sequence number is given to two different events.

Events are counted by id per subscriber; the expected receivers of every event come
from the pure routing rules, so the test checks the process, not the rules again.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncbus.admin.apply import apply_bus
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.policy import RoutingTable
from syncbus.core.topics import H_SOURCE_PARTITION
from tests.router_helpers import REPO, RawWriter, RouterProcess, ShareReader, resident, wait_for

pytestmark = pytest.mark.slow
RES = "population.resident"
REGIONS = ("320102", "320106", "320508", "320505", "320205", "320583")


def test_kill_minus_nine_under_load_loses_nothing(bus_kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(bus_kafka.bootstrap), partitions=3)
    router = RouterProcess(bus_kafka.bootstrap, tmp_path / "router").start()
    writer = RawWriter(bus, bus_kafka.bootstrap)
    reader = ShareReader(bus_kafka.bootstrap)
    try:
        probe = writer.send(RES, "CREATE", resident("320102", seed=1))
        writer.flush()
        wait_for(
            lambda: (
                probe in {str(e["event_id"]) for e in reader.events("province.jiangsu", RES, 0.5)}
            ),
            120,
            "the router to start routing",
        )
        records = [resident(REGIONS[i % len(REGIONS)], seed=100 + i) for i in range(600)]
        sent: dict[str, str] = {}

        def publish() -> None:
            for round_ in range(10):
                for i, record in enumerate(records):
                    record = dict(record, ethnicity=f"round-{round_}-{i}")
                    sent[writer.send(RES, "UPDATE", record, before=record)] = record["region"]
                writer.flush()
                time.sleep(0.3)

        publisher = threading.Thread(target=publish)
        publisher.start()
        time.sleep(random.uniform(1.0, 3.5))
        router.kill9()
        router.start()
        publisher.join()
        assert len(sent) == 6000
        table = RoutingTable(bus)
        now = datetime.now(UTC)
        expected: dict[str, set[str]] = {}
        for event_id, region in sent.items():
            for delivery in table.route(RES, "UPDATE", region, region, now):
                expected.setdefault(delivery.grant.subscriber, set()).add(event_id)
        assert set(expected) == {
            "province.jiangsu",
            "city.nanjing",
            "city.suzhou",
            "district.gusu",
            "district.xuanwu",
        }

        def missing() -> dict[str, int]:
            gaps = {}
            for subscriber, ids in expected.items():
                got = {str(e["event_id"]) for e in reader.events(subscriber, RES, 1.0)}
                if ids - got:
                    gaps[subscriber] = len(ids - got)
            return gaps

        deadline = time.monotonic() + 150
        gaps = missing()
        while gaps and time.monotonic() < deadline:
            time.sleep(2)
            gaps = missing()
        assert gaps == {}, f"events missing after kill -9 and restart: {gaps}"
        for subscriber in expected:  # a number once delivered never names another event
            named: dict[tuple[bytes, int], set[str]] = defaultdict(set)
            for event in reader.events(subscriber, RES, 1.0):
                headers = event["_headers"]
                stream = headers[H_SOURCE_PARTITION], event["delivery_sequence"]
                named[stream].add(str(event["event_id"]))
            assert len(named) >= len(expected[subscriber])
            reused = {k: v for k, v in named.items() if len(v) > 1}
            assert reused == {}, f"{subscriber}: sequence numbers reused after the restart"
        assert router.alive()
    finally:
        router.stop()
