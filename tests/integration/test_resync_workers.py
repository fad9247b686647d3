"""Two router workers with one app id: an approval's resync is run once, and completely.

Both workers follow the policy and both submit the job; its id comes from the change,
so they submit the same one, and only the worker owning raw partition 0 runs it. The
share must hold every existing Wuxi resident from that resync, between complete
begin and end markers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from syncbus.admin.apply import apply_bus
from syncbus.admin.compacted import read_compacted
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.core.catalog import load_bus
from syncbus.core.masking import token
from tests.router_helpers import (
    REPO,
    SECRETS,
    RawWriter,
    RouterProcess,
    ShareReader,
    read_topic,
    resident,
    wait_for,
)

pytestmark = pytest.mark.slow
RES = "population.resident"


def _members(bootstrap: str, group: str, raw_topic: str) -> list[set[int]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except (KafkaException, TimeoutError):  # the coordinator still loading: ask again
        return []
    return [{tp.partition for tp in m.assignment.topic_partitions if tp.topic == raw_topic}
            for m in description.members]


def test_two_workers_run_an_approval_resync_once_and_completely(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = TopicNames(f"rw{os.urandom(4).hex()}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    conn = Connection(kafka.bootstrap)
    apply_bus(bus, conn, 3, names)
    first = RouterProcess(kafka.bootstrap, tmp_path / "a", prefix=names.prefix).start()
    second = RouterProcess(kafka.bootstrap, tmp_path / "b", app_id=first.app_id,
                           prefix=names.prefix).start()
    try:
        wait_for(lambda: sum(1 for m in _members(kafka.bootstrap, first.app_id, names.raw(RES))
                             if m) == 2, 180, "both workers to hold raw partitions", every=1.0)
        writer = RawWriter(bus, kafka.bootstrap, names)
        wuxi = [resident("320205", seed=500 + i) for i in range(60)]
        ids = {writer.send(RES, "CREATE", r) for r in wuxi}
        writer.flush()
        reader = ShareReader(kafka.bootstrap, names)
        wait_for(lambda: ids <= {str(e["event_id"]) for e in reader.events(
            "province.jiangsu", RES, 0.5)}, 120, "the residents to reach the province")
        approved = dataclasses.replace(bus, grants=tuple(
            dataclasses.replace(g, state="approved", approved_by="js-gaj")
            if g.key == f"city.wuxi/{RES}" else g for g in bus.grants))
        apply_bus(approved, conn, 3, names)

        def done() -> list[dict]:
            return [json.loads(v) for k, v in read_compacted(conn, names.resync).items()
                    if k.startswith("done/") and json.loads(v)["subscriber"] == "city.wuxi"]

        audits = wait_for(done, 120, "the resync to finish", every=1.0)
        assert len(audits) == 1 and audits[0]["snapshots"] == 60  # one job, both submitted it
        rid = audits[0]["resync"].encode()
        share = [m for m in read_topic(kafka.bootstrap, names.share("city.wuxi", RES), 1.0)
                 if dict(m.headers() or []).get(t.H_RESYNC) == rid]
        markers = [dict(m.headers())[t.H_MARKER] for m in share
                   if t.H_MARKER in dict(m.headers())]
        assert sorted(markers) == [b"begin"] * 3 + [b"end"] * 3
        secret = SECRETS["city.wuxi"].encode()
        keys = {m.key() for m in share if m.value() is not None}
        assert keys == {token(secret, r["id_number"]).encode() for r in wuxi}
        assert first.alive() and second.alive()
    finally:
        second.stop()
        first.stop()
