"""``syncbus sink`` killed with kill -9 mid-stream and restarted: every event changed the
table exactly once. A trigger in the sink database logs each row write with its event
id, in the same transaction as the write, so the log counts applications exactly."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from syncbus.core.fake import make_records
from tests.subscriber_helpers import REPO, ShareProducer

pytestmark = pytest.mark.slow
KEYS, ROUNDS = 400, 25  # 10,000 events: every resident updated 25 times


def prepare(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            CREATE TABLE population_resident (_key TEXT PRIMARY KEY, _event_id TEXT NOT NULL,
                _op TEXT NOT NULL, _source_partition INTEGER, _offset INTEGER, _occurred_at TEXT);
            CREATE TABLE applied (event_id TEXT NOT NULL);
            CREATE TRIGGER on_insert AFTER INSERT ON population_resident
                BEGIN INSERT INTO applied VALUES (NEW._event_id); END;
            CREATE TRIGGER on_update AFTER UPDATE ON population_resident
                BEGIN INSERT INTO applied VALUES (NEW._event_id); END;
            """
        )


def applied(db: Path) -> list[str]:
    with sqlite3.connect(db, timeout=10) as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM applied")]


def sink(kafka: Any, sub_id: str, db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncbus",
            "sink",
            "--as",
            sub_id,
            "--to",
            str(db),
            "--resource",
            "population.resident",
            "--timeout",
            "5",
            "--bootstrap",
            kafka.bootstrap,
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sink_killed_mid_stream_applies_each_event_once(kafka: Any, tmp_path: Path) -> None:
    sub_id = f"test.sk{uuid.uuid4().hex[:10]}"
    share = ShareProducer(kafka.bootstrap, sub_id, clearance="L2", partitions=3)
    records = make_records("population.resident", KEYS, seed=51)
    ids = share.send(records)
    for n in range(ROUNDS - 1):
        ids += share.send([{**r, "address": f"第{n}号"} for r in records], op="UPDATE")
    db = tmp_path / "city.db"
    prepare(db)

    child = sink(kafka, sub_id, db)
    deadline = time.monotonic() + 90
    while len(applied(db)) < 1000 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert 1000 <= len(applied(db)) < len(ids), "the kill must land mid-stream"

    child = sink(kafka, sub_id, db)
    assert child.wait(timeout=180) == 0
    log = applied(db)
    assert len(log) == len(set(log)), "an event was applied twice"
    assert sorted(log) == sorted(ids)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM population_resident").fetchone() == (KEYS,)
