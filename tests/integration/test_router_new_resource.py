"""A resource added by ``apply`` while a router runs is routed without a manual restart.

The router starts on a bus without ``legal.company``; ``apply`` then adds it (its
raw and share topics, its grants). The worker notices the unread raw topic in the
new policy, stops cleanly and re-executes itself (same pid), and the new
resource's events reach every granted subscriber, counted by event id. Events of
the resources it already routed keep flowing across the restart.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.fake import make_record
from syncbus.core.policy import RoutingTable
from tests.router_helpers import REPO, RawWriter, RouterProcess, ShareReader, resident, wait_for

pytestmark = pytest.mark.slow
NEW = "legal.company"
RES = "population.resident"


def test_a_resource_applied_later_is_routed(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = TopicNames(f"nr{os.urandom(4).hex()}.")
    conn = Connection(kafka.bootstrap)
    bus = load_bus(REPO / "streams", REPO / "schemas")
    without = dataclasses.replace(
        bus,
        resources={k: v for k, v in bus.resources.items() if k != NEW},
        grants=tuple(g for g in bus.grants if g.resource != NEW),
    )
    apply_bus(without, conn, 2, names)
    router = RouterProcess(kafka.bootstrap, tmp_path / "router", prefix=names.prefix).start()
    writer = RawWriter(bus, kafka.bootstrap, names)
    reader = ShareReader(kafka.bootstrap, names)

    def received(subscriber: str, resource: str) -> set[str]:
        return {str(e["event_id"]) for e in reader.events(subscriber, resource, 0.5)}

    try:
        probe = writer.send(RES, "CREATE", resident("320102", seed=1))
        writer.flush()
        wait_for(lambda: probe in received("province.jiangsu", RES), 120, "first routing")
        pid = router.proc.pid if router.proc else None

        apply_bus(bus, conn, 2, names)
        table, now = RoutingTable(bus), datetime.now(UTC)
        expected: dict[str, set[str]] = {}
        for i, region in enumerate(("320102", "320508", "320205") * 10):
            event_id = writer.send(NEW, "CREATE", make_record(NEW, region=region, seed=i))
            for delivery in table.route(NEW, "CREATE", region, None, now):
                expected.setdefault(delivery.grant.subscriber, set()).add(event_id)
        after = writer.send(RES, "CREATE", resident("320102", seed=2))
        writer.flush()
        assert len(expected) >= 3

        wait_for(lambda: all(ids <= received(s, NEW) for s, ids in expected.items()),
                 150, f"every {NEW} event at each granted subscriber")
        wait_for(lambda: after in received("province.jiangsu", RES), 60, "residents still flow")
        assert router.alive() and router.proc is not None and router.proc.pid == pid
    finally:
        router.stop()
