"""The pieces of a resync that need no broker: a stored record turned SNAPSHOT and routed
by the live engine (byte path and Python path alike), the minimal DELETE, the markers."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from syncbus.admin.names import TopicNames
from syncbus.core import topics as t
from syncbus.core.catalog import Bus
from syncbus.core.codec import Codec
from syncbus.core.entitlement import one_grant_bus
from syncbus.core.fake import make_record
from syncbus.core.masking import token
from syncbus.core.views import ViewCache
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import RawMessage, RoutingEngine
from syncbus.router.resync import (
    Pacing,
    delete_of,
    event_ids,
    fast_snapshot,
    head_of,
    marker,
    snapshot_of,
)
from syncbus.router.resync_jobs import ResyncJob, job_id
from syncbus.router.secrets import TokenSecrets

RES = "population.resident"
NAMES = TopicNames("")
NANJING = "city.nanjing"


def _policy(bus: Bus, codec: Codec) -> CompiledPolicy:
    grant = next(g for g in bus.grants if g.key == f"{NANJING}/{RES}")
    secrets = TokenSecrets({s: f"secret-{s}" for s in bus.subscribers})
    return CompiledPolicy(one_grant_bus(bus, grant), secrets, codec, ViewCache(), NAMES,
                          os.urandom(32))


def _stored(codec: Codec, fp: bytes, op: str = "UPDATE") -> dict[str, Any]:
    record = make_record(RES, region="320102", seed=5)
    before = dict(record, phone=None) if op == "UPDATE" else None
    event = {"event_id": str(uuid.uuid4()), "source": "js-gaj", "resource": RES, "op": op,
             "key": record["id_number"], "region": "320102", "sequence": 9,
             "occurred_at": 1, "published_at": 2, "before": before, "after": record}
    return codec.decode(codec.encode(fp, event), fp)[0]


@pytest.mark.parametrize("byte_path", [True, False])
def test_a_stored_update_becomes_a_masked_snapshot(bus: Bus, byte_path: bool) -> None:
    codec = Codec()
    policy = _policy(bus, codec)
    rr = policy.resource(RES)
    stored = _stored(codec, rr.reader_fp)
    value = snapshot_of(codec, rr.reader_fp, stored)
    again = codec.decode(value, rr.reader_fp)[0]
    assert again["op"] == "SNAPSHOT" and again["before"] is None
    assert again["event_id"] != stored["event_id"] and again["after"] == stored["after"]
    engine = RoutingEngine(policy, codec, NAMES, byte_path=byte_path)
    message = RawMessage(NAMES.raw(RES), 2, 77, stored["key"].encode(), value, None)
    out = engine.process([message], datetime.now(UTC), lambda _: 0)
    assert not out.dead and len(out.deliveries) == 1
    if byte_path:
        assert engine._byte_routes[NAMES.raw(RES)].routed == 1  # the C path masked it
    topic, key, body, headers = out.deliveries[0]
    assert topic == "share.city.nanjing.population.resident"
    assert headers == [(t.H_SOURCE_PARTITION, b"2"), (t.H_SOURCE_OFFSET, b"77")]
    for view in policy.new_views:
        codec.register(view.event_schema)
    delivered = codec.decode(body or b"")[0]
    assert delivered["op"] == "SNAPSHOT" and delivered["before"] is None
    assert key == token(b"secret-city.nanjing", stored["key"]).encode() == \
        delivered["key"].encode()
    assert delivered["after"]["id_number"] != stored["key"]  # L3 above Nanjing's L2


def test_a_resync_delete_is_a_minimal_envelope_in_the_held_view(bus: Bus) -> None:
    codec = Codec()
    policy = _policy(bus, codec)
    route = policy.resource(RES).grants[f"{NANJING}/{RES}"]
    stored = _stored(codec, policy.resource(RES).reader_fp)
    key, value = delete_of(codec, route, stored, 123)
    event = codec.decode(value, route.view.fingerprint)[0]
    assert key == token(b"secret-city.nanjing", stored["key"]).encode()
    assert (event["op"], event["before"], event["after"]) == ("DELETE", None, None)
    assert (event["key"], event["region"]) == (key.decode(), "320102")
    assert event["subscriber"] == NANJING and event["event_id"] != stored["event_id"]


def test_markers_name_the_resync_kind_watermarks_and_resource() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    job = ResyncJob.of(job_id("x"), NANJING, RES, "full", "request", "requested", None, None,
                       now, now, True, now).begun({0: 5, 1: 0}, now)
    headers = dict(marker(job, "end", RES))
    assert headers[t.H_RESYNC] == job.id.encode() and len(job.id) == 32
    assert headers[t.H_MARKER] == b"end" and headers[t.H_RESYNC_KIND] == b"full"
    assert json.loads(headers[t.H_WATERMARK]) == {"0": 5, "1": 0}
    assert headers[t.H_RESOURCE] == RES.encode()
    assert ResyncJob.from_bytes(job.to_bytes()) == job


def test_job_ids_are_the_same_for_the_same_change_and_pacing_is_checked() -> None:
    assert job_id("policy", 7, "a", "b") == job_id("policy", 7, "a", "b")
    assert job_id("policy", 7, "a", "b") != job_id("policy", 8, "a", "b")
    with pytest.raises(ValueError, match="pacing"):
        Pacing(chunk=0)


@pytest.mark.parametrize("op", ["CREATE", "UPDATE", "DELETE"])
def test_the_byte_level_snapshot_equals_the_decoded_one(bus: Bus, op: str) -> None:
    codec = Codec()
    rr = _policy(bus, codec).resource(RES)
    stored = _stored(codec, rr.reader_fp, "CREATE" if op == "CREATE" else "UPDATE")
    stored["op"] = op
    raw = codec.encode(rr.reader_fp, stored)
    head = head_of(raw, rr.reader_fp)
    assert head is not None
    assert (head.op, head.region, head.before_null) == (op, "320102", op == "CREATE")
    assert raw[head.event_id].decode() == str(stored["event_id"])
    [fresh] = event_ids(1)
    assert str(uuid.UUID(fresh.decode())) == fresh.decode()
    assert uuid.UUID(fresh.decode()).version == 4
    if op == "CREATE":
        assert fast_snapshot(raw, head, fresh) == snapshot_of(codec, rr.reader_fp, stored,
                                                              fresh.decode())
    assert head_of(b"\xc3\x01" + b"\x00" * 8 + raw[10:], rr.reader_fp) is None  # other writer
    assert head_of(raw[:30], rr.reader_fp) is None  # truncated: decoded, dead-lettered


def test_a_removed_subscriber_still_gets_its_deletes_routed(bus: Bus) -> None:
    """The job keeps the grant's scopes, so a subscriber gone from streams/ is routed as
    it was (its DELETEs, in the view it held) by the bus of the router at run time."""
    from dataclasses import replace

    from syncbus.router.resync import _Views

    now = datetime(2026, 6, 1, tzinfo=UTC)
    grant = next(g for g in bus.grants if g.key == f"{NANJING}/{RES}")
    scoped = replace(grant, regions=bus.scopes(grant))
    gone = replace(bus, subscribers={k: v for k, v in bus.subscribers.items() if k != NANJING},
                   grants=tuple(g for g in bus.grants if g.subscriber != NANJING))
    job = ResyncJob.of(job_id("removed"), NANJING, RES, "delta", "policy",
                       "subscriber removed", scoped, None, now, now, False, now)
    views = _Views(job, gone, TokenSecrets({NANJING: "s"}), NAMES)
    assert views.old_route is not None and views.new_route is None
    assert views.decide.decide("CREATE", "320102") == "DELETE"
    assert views.decide.decide("CREATE", "320508") is None
