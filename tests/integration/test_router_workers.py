"""Two router workers with one app id share the raw partitions and lose nothing.

A second worker joins while events flow, so the group rebalances under load. The
test checks, on the broker, that both workers hold raw partitions at once, and,
by event id per subscriber, that every entitled delivery arrives (duplicates
around a rebalance are allowed; subscribers drop them by event id).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.policy import RoutingTable
from tests.router_helpers import REPO, RawWriter, RouterProcess, ShareReader, resident, wait_for

pytestmark = pytest.mark.slow
RES = "population.resident"
REGIONS = ("320102", "320106", "320508", "320505", "320205", "320583")


def _raw_partitions_by_member(bootstrap: str, group: str, raw_topic: str) -> list[set[int]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return [
        {tp.partition for tp in member.assignment.topic_partitions if tp.topic == raw_topic}
        for member in description.members
    ]


def test_two_workers_share_partitions_and_deliver_everything(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = TopicNames(f"w{os.urandom(4).hex()}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(kafka.bootstrap), 4, names)
    first = RouterProcess(kafka.bootstrap, tmp_path / "a", prefix=names.prefix).start()
    second = RouterProcess(kafka.bootstrap, tmp_path / "b", app_id=first.app_id,
                           prefix=names.prefix)
    writer = RawWriter(bus, kafka.bootstrap, names)
    reader = ShareReader(kafka.bootstrap, names)
    sent: dict[str, str] = {}
    try:
        probe = writer.send(RES, "CREATE", resident("320102", seed=1))
        writer.flush()
        wait_for(lambda: probe in {str(e["event_id"]) for e in reader.events(
            "province.jiangsu", RES, 0.5)}, 120, "the first worker to route")

        def publish() -> None:
            for round_ in range(8):
                for i in range(250):
                    record = resident(REGIONS[i % len(REGIONS)], seed=1000 + i)
                    record["ethnicity"] = f"round-{round_}"
                    sent[writer.send(RES, "UPDATE", record, before=record)] = record["region"]
                writer.flush()
                time.sleep(1.0)

        publisher = threading.Thread(target=publish)
        publisher.start()
        time.sleep(1.0)
        second.start()
        shares = wait_for(
            lambda: (found if len(found := _raw_partitions_by_member(
                kafka.bootstrap, first.app_id, names.raw(RES))) == 2 and all(found) else None),
            120, "both workers to hold raw partitions")
        assert set().union(*shares) == {0, 1, 2, 3} and not set.intersection(*shares)
        publisher.join()
        assert len(sent) == 2000

        table, now = RoutingTable(bus), datetime.now(UTC)
        expected: dict[str, set[str]] = {}
        for event_id, region in sent.items():
            for delivery in table.route(RES, "UPDATE", region, region, now):
                expected.setdefault(delivery.grant.subscriber, set()).add(event_id)
        assert len(expected) == 5 and len(expected["province.jiangsu"]) == 2000

        def missing() -> dict[str, int] | None:
            gaps = {}
            for subscriber, ids in expected.items():
                got = {str(e["event_id"]) for e in reader.events(subscriber, RES, 1.0)}
                if ids - got:
                    gaps[subscriber] = len(ids - got)
            return gaps or None

        deadline = time.monotonic() + 120
        while (gaps := missing()) and time.monotonic() < deadline:
            time.sleep(2)
        assert gaps is None, f"deliveries missing with two workers: {gaps}"
        assert first.alive() and second.alive()
    finally:
        first.stop()
        second.stop()
