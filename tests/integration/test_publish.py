"""The Publisher SDK against a real broker: the wire contract, no loss across a broker
bounce or a kill -9, and nothing sent of a refused change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from syncbus.core import topics as t
from syncbus.core.codec import Codec
from syncbus.publisher import ChangeRejected, NotPermitted, Publisher, UnknownResource
from syncbus.publisher.spool import Spool
from tests.conftest import REPO, LocalKafka
from tests.helpers_publish import create_raw_topics, read_topic, records, shipped_bus

RESOURCES = ["legal.company", "licence.business", "population.resident"]


@pytest.fixture(scope="module")
def broker(bus_kafka: LocalKafka) -> LocalKafka:
    create_raw_topics(bus_kafka.bootstrap, RESOURCES)
    return bus_kafka


@pytest.fixture(params=["native", "python"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The publisher's C loops (``_rows``), or their Python versions (no compiler)."""
    from syncbus.publisher import _rows, changes, sender

    if request.param == "python":
        monkeypatch.setattr(changes, "NewStateWriter", None)
        monkeypatch.setattr(sender, "send", sender._send_py)
        monkeypatch.setattr(sender, "delivery_report", sender._python_report)
    else:
        assert sender.send is _rows.send and changes.NewStateWriter is _rows.NewStateWriter
    return str(request.param)


@pytest.fixture
def publisher(broker: LocalKafka, tmp_path: Path, loops: str) -> Iterator[Publisher]:
    with Publisher("js-scjgj", shipped_bus(), broker.bootstrap, spool_path=tmp_path / "s.db",
                   registry=CollectorRegistry()) as pub:
        yield pub


def mine(reads: list, ids: set[str]) -> list:
    return [r for r in reads if r.event_id in ids]


def test_events_follow_the_wire_contract(broker: LocalKafka, publisher: Publisher) -> None:
    a, b = records("licence.business", 2, seed=3)
    moved = {**a, "region": "320102" if a["region"] != "320102" else "320205"}
    ids = [
        publisher.publish("licence.business", "CREATE", after=a, occurred_at=1_700_000_000_000_000),
        publisher.publish("licence.business", "UPDATE", before=a, after=moved),
        publisher.publish("licence.business", "DELETE", before=b),
    ]
    assert publisher.flush(30) == 0
    reads = mine(read_topic(broker.bootstrap, "raw.licence.business", 3), set(ids))
    assert sorted(r.event_id for r in reads) == sorted(ids)
    by_id = {r.event_id: r for r in reads}
    codec = Codec([shipped_bus().schemas.event_schema("licence.business")])

    create, update, delete = (by_id[i] for i in ids)
    event, fp = codec.decode(create.value)
    assert create.key == a["licence_number"].encode() == event["key"].encode()
    assert create.headers[t.H_FINGERPRINT] == fp.hex() == create.value[2:10].hex()
    assert event["after"]["holder_uscc"] == a["holder_uscc"] and event["op"] == "CREATE"
    assert create.headers[t.H_OCCURRED_AT] == "1700000000000000"
    assert int(create.headers[t.H_PUBLISHED_AT]) > 1_700_000_000_000_000
    assert create.headers[t.H_SOURCE] == "js-scjgj"
    assert create.headers[t.H_RESOURCE] == "licence.business"
    assert create.headers[t.H_REGION] == a["region"] and t.H_OLD_REGION not in create.headers

    assert update.headers[t.H_REGION] == moved["region"]
    assert update.headers[t.H_OLD_REGION] == a["region"]
    assert delete.headers[t.H_OP] == "DELETE" and delete.headers[t.H_REGION] == b["region"]
    assert codec.decode(delete.value)[0]["after"] is None
    seqs = [int(by_id[i].headers[t.H_SEQUENCE]) for i in ids]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]


def test_bad_changes_are_refused_naming_the_field_and_never_sent(
    broker: LocalKafka, tmp_path: Path
) -> None:
    bus = shipped_bus()
    good = records("population.resident", 1, seed=5)[0]
    body = good["id_number"][:17]
    wrong_digit = body + ("0" if good["id_number"][17] != "0" else "1")
    with Publisher("js-gaj", bus, broker.bootstrap, spool_path=tmp_path / "gaj.db",
                   registry=CollectorRegistry()) as pub:
        with pytest.raises(ChangeRejected) as bad_id:
            pub.publish("population.resident", "CREATE", after={**good, "id_number": wrong_digit})
        assert [e.path for e in bad_id.value.errors] == ["after.id_number"]
        assert "check digit" in str(bad_id.value)

        missing = {k: v for k, v in good.items() if k != "name"}
        with pytest.raises(ChangeRejected) as no_name:
            pub.publish("population.resident", "CREATE", after=missing)
        assert [e.path for e in no_name.value.errors] == ["after.name"]

        with pytest.raises(UnknownResource, match=r"population\.nobody"):
            pub.publish("population.nobody", "CREATE", after=good)
        with pytest.raises(NotPermitted, match="owner is 'js-scjgj'"):
            pub.publish("legal.company", "CREATE", after=records("legal.company", 1)[0])
        with pytest.raises(ChangeRejected, match="before: required for UPDATE"):
            pub.publish("population.resident", "UPDATE", after=good)
        assert pub.spool.depth == 0 and pub.sequence("population.resident") == 0
        marker = pub.publish("population.resident", "CREATE", after=good)
        assert pub.flush(30) == 0
    reads = read_topic(broker.bootstrap, "raw.population.resident", 1)
    ids = [r.event_id for r in reads if r.headers[t.H_SOURCE] == "js-gaj"]
    assert ids == [marker], "only the good change may reach Kafka"
    assert next(r for r in reads if r.event_id == marker).headers[t.H_SEQUENCE] == "1"


def test_every_event_once_and_in_order_across_a_broker_bounce(
    broker: LocalKafka, tmp_path: Path
) -> None:
    recs = records("legal.company", 500, seed=11)
    changes = [{"op": "SNAPSHOT", "after": recs[i % len(recs)]} for i in range(10_000)]
    ids: list[str] = []
    with Publisher("js-scjgj", shipped_bus(), broker.bootstrap, spool_path=tmp_path / "b.db",
                   registry=CollectorRegistry()) as pub:
        for start in range(0, 5000, 500):
            ids += pub.publish_many("legal.company", changes[start : start + 500])
        broker.stop()  # events of the first half are still in flight
        try:
            for start in range(5000, 10_000, 500):
                ids += pub.publish_many("legal.company", changes[start : start + 500])
            assert pub.spool.depth > 0, "with the broker down, events wait in the spool"
        finally:
            broker.start()
        assert pub.flush(180) == 0
    reads = mine(read_topic(broker.bootstrap, "raw.legal.company", 10_000, timeout=120), set(ids))
    seen = [r.event_id for r in reads]
    assert len(seen) == len(set(seen)) == 10_000 and set(seen) == set(ids)
    last_by_key: dict[bytes, int] = defaultdict(int)
    for r in sorted(reads, key=lambda r: (r.partition, r.offset)):
        seq = int(r.headers[t.H_SEQUENCE])
        assert seq > last_by_key[r.key], f"key {r.key!r}: {seq} after {last_by_key[r.key]}"
        last_by_key[r.key] = seq


def test_a_new_publisher_delivers_what_a_killed_one_had_accepted(
    broker: LocalKafka, tmp_path: Path
) -> None:
    spool, ids_file, n = tmp_path / "crash.db", tmp_path / "ids.json", 2000
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers_publish_child", broker.bootstrap, str(spool),
         str(n), str(ids_file)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "published"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    ids = json.loads(ids_file.read_text())
    assert len(set(ids)) == n
    left = Spool(spool)
    assert left.depth == n, "the kill came before librdkafka sent anything"
    assert left.sequences() == {"legal.company": n}
    left.close()

    with Publisher("js-scjgj", shipped_bus(), broker.bootstrap, spool_path=spool,
                   registry=CollectorRegistry()) as pub:
        assert pub.flush(60) == 0
        after = pub.publish("legal.company", "SNAPSHOT", after=records("legal.company", 1)[0])
        assert pub.flush(30) == 0
    reads = mine(read_topic(broker.bootstrap, "raw.legal.company", n + 1), {*ids, after})
    assert {r.event_id for r in reads} == {*ids, after}
    seq_of = {r.event_id: int(r.headers[t.H_SEQUENCE]) for r in reads}
    assert sorted(seq_of[i] for i in ids) == list(range(1, n + 1))
    assert seq_of[after] == n + 1, "sequence numbers survive the crash"


def test_heartbeats_mark_a_quiet_resource_alive(broker: LocalKafka, tmp_path: Path) -> None:
    with Publisher("js-scjgj", shipped_bus(), broker.bootstrap, spool_path=tmp_path / "hb.db",
                   heartbeats={"licence.business": 0.3}, registry=CollectorRegistry()) as pub:
        time.sleep(1.2)
        assert pub.flush(30) == 0
        sent = int(pub.metrics.heartbeats.labels("licence.business")._value.get())
    assert sent >= 2
    beats = [r for r in read_topic(broker.bootstrap, "raw.licence.business", 1)
             if r.headers[t.H_OP] == "HEARTBEAT" and r.headers[t.H_SOURCE] == "js-scjgj"]
    assert len(beats) >= sent and all(r.key == b"licence.business" for r in beats)


def test_cli_publishes_good_lines_and_names_bad_ones(broker: LocalKafka, tmp_path: Path) -> None:
    from syncbus.core.validation import to_json

    good = records("licence.business", 3, seed=21)
    bad = {**to_json(good[2]), "holder_uscc": "91320508XXXXXXXXX0"}
    lines = [json.dumps({"op": "CREATE", "after": to_json(r)}, ensure_ascii=False)
             for r in good[:2]]
    lines += ["{oops", json.dumps({"op": "CREATE", "after": bad}, ensure_ascii=False), ""]
    source = tmp_path / "changes.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "syncbus", "publish", "--as", "js-scjgj", "--resource",
         "licence.business", "--file", str(source), "--spool", str(tmp_path / "cli.db")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SYNCBUS_BOOTSTRAP": broker.bootstrap},
    )
    assert run.returncode == 1, run.stderr
    assert "accepted 2, rejected 2, delivered 2" in run.stdout
    assert "line 3: not JSON" in run.stderr
    assert "line 4: after.holder_uscc:" in run.stderr
    numbers = {r["licence_number"] for r in good[:2]}
    reads = read_topic(broker.bootstrap, "raw.licence.business", 2)
    keys = {r.key.decode() for r in reads}
    assert numbers <= keys and good[2]["licence_number"] not in keys


def test_publish_keeps_accepting_while_the_broker_is_away_up_to_its_bound(
    tmp_path: Path,
) -> None:
    """An address where no broker listens: accepted up to the bound, then a clear error."""
    from syncbus.publisher import SpoolFull

    recs = records("licence.business", 5, seed=2)
    pub = Publisher("js-scjgj", shipped_bus(), "127.0.0.1:9", spool_path=tmp_path / "full.db",
                    max_spooled=5, registry=CollectorRegistry())
    try:
        pub.publish_many("licence.business", [{"op": "CREATE", "after": r} for r in recs])
        with pytest.raises(SpoolFull, match="bound is 5"):
            pub.publish("licence.business", "CREATE", after=recs[0])
        assert pub.spool.depth == 5
    finally:
        assert pub.close(timeout=0.5) == 5
    again = Spool(tmp_path / "full.db")
    assert again.depth == 5, "what was not delivered stays spooled for the next run"
    again.close()
    assert not [th for th in threading.enumerate() if th.name == "syncbus-publisher"]


def test_a_small_window_sends_everything_from_the_spool_in_order(
    broker: LocalKafka, tmp_path: Path
) -> None:
    """More accepted than may be in flight: the pump feeds the rest from the spool."""
    recs = records("licence.business", 50, seed=13)
    with Publisher("js-scjgj", shipped_bus(), broker.bootstrap, spool_path=tmp_path / "w.db",
                   window=40, registry=CollectorRegistry()) as pub:
        ids = pub.publish_many("licence.business",
                               [{"op": "SNAPSHOT", "after": recs[i % 50]} for i in range(1000)])
        assert pub.flush(60) == 0
    reads = mine(read_topic(broker.bootstrap, "raw.licence.business", 1000), set(ids))
    assert sorted(r.event_id for r in reads) == sorted(ids)
    last: dict[bytes, int] = defaultdict(int)
    for r in sorted(reads, key=lambda r: (r.partition, r.offset)):
        assert int(r.headers[t.H_SEQUENCE]) > last[r.key]
        last[r.key] = int(r.headers[t.H_SEQUENCE])
