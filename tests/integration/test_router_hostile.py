"""10,000 hostile events beside good traffic: nothing masked leaks, nothing good is lost,
and the router never stops.

Through a real router on a real broker (with ``--max-consecutive-dead 40``, so a run
of junk would have stopped it before): truncated bodies, unknown writer schemas,
out-of-range timestamps (all three undecodable), oversized values (valid residents
with 8 KB names and addresses) and valid events carrying extra headers with the
citizen ID, each event carrying its own real citizen ID and name. Then:

- ``syncbus.dlq`` and every L2 subscriber's share hold none of those IDs or names,
  in values, keys or headers, and no share message carries a header but the source
  partition and offset (so no publisher header, not even at L4);
- every good event and every valid hostile event reached the province, by event id;
- each undecodable event has exactly one dead letter (counted by origin offset) and
  one quarantine record, and the router process is the one started, still running.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.core.catalog import load_bus
from tests.router_helpers import (
    REPO,
    RawWriter,
    RouterProcess,
    ShareReader,
    read_topic,
    resident,
    wait_for,
)

pytestmark = pytest.mark.slow
RES = "population.resident"
L2 = ("city.nanjing", "city.suzhou", "district.gusu", "district.xuanwu")
REGIONS = ("320102", "320508")
HOSTILE, GOOD = 10_000, 500
KINDS = ("truncated", "unknown_writer", "bad_timestamp", "oversized", "extra_headers")
UNDECODABLE = {"truncated", "unknown_writer", "bad_timestamp"}


def _hostile(writer: RawWriter, kind: str, n: int, rng: random.Random) -> tuple[Any, ...]:
    """(key, value, headers, event_id or None, secrets) of one hostile event."""
    record = resident(REGIONS[n % 2], seed=100_000 + n)
    secrets = [record["id_number"].encode(), record["name"].encode()]
    if kind == "oversized":
        record["name"] = record["name"][:1] + "".join(chr(rng.randrange(0x4E00, 0x9FA5))
                                                      for _ in range(2700))
        record["address"] = record["address"] + "号" * 2700
        secrets = [record["id_number"].encode(), record["name"].encode()]
    key, value, headers, event_id = writer.encode(RES, "CREATE", record)
    if kind == "truncated":
        value = value[: rng.randrange(12, len(value) - 4)]
    elif kind == "unknown_writer":
        value = value[:2] + os.urandom(8) + value[10:]
    elif kind == "bad_timestamp":
        event = writer.codec.decode(value)[0]
        event["occurred_at"] = 2**62  # far past year 9999
        value = writer.codec.encode(writer.fp(RES), event)
    elif kind == "extra_headers":
        headers = [*headers, ("x-leak", record["id_number"].encode()),
                   ("x-name", record["name"].encode())]
    valid = kind not in UNDECODABLE
    return key, value, headers, event_id if valid else None, secrets


_ID = re.compile(rb"[0-9]{17}[0-9X]")
_HAN = re.compile(rb"(?:[\xe4-\xe9][\x80-\xbf][\x80-\xbf])+")  # runs of CJK characters


def _pieces(blob: bytes) -> set[bytes]:
    """Every 18-character ID-like string and every run of CJK characters in ``blob``,
    with the 2- to 4-character pieces of the shorter runs: a set that any citizen ID
    or name present in the bytes belongs to (a substring search per value would
    take minutes)."""
    found = set(_ID.findall(blob))
    for run in set(_HAN.findall(blob)):
        found.add(run)
        if len(run) <= 3 * 64:
            for size in (6, 9, 12):
                found.update(run[i : i + size] for i in range(0, len(run) - size + 1, 3))
    return found


def _all_bytes(message: Any) -> bytes:
    return b"\0".join([message.key() or b"", message.value() or b"",
                       *(v or b"" for _, v in message.headers() or [])])


def test_hostile_events_leak_nothing_and_stop_nothing(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_hostile_scenario(kafka.bootstrap, tmp_path)


def run_hostile_scenario(bootstrap: str, tmp_path: Path) -> None:
    """The scenario above on the broker or cluster at ``bootstrap`` (the replicated
    cluster's fault tests run it too)."""
    started = time.monotonic()
    names = TopicNames(f"hostile{uuid.uuid4().hex[:6]}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(bootstrap), 2, names)
    writer = RawWriter(bus, bootstrap, names)
    router = RouterProcess(bootstrap, tmp_path / "router", prefix=names.prefix,
                           extra=["--max-consecutive-dead", "40"]).start()
    try:
        rng = random.Random(22)
        pid = router.proc.pid if router.proc else None
        expected, secrets = set(), []
        undecodable = 0
        for n in range(HOSTILE):  # runs of each kind, far longer than the limit of 40
            kind = KINDS[n * len(KINDS) // HOSTILE]
            key, value, headers, event_id, hidden = _hostile(writer, kind, n, rng)
            writer.send_raw(RES, key, value, headers)
            secrets += hidden
            if event_id is None:
                undecodable += 1
            else:
                expected.add(event_id)
            if n % 20 == 0:  # good traffic beside it
                expected.add(writer.send(RES, "CREATE", resident(REGIONS[n % 2], seed=n)))
        writer.flush()
        assert len(expected) == HOSTILE * 2 // len(KINDS) + GOOD

        reader = ShareReader(bootstrap, names)

        def province_ids() -> set[str] | None:
            got = {str(e["event_id"]) for e in reader.events("province.jiangsu", RES, 1.0)}
            return got if expected <= got else None

        wait_for(province_ids, 120, "every valid event at the province")

        def letters() -> list[Any] | None:
            found = read_topic(bootstrap, names.dlq, 1.0)
            return found if len(found) >= undecodable else None

        dead = wait_for(letters, 60, "a dead letter per undecodable event")
        origins = {(dict(m.headers())[t.H_DLQ_PARTITION], dict(m.headers())[t.H_DLQ_OFFSET])
                   for m in dead}
        assert len(dead) == len(origins) == undecodable
        quarantined = {m.key() for m in read_topic(bootstrap, names.quarantine, 1.0)}
        assert len(quarantined) == undecodable

        scanned = [_all_bytes(m) for m in dead]
        for subscriber in L2:
            scanned += [_all_bytes(m) for m in
                        read_topic(bootstrap, names.share(subscriber, RES), 1.0)]
        assert len(scanned) > undecodable + len(expected)  # the L2 shares got their part
        leaked = set(secrets) & _pieces(b"\n".join(scanned))
        assert leaked == set(), f"{len(leaked)} masked values found in clear"
        for subscriber in (*L2, "province.jiangsu"):
            for message in read_topic(bootstrap, names.share(subscriber, RES), 0.5):
                assert [h for h, _ in message.headers()] == [t.H_SOURCE_PARTITION,
                                                              t.H_SOURCE_OFFSET]
        assert router.alive() and router.proc is not None and router.proc.pid == pid
        assert time.monotonic() - started < 240
    finally:
        router.stop()
