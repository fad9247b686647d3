"""``syncbus apply`` on a real broker: topics, policy and schemas, and idempotence."""

from __future__ import annotations

import json
import subprocess
import sys

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

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
    assert "43 created, 0 existing" in first, first
    second = _apply(kafka.bootstrap, "--topic-prefix", prefix, "--partitions", "2")
    assert "0 created, 43 existing" in second
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
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    raw = ConfigResource(ConfigResource.Type.TOPIC, f"{prefix}raw.population.resident")
    resync = ConfigResource(ConfigResource.Type.TOPIC, f"{prefix}syncbus.resync")
    for resource, future in admin.describe_configs([raw, resync]).items():
        assert future.result(30)["cleanup.policy"].value == "compact", resource.name


def test_apply_compacts_raw_topics_created_before_state(kafka) -> None:  # type: ignore[no-untyped-def]
    """A raw topic made when raw topics were not compacted is switched and reported;
    the next apply finds nothing to change."""
    prefix = f"ap{__import__('uuid').uuid4().hex[:6]}."
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    old = f"{prefix}raw.population.resident"
    admin.create_topics([NewTopic(old, 2, 1, config={"cleanup.policy": "delete"})])[old].result(30)
    first = _apply(kafka.bootstrap, "--topic-prefix", prefix, "--partitions", "2")
    assert f"reconfigured {old}: cleanup.policy=compact (was delete)" in first, first
    resource = ConfigResource(ConfigResource.Type.TOPIC, old)
    assert admin.describe_configs([resource])[resource].result(30)[
        "cleanup.policy"].value == "compact"
    assert "reconfigured" not in _apply(kafka.bootstrap, "--topic-prefix", prefix,
                                        "--partitions", "2")
