"""``syncbus apply`` on a real broker: topics, policy and schemas, and idempotence."""

from __future__ import annotations

import json
import subprocess
import sys

from confluent_kafka.admin import AdminClient

from syncbus.admin.compacted import read_compacted
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.codec import fingerprint
from syncbus.core.policy import bus_from_records
from tests.router_helpers import REPO


def _apply(bootstrap: str, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "syncbus", "apply", "--bootstrap", bootstrap, *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_apply_creates_everything_once(kafka) -> None:  # type: ignore[no-untyped-def]
    prefix = f"ap{__import__('uuid').uuid4().hex[:6]}."
    first = _apply(kafka.bootstrap, "--topic-prefix", prefix, "--partitions", "2")
    assert "42 created, 0 existing" in first, first
    second = _apply(kafka.bootstrap, "--topic-prefix", prefix, "--partitions", "2")
    assert "0 created, 42 existing" in second
    assert "policy: 0 records written" in second and "schemas: 0 written" in second
    topics = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics
    assert len(topics[f"{prefix}raw.population.resident"].partitions) == 2
    assert f"{prefix}share.city.wuxi.population.resident" in topics  # pending, ready to approve
    assert not [t for t in topics if t.startswith(prefix + "share.") and "health" in t]
    bus = load_bus(REPO / "streams", REPO / "schemas")
    assert {f"{prefix}share.{s}.dlq" for s in bus.subscribers} <= set(topics)  # no create ACL
    connection = Connection(kafka.bootstrap)
    policy = bus_from_records(read_compacted(connection, f"{prefix}syncbus.policy"))
    assert {g.key for g in policy.grants} == {g.key for g in bus.grants}
    schemas = read_compacted(connection, f"{prefix}syncbus.schemas")
    v1 = bus.schemas.event_schema("population.resident", 1)
    assert json.loads(schemas[fingerprint(v1).hex()]) == v1
    assert len(schemas) == 8
