"""Issue #17 on a real broker with a real router: the data follows the grant.

The shipped bus, edited by ``apply`` as an operator would: approving Wuxi's pending
grant sends exactly its existing residents as SNAPSHOTs between begin and end
markers, masked for its clearance; narrowing Suzhou to Gusu sends DELETEs for the
rest, widening it again sends them back; lowering Nanjing's clearance re-sends its
share in the new view; a grant that expires during the test gets DELETEs with no
``apply``; ``syncbus resync`` resends a whole share and refuses what it cannot;
a grant revoked while the router is down is resynced when it starts; kill -9 of the
router mid-resync, and the restarted router completes it with every key at its
latest version. Share topics are read with a plain consumer and counted
by key and offset (contract: docs/resync-contract.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from syncbus.admin.apply import apply_bus
from syncbus.admin.compacted import read_compacted
from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.core.catalog import Bus, load_bus
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

RES = "population.resident"
WAIT_S = 120.0
PUBLISHED: dict[str, str] = {}  # id_number -> region of every resident this module wrote


class Share:
    """Every message of one share topic so far, followed by a plain consumer."""

    def __init__(self, bootstrap: str, subscriber: str) -> None:
        self.subscriber = subscriber
        self.topic = t.share_topic(subscriber, RES)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}",
                                  "enable.auto.commit": False})
        parts = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        self.messages: list[Any] = []

    def poll(self) -> list[Any]:
        """Everything written so far: read until every partition reaches the high
        watermark it had when asked (a first empty poll is not the end: a loaded
        broker answers a new consumer's partitions one by one)."""
        parts = self.consumer.assignment()
        ends = {p.partition: self.consumer.get_watermark_offsets(p, timeout=10)[1]
                for p in parts}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = [m for m in self.consumer.consume(2000, timeout=0.2) if m.error() is None]
            self.messages += got
            positions = {p.partition: p.offset for p in self.consumer.position(parts)}
            if all(positions[p] >= end for p, end in ends.items() if end > 0):
                return self.messages
        raise AssertionError(f"share {self.topic} not read to {ends} within 60 s")

    def of(self, rid: str) -> tuple[list[Any], list[Any]]:
        """(markers, deliveries) of one resync, in the order read."""
        mine = [m for m in self.poll() if dict(m.headers() or []).get(t.H_RESYNC) == rid.encode()]
        markers = [m for m in mine if t.H_MARKER in dict(m.headers() or [])]
        return markers, [m for m in mine if t.H_MARKER not in dict(m.headers() or [])]

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bus")
    shutil.copytree(REPO / "streams", root / "streams")
    return root / "streams"


def _apply(bootstrap: str, streams: Path) -> Bus:
    bus = load_bus(streams, REPO / "schemas")
    apply_bus(bus, Connection(bootstrap), partitions=3)
    return bus


def _edit(streams: Path, old: str, new: str) -> None:
    grants = streams / "grants.yaml"
    text = grants.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    grants.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture(scope="module")
def router(bus_kafka, streams: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:  # type: ignore[no-untyped-def]
    bus = _apply(bus_kafka.bootstrap, streams)
    process = RouterProcess(bus_kafka.bootstrap, tmp_path_factory.mktemp("router"),
                            extra=["--resync-chunk", "100", "--resync-pause", "0.2"]).start()
    writer = RawWriter(bus, bus_kafka.bootstrap)
    probe = writer.send(RES, "CREATE", resident("320102", seed=1))
    PUBLISHED[resident("320102", seed=1)["id_number"]] = "320102"
    writer.flush()
    reader = ShareReader(bus_kafka.bootstrap)
    try:
        wait_for(lambda: probe in {str(e["event_id"]) for e in
                                   reader.events("province.jiangsu", RES, 1.0)},
                 WAIT_S, "the router to route a first event")
        yield process
    finally:
        process.stop()


def _publish(bootstrap: str, streams: Path, records: list[dict[str, Any]]) -> set[str]:
    writer = RawWriter(load_bus(streams, REPO / "schemas"), bootstrap)
    ids = set()
    for record in records:
        ids.add(writer.send(RES, "CREATE", record))
        PUBLISHED[record["id_number"]] = record["region"]
    writer.flush()
    return ids


def _routed(bootstrap: str, ids: set[str], subscriber: str = "province.jiangsu") -> None:
    reader = ShareReader(bootstrap)
    wait_for(lambda: ids <= {str(e["event_id"]) for e in reader.events(subscriber, RES, 1.0)},
             WAIT_S, f"{len(ids)} events to reach {subscriber}")


def _done(bootstrap: str, subscriber: str, change: str, seen: set[str] = frozenset()  # type: ignore[assignment]
          ) -> dict[str, Any]:
    """The finished resync's audit as the router recorded it (``done/<id>``)."""
    def find() -> dict[str, Any] | None:
        for key, value in read_compacted(Connection(bootstrap), t.RESYNC_TOPIC).items():
            if not key.startswith("done/"):
                continue
            audit = json.loads(value)
            if (audit["subscriber"] == subscriber
                    and audit["resource"] == RES and audit["change"] == change
                    and audit["resync"] not in seen):
                return audit
        return None
    return wait_for(find, WAIT_S, f"the resync of {subscriber} ({change})", every=1.0)


def _keys(subscriber: str, scope: str) -> set[str]:
    return {token(SECRETS[subscriber].encode(), n) for n, r in PUBLISHED.items()
            if r.startswith(scope)}


def _check_markers(markers: list[Any], deliveries: list[Any], kind: bytes) -> None:
    begins = [m for m in markers if dict(m.headers())[t.H_MARKER] == b"begin"]
    ends = [m for m in markers if dict(m.headers())[t.H_MARKER] == b"end"]
    assert {m.partition() for m in begins} == {m.partition() for m in ends} == {0, 1, 2}
    for m in markers:
        headers = dict(m.headers())
        assert m.key() is None and m.value() is None
        assert headers[t.H_RESYNC_KIND] == kind and headers[t.H_RESOURCE] == RES.encode()
        assert set(json.loads(headers[t.H_WATERMARK])) == {"0", "1", "2"}
    for d in deliveries:  # per partition: after a begin, before the end
        first_begin = min(b.offset() for b in begins if b.partition() == d.partition())
        last_end = max(e.offset() for e in ends if e.partition() == d.partition())
        assert first_begin < d.offset() < last_end
        assert int(dict(d.headers())[t.H_SOURCE_OFFSET]) >= 0


def test_approving_wuxi_sends_exactly_its_residents_masked(bus_kafka, streams, router) -> None:  # type: ignore[no-untyped-def]
    wuxi = [resident("320205", seed=1000 + i) for i in range(20)]
    others = [resident("320102", seed=2000 + i) for i in range(20)]
    _routed(bus_kafka.bootstrap, _publish(bus_kafka.bootstrap, streams, wuxi + others))
    _edit(streams, "{subscriber: city.wuxi, resource: population.resident, clearance: L2, "
          "state: pending,", "{subscriber: city.wuxi, resource: population.resident, "
          "clearance: L2, state: approved, approved_by: js-gaj,")
    _apply(bus_kafka.bootstrap, streams)
    audit = _done(bus_kafka.bootstrap, "city.wuxi", "approved")
    assert (audit["cause"], audit["snapshots"], audit["deletes"]) == ("policy", 20, 0)
    share = Share(bus_kafka.bootstrap, "city.wuxi")
    markers, deliveries = share.of(audit["resync"])
    _check_markers(markers, deliveries, b"delta")
    reader = ShareReader(bus_kafka.bootstrap)
    events = [reader.decode(m.value()) for m in deliveries]
    secret = SECRETS["city.wuxi"].encode()
    assert sorted(e["key"] for e in events) == sorted(token(secret, r["id_number"]) for r in wuxi)
    clear = {r["id_number"]: r for r in wuxi}
    by_token = {token(secret, n): r for n, r in clear.items()}
    for event in events:
        record = by_token[event["key"]]
        assert event["op"] == "SNAPSHOT" and event["before"] is None
        after = event["after"]
        assert after["id_number"] != record["id_number"]  # L3 above L2: masked
        assert after["name"] != record["name"] and after["gender"] == record["gender"]
    everything = b"".join(m.value() for m in deliveries)
    assert not any(r["id_number"].encode() in everything for r in wuxi)
    audits = [json.loads(m.value()) for m in read_topic(bus_kafka.bootstrap, t.AUDIT_TOPIC, 1.0)
              if m.key() == f"resync/{audit['resync']}".encode()]
    assert len(audits) == 1 and audits[0]["change"] == "approved"
    assert audits[0]["subscriber"] == "city.wuxi" and audits[0]["dead_letters"] == 0
    share.close()


def test_narrowing_suzhou_deletes_the_rest_and_widening_returns_it(  # type: ignore[no-untyped-def]
    bus_kafka, streams, router
) -> None:
    gusu = [resident("320508", seed=3000 + i) for i in range(6)]
    wuzhong = [resident("320506", seed=3100 + i) for i in range(6)]
    _routed(bus_kafka.bootstrap, _publish(bus_kafka.bootstrap, streams, gusu + wuzhong),
            "city.suzhou")
    _edit(streams, "masks: {address: drop}}", 'masks: {address: drop}, regions: ["320508"]}')
    _apply(bus_kafka.bootstrap, streams)
    narrowed = _done(bus_kafka.bootstrap, "city.suzhou", "scope narrowed")
    outside = _keys("city.suzhou", "3205") - _keys("city.suzhou", "320508")
    assert (narrowed["snapshots"], narrowed["deletes"]) == (0, len(outside)) == (0, 6)
    share = Share(bus_kafka.bootstrap, "city.suzhou")
    markers, deliveries = share.of(narrowed["resync"])
    _check_markers(markers, deliveries, b"delta")
    reader = ShareReader(bus_kafka.bootstrap)
    deletes = [reader.decode(m.value()) for m in deliveries]
    assert {e["key"] for e in deletes} == outside
    assert all(e["op"] == "DELETE" and e["before"] is None and e["after"] is None
               and e["region"] == "320506" for e in deletes)
    _edit(streams, 'masks: {address: drop}, regions: ["320508"]}', "masks: {address: drop}}")
    _apply(bus_kafka.bootstrap, streams)
    widened = _done(bus_kafka.bootstrap, "city.suzhou", "scope widened")
    _, back = share.of(widened["resync"])
    assert {reader.decode(m.value())["key"] for m in back} == outside
    assert (widened["snapshots"], widened["deletes"]) == (6, 0)
    share.close()


def test_lowering_nanjing_clearance_resends_its_share_in_the_new_view(  # type: ignore[no-untyped-def]
    bus_kafka, streams, router
) -> None:
    _edit(streams, "{subscriber: city.nanjing, resource: population.resident, clearance: L2,",
          "{subscriber: city.nanjing, resource: population.resident, clearance: L1,")
    _apply(bus_kafka.bootstrap, streams)
    audit = _done(bus_kafka.bootstrap, "city.nanjing", "clearance lowered")
    share = Share(bus_kafka.bootstrap, "city.nanjing")
    _, deliveries = share.of(audit["resync"])
    reader = ShareReader(bus_kafka.bootstrap)
    events = [reader.decode(m.value()) for m in deliveries]
    assert {e["key"] for e in events} == _keys("city.nanjing", "3201")
    assert audit["snapshots"] == len(_keys("city.nanjing", "3201")) == 21
    live = [reader.decode(m.value()) for m in share.messages
            if m.value() is not None and t.H_RESYNC not in dict(m.headers() or [])]
    assert live and all(e["after"].get("gender") is not None for e in live)  # L2 view
    assert all(e["op"] == "SNAPSHOT" and e["after"].get("gender") is None for e in events)
    share.close()


def test_a_grant_that_expires_takes_its_share_back_without_apply(  # type: ignore[no-untyped-def]
    bus_kafka, streams, router
) -> None:
    xuanwu = [resident("320102", seed=4000 + i) for i in range(5)]
    expires = (datetime.now(UTC) + timedelta(seconds=25)).replace(microsecond=0)
    _edit(streams, '{subscriber: district.xuanwu, resource: population.resident, clearance: L2, '
          'state: approved,\n     approved_by: js-gaj, expires: "2027-06-30"',
          '{subscriber: district.xuanwu, resource: population.resident, clearance: L2, '
          f'state: approved,\n     approved_by: js-gaj, expires: "{expires.isoformat()}"')
    _apply(bus_kafka.bootstrap, streams)
    _routed(bus_kafka.bootstrap, _publish(bus_kafka.bootstrap, streams, xuanwu),
            "district.xuanwu")
    assert datetime.now(UTC) < expires, "too slow to publish before the expiry"
    audit = _done(bus_kafka.bootstrap, "district.xuanwu", "expired")
    assert audit["cause"] == "expiry"
    held = _keys("district.xuanwu", "320102")
    assert (audit["snapshots"], audit["deletes"]) == (0, len(held)) == (0, 26)
    share = Share(bus_kafka.bootstrap, "district.xuanwu")
    _, deliveries = share.of(audit["resync"])
    reader = ShareReader(bus_kafka.bootstrap)
    assert {reader.decode(m.value())["key"] for m in deliveries} == held
    share.close()


def _cli(bootstrap: str, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncbus", "resync", "--bootstrap", bootstrap,
                           *args], capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_resync_on_request_resends_the_whole_share_and_refuses_what_it_cannot(  # type: ignore[no-untyped-def]
    bus_kafka, router
) -> None:
    done = _cli(bus_kafka.bootstrap, "--as", "city.suzhou", "--resource", RES, "--wait", "120")
    assert done.returncode == 0, done.stderr
    audit = json.loads(done.stdout.strip().splitlines()[-1])
    assert (audit["cause"], audit["change"]) == ("request", "requested")
    assert audit["snapshots"] == len(_keys("city.suzhou", "3205")) and audit["deletes"] == 0
    share = Share(bus_kafka.bootstrap, "city.suzhou")
    markers, deliveries = share.of(audit["resync"])
    _check_markers(markers, deliveries, b"full")
    share.close()
    unknown = _cli(bus_kafka.bootstrap, "--as", "city.atlantis", "--resource", RES)
    assert unknown.returncode == 2 and "unknown subscriber 'city.atlantis'" in unknown.stderr
    nothing = _cli(bus_kafka.bootstrap, "--as", "city.nanjing", "--resource", "no.such")
    assert nothing.returncode == 2 and "unknown resource 'no.such'" in nothing.stderr
    refused = _cli(bus_kafka.bootstrap, "--as", "city.wuxi", "--resource", "health.diagnosis")
    assert refused.returncode == 2 and "city.wuxi has no grant in force on health.diagnosis" \
        in refused.stderr


def test_a_grant_revoked_while_the_router_is_down_is_resynced_when_it_starts(  # type: ignore[no-untyped-def]
    bus_kafka, streams, router
) -> None:
    router.stop()
    _edit(streams, '  - {subscriber: district.gusu, resource: population.resident, clearance: L2, '
          'state: approved,\n     approved_by: js-gaj, expires: "2027-06-30", '
          'purpose: 基层社会治理 网格化管理}\n', "")
    _apply(bus_kafka.bootstrap, streams)
    router.start()
    audit = _done(bus_kafka.bootstrap, "district.gusu", "revoked")
    held = _keys("district.gusu", "320508")
    assert (audit["snapshots"], audit["deletes"]) == (0, len(held)) == (0, 6)
    share = Share(bus_kafka.bootstrap, "district.gusu")
    _, deliveries = share.of(audit["resync"])
    reader = ShareReader(bus_kafka.bootstrap)
    assert {reader.decode(m.value())["key"] for m in deliveries} == held
    share.close()


def test_kill_9_mid_resync_completes_after_restart(bus_kafka, streams, router) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    regions = ("320102", "320205", "320506", "320508", "321002", "320104")
    records = [resident(regions[i % len(regions)], seed=10_000 + i) for i in range(3000)]
    _routed(bus_kafka.bootstrap, _publish(bus_kafka.bootstrap, streams, records))
    asked = _cli(bus_kafka.bootstrap, "--as", "province.jiangsu", "--resource", RES)
    assert asked.returncode == 0, asked.stderr
    rid = asked.stdout.split()[1]
    share = Share(bus_kafka.bootstrap, "province.jiangsu")

    def midway() -> bool:
        markers, deliveries = share.of(rid)
        ends = [m for m in markers if dict(m.headers())[t.H_MARKER] == b"end"]
        assert not ends, "the resync ended before the kill: slow it down"
        return len(deliveries) >= 300

    wait_for(midway, WAIT_S, "the resync to be under way", every=0.1)
    router.kill9()
    router.start()
    audit = _done(bus_kafka.bootstrap, "province.jiangsu", "requested", {""})
    assert audit["resync"] == rid
    latest: dict[bytes, int] = {}
    for message in read_topic(bus_kafka.bootstrap, t.raw_topic(RES), 2.0):
        latest[message.key()] = message.offset()
    latest = {k: o for k, o in latest.items() if k.decode() in PUBLISHED}
    markers, deliveries = share.of(rid)
    got: dict[bytes, int] = {}
    for message in deliveries:
        offset = int(dict(message.headers())[t.H_SOURCE_OFFSET])
        got[message.key()] = max(got.get(message.key(), -1), offset)
    assert got == latest  # every key, at its latest version (province: keys in clear)
    assert len(latest) == len(PUBLISHED)
    assert audit["snapshots"] >= len(latest)  # some sent twice around the kill: harmless
    assert len([m for m in markers if dict(m.headers())[t.H_MARKER] == b"end"]) == 3
    share.close()
    assert time.monotonic() - started < 400


def _share_limit(bootstrap: str, subscriber: str, max_bytes: str | None) -> None:
    """Set a share topic's max.message.bytes, or (None) give it the broker's again."""
    entry = ConfigEntry("max.message.bytes", max_bytes, incremental_operation=(
        AlterConfigOpType.SET if max_bytes is not None else AlterConfigOpType.DELETE))
    topic = ConfigResource(ConfigResource.Type.TOPIC, t.share_topic(subscriber, RES),
                           incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.incremental_alter_configs([topic]).values():
        future.result(timeout=30)


def test_records_the_broker_refuses_hold_the_resync_until_it_takes_them(  # type: ignore[no-untyped-def]
    bus_kafka, router
) -> None:
    """A share topic that refuses every record (over its size limit): the job is not done
    and stays pending, retried from its progress; once the topic takes records again,
    it ends with every key of the share. Before the producer's refusals were checked, the
    job recorded itself done with nothing delivered."""
    _share_limit(bus_kafka.bootstrap, "city.suzhou", "100")
    try:
        asked = _cli(bus_kafka.bootstrap, "--as", "city.suzhou", "--resource", RES)
        assert asked.returncode == 0, asked.stderr
        rid = asked.stdout.split()[1]
        wait_for(lambda: f"job/{rid}" in read_compacted(Connection(bus_kafka.bootstrap),
                                                        t.RESYNC_TOPIC), WAIT_S,
                 f"resync {rid} submitted")
        time.sleep(10)  # a job of ~20 records at chunks of 100: done in 1-3 s if let through
        records = read_compacted(Connection(bus_kafka.bootstrap), t.RESYNC_TOPIC)
        assert f"done/{rid}" not in records and f"job/{rid}" in records
    finally:
        _share_limit(bus_kafka.bootstrap, "city.suzhou", None)
    audit = json.loads(wait_for(lambda: read_compacted(
        Connection(bus_kafka.bootstrap), t.RESYNC_TOPIC).get(f"done/{rid}"), WAIT_S,
        f"resync {rid} done once the topic takes records", every=1.0))
    assert audit["snapshots"] == len(_keys("city.suzhou", "3205")) and audit["deletes"] == 0
    share = Share(bus_kafka.bootstrap, "city.suzhou")
    markers, deliveries = share.of(rid)
    _check_markers(markers, deliveries, b"full")
    reader = ShareReader(bus_kafka.bootstrap)
    assert {reader.decode(m.value())["key"] for m in deliveries} == _keys("city.suzhou", "3205")
    share.close()
