"""A subscriber killed with kill -9 mid-stream and restarted: its handler saw every
routed event exactly once, counted by event id over both runs."""

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
EVENTS = 1500


def handled(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT event_id FROM handled")]
        except sqlite3.OperationalError:  # the child has not created its table yet
            return []


def spawn(kafka: Any, sub_id: str, db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.subscriber_helpers_child",
            kafka.bootstrap,
            sub_id,
            str(db),
            "0.002",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_9_mid_stream_then_restart_handles_each_event_once(kafka: Any, tmp_path: Path) -> None:
    sub_id = f"test.k{uuid.uuid4().hex[:10]}"
    share = ShareProducer(kafka.bootstrap, sub_id, partitions=3)
    records = make_records("population.resident", EVENTS // 3, seed=11)
    ids = [i for p in range(3) for i in share.send(records, source_partition=p)]
    db = tmp_path / "store.db"

    child = spawn(kafka, sub_id, db)
    deadline = time.monotonic() + 60
    while len(handled(db)) < EVENTS // 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before = handled(db)
    assert EVENTS // 5 <= len(before) < EVENTS, "the kill must land mid-stream"

    child = spawn(kafka, sub_id, db)
    assert child.wait(timeout=120) == 0
    after = handled(db)
    assert len(after) == len(set(after)), "an event was handled twice"
    assert sorted(after) == sorted(ids)
