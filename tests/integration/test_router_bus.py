"""The shipped bus through a real router process on a real broker.

Residents reach each city and district only for their own region and the province
for all, masked per grant; Wuxi's pending grant delivers nothing until it is
approved and applied; a move is a DELETE for the old region and a CREATE for the
new; bad input is dead-lettered with its reason while good input flows on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import Bus, load_bus
from syncbus.core.codec import MAGIC
from syncbus.core.fake import make_record
from syncbus.core.masking import token
from syncbus.router.engine import H_DLQ_ERROR_CLASS
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
CITIES = {
    "city.nanjing": "3201",
    "city.suzhou": "3205",
    "city.wuxi": "3202",
    "district.gusu": "320508",
    "district.xuanwu": "320102",
}


@pytest.fixture(scope="module")
def bus_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bus")
    shutil.copytree(REPO / "streams", root / "streams")
    return root / "streams", REPO / "schemas"


@pytest.fixture(scope="module")
def bus(bus_dirs: tuple[Path, Path]) -> Bus:
    return load_bus(*bus_dirs)


@pytest.fixture(scope="module")
def router(
    bus_kafka, bus: Bus, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RouterProcess]:  # type: ignore[no-untyped-def]
    apply_bus(bus, Connection(bus_kafka.bootstrap), partitions=3)
    process = RouterProcess(bus_kafka.bootstrap, tmp_path_factory.mktemp("router")).start()
    writer = RawWriter(bus, bus_kafka.bootstrap)
    probe = writer.send("legal.company", "CREATE", _company("320102", 1))
    writer.flush()
    reader = ShareReader(bus_kafka.bootstrap)
    try:
        wait_for(
            lambda: probe in _ids(reader, "province.jiangsu", "legal.company"),
            120,
            "the router to route a first event",
        )
        yield process
    finally:
        process.stop()


def _company(region: str, seed: int) -> dict:
    return make_record("legal.company", region=region, seed=seed)


def _ids(reader: ShareReader, subscriber: str, resource: str = RES) -> set[str]:
    return {str(e["event_id"]) for e in reader.events(subscriber, resource, timeout=1.0)}


def test_residents_reach_only_their_own_city_and_district(bus_kafka, bus: Bus, router) -> None:  # type: ignore[no-untyped-def]
    writer = RawWriter(bus, bus_kafka.bootstrap)
    regions = ["320102", "320106", "320508", "320505", "320205", "320583"]
    sent, keys = {}, {}
    for i, r in enumerate(regions * 5):
        record = resident(r, seed=i)
        event_id = writer.send(RES, "CREATE", record)
        sent[event_id], keys[event_id] = r, record[bus.resource(RES).key_field]
    diagnosis = __import__("syncbus.core.fake", fromlist=["x"]).make_record(
        "health.diagnosis", region="320508", seed=1
    )
    writer.send("health.diagnosis", "CREATE", diagnosis)
    writer.flush()
    reader = ShareReader(bus_kafka.bootstrap)
    province = wait_for(
        lambda: set(sent) <= _ids(reader, "province.jiangsu") or None,
        60,
        "the province to receive every resident",
    )
    assert province
    for subscriber, prefix in CITIES.items():
        events = [e for e in reader.events(subscriber, RES) if str(e["event_id"]) in sent]
        want = {i for i, r in sent.items() if r.startswith(prefix)}
        if subscriber == "city.wuxi":
            want = set()  # its grant is pending
        assert {str(e["event_id"]) for e in events} == want, subscriber
        for e in events:
            after = e["after"]
            assert after["id_number"].count("*") == 10 and after["name"].endswith("*")
            # the subscriber's own keyed token, even where a view's bytes are shared
            secret = SECRETS[subscriber].encode()
            assert e["key"] == token(secret, keys[str(e["event_id"])]) != after["id_number"]
            assert "email" not in after
            if subscriber == "city.suzhou":
                assert "address" not in after  # its grant drops address
            assert e["subscriber"] == subscriber and e["delivery_sequence"] >= 1
    full = [e for e in reader.events("province.jiangsu", RES) if str(e["event_id"]) in sent]
    assert all(e["after"]["id_number"] == e["key"] and "*" not in e["after"]["name"] for e in full)
    from confluent_kafka.admin import AdminClient

    share = [
        n
        for n in AdminClient({"bootstrap.servers": bus_kafka.bootstrap})
        .list_topics(timeout=10)
        .topics
        if n.startswith("share.")
    ]
    assert share and not [n for n in share if "health.diagnosis" in n]
    for name in share:
        for message in read_topic(bus_kafka.bootstrap, name, timeout=0.3):
            assert b"health.diagnosis" not in message.value()


def test_a_move_from_gusu_to_xuanwu(bus_kafka, bus: Bus, router) -> None:  # type: ignore[no-untyped-def]
    writer = RawWriter(bus, bus_kafka.bootstrap)
    before = resident("320508", seed=4242)
    after = dict(before, region="320102", address="南京市玄武区中山路1号")
    writer.send(RES, "CREATE", before)
    moved = writer.send(RES, "UPDATE", after, before=before)
    writer.flush()
    reader = ShareReader(bus_kafka.bootstrap)
    expected = {
        "city.suzhou": "DELETE",
        "district.gusu": "DELETE",
        "city.nanjing": "CREATE",
        "district.xuanwu": "CREATE",
        "province.jiangsu": "UPDATE",
    }

    def ops() -> dict[str, str]:
        got = {}
        for subscriber in expected:
            for e in reader.events(subscriber, RES, timeout=0.5):
                if str(e["event_id"]) == moved:
                    got[subscriber] = e["op"]
                    if e["op"] == "DELETE":
                        assert e["after"] is None and e["region"] == "320508"
                    if e["op"] == "CREATE":
                        assert e["before"] is None and e["region"] == "320102"
        return got if len(got) == len(expected) else {}

    assert wait_for(ops, 60, "the move to reach all five subscribers") == expected


def test_wuxi_receives_once_approved_and_applied(bus_kafka, bus_dirs, router) -> None:  # type: ignore[no-untyped-def]
    streams, schemas = bus_dirs
    bus = load_bus(streams, schemas)
    writer = RawWriter(bus, bus_kafka.bootstrap)
    reader = ShareReader(bus_kafka.bootstrap)
    early = writer.send(RES, "CREATE", resident("320205", seed=777))
    writer.flush()
    wait_for(lambda: early in _ids(reader, "province.jiangsu"), 60, "the pending-time event")
    grants = streams / "grants.yaml"
    grants.write_text(
        grants.read_text(encoding="utf-8").replace(
            "{subscriber: city.wuxi, resource: population.resident, clearance: L2, state: pending,",
            "{subscriber: city.wuxi, resource: population.resident, clearance: L2, state: approved,"
            " approved_by: js-gaj,",
        ),
        encoding="utf-8",
    )
    approved = load_bus(streams, schemas)
    report = apply_bus(approved, Connection(bus_kafka.bootstrap), partitions=3)
    applied_at = time.monotonic()
    assert "grant/city.wuxi/population.resident" in report.policy_written
    sent_at = {}
    while time.monotonic() - applied_at < 7:
        sent_at[writer.send(RES, "CREATE", resident("320205", seed=len(sent_at)))] = (
            time.monotonic() - applied_at
        )
        writer.flush()
        time.sleep(0.25)
    got = wait_for(lambda: _ids(reader, "city.wuxi") or None, 30, "wuxi's first event")
    assert early not in got  # nothing from before the approval
    delivered = sorted(sent_at[i] for i in got if i in sent_at)
    assert delivered and delivered[0] <= 5.0, f"first event after approval at {delivered[:1]}"
    first = delivered[0]
    assert all(i in got for i, at in sent_at.items() if at >= first)  # every later one too


def _bad_messages(writer: RawWriter, n: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    bad = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            value = rng.randbytes(rng.randrange(1, 200))
        elif kind == 1:
            _, good, _, _ = writer.encode(RES, "CREATE", resident("320102", seed=i))
            value = good[: rng.randrange(12, len(good) - 1)]
        elif kind == 2:
            _, good, _, _ = writer.encode(RES, "CREATE", resident("320102", seed=i))
            value = MAGIC + struct.pack("<Q", rng.getrandbits(64)) + good[10:]
        else:
            record = resident("320102", seed=i)
            record["id_number"] = record["id_number"][:-1] + (
                "0" if record["id_number"][-1] != "0" else "1"
            )
            _, value, _, _ = writer.encode(RES, "CREATE", record)
        bad.append((f"bad-{i}".encode(), value))
    return bad


def test_bad_input_is_dead_lettered_and_good_input_flows(bus_kafka, bus: Bus, router) -> None:  # type: ignore[no-untyped-def]
    names = TopicNames()
    dlq_before = len(read_topic(bus_kafka.bootstrap, names.dlq, timeout=1.0))
    writer = RawWriter(bus, bus_kafka.bootstrap)
    rng = random.Random(5)
    good = []
    for i, (key, value) in enumerate(_bad_messages(writer, 1000, rng)):
        writer.send_raw(RES, key, value)
        good.append(writer.send(RES, "CREATE", resident("320102", seed=10_000 + i)))
    writer.flush()
    reader = ShareReader(bus_kafka.bootstrap)
    wait_for(lambda: set(good) <= _ids(reader, "province.jiangsu"), 120, "1000 good events")

    def dead_letters() -> list | None:
        found = read_topic(bus_kafka.bootstrap, names.dlq, 1.0)[dlq_before:]
        return found if len(found) >= 1000 else None

    dead = wait_for(dead_letters, 60, "1000 dead letters")
    assert len(dead) == 1000
    classes = Counter(dict(m.headers())[H_DLQ_ERROR_CLASS].decode() for m in dead)
    assert classes == {
        "NotSingleObjectEncoded": 250,
        "CorruptBody": 250,
        "UnknownFingerprint": 250,
        "ValidationError": 250,
    }
    for message in dead:
        headers = dict(message.headers())
        assert headers["syncbus-dlq-topic"] == b"raw.population.resident"
        assert headers["syncbus-dlq-error"] and headers["syncbus-dlq-offset"].isdigit()
        assert headers["syncbus-dlq-partition"].isdigit() and headers["syncbus-dlq-time"]
        if headers[H_DLQ_ERROR_CLASS] == b"ValidationError":
            assert b"after.id_number" in headers["syncbus-dlq-error"]
            masked = reader.decode(message.value())["after"]
            assert "*" in masked["id_number"] and masked["name"].endswith("*")
            assert masked["id_number"].encode() not in headers["syncbus-dlq-error"]
    assert router.alive()


def test_a_xuanwu_resident_born_in_1960_goes_through_publish_and_the_router(
    bus_kafka, bus_dirs, router, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """Xuanwu's code exists since 1983; a number issued to someone born in 1960 and
    registered there is valid (issue #15): ``syncbus publish`` accepts it and the
    router delivers it to every subscriber entitled to Xuanwu's residents."""
    from stdnum.cn import ric

    from syncbus.core.validation import to_json

    body = "320102196006151234"[:17]
    number = body + ric.calc_check_digit(body + "0")
    record = dict(resident("320102", seed=1960), id_number=number,
                  birth_date=dt.date(1960, 6, 15), registered_on=dt.date(1985, 3, 1))
    source = tmp_path / "residents.jsonl"
    source.write_text(json.dumps({"op": "CREATE", "after": to_json(record)},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    streams, schemas = bus_dirs
    run = subprocess.run(
        [sys.executable, "-m", "syncbus", "publish", "--as", "js-gaj", "--resource", RES,
         "--file", str(source), "--spool", str(tmp_path / "spool.db"),
         "--streams", str(streams), "--schemas", str(schemas)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SYNCBUS_BOOTSTRAP": bus_kafka.bootstrap},
    )
    assert run.returncode == 0, run.stderr
    assert "accepted 1, rejected 0, delivered 1" in run.stdout
    reader = ShareReader(bus_kafka.bootstrap)
    entitled = {"province.jiangsu", "city.nanjing", "district.xuanwu"}

    def keys(subscriber: str) -> list[str]:
        return [e["key"] for e in reader.events(subscriber, RES, timeout=1.0)]

    for subscriber in sorted(entitled):
        want = number if subscriber == "province.jiangsu" else token(
            SECRETS[subscriber].encode(), number)
        wait_for(lambda s=subscriber, w=want: w in keys(s), 60,
                 f"{subscriber} to receive the 1960 Xuanwu resident")
    for subscriber in ("city.suzhou", "district.gusu", "city.wuxi"):
        assert token(SECRETS[subscriber].encode(), number) not in keys(subscriber)
