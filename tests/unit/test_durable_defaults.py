"""What is accepted or applied is on disk before anyone is told so (issue 22).

A power cut cannot be staged in a unit test; what can be checked is that each write
whose loss would break a promise reaches the disk before the promise: the spool's
blob and commit before ``publish`` returns (else sequence numbers are reused), the
store's commit before the Kafka offsets say "applied" (else sink rows are lost).
The fsyncs are counted on the real calls (the wrapper calls ``os.fsync``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from syncbus.core.catalog import Bus
from syncbus.core.fake import make_records
from syncbus.publisher import Publisher
from syncbus.publisher.spool import Spool
from syncbus.subscriber import SqlStore

FULL = 2  # PRAGMA synchronous


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths fsynced from Python, in order (``os.fsync`` itself still runs)."""
    calls: list[str] = []
    real: Callable[[int], None] = os.fsync

    def counting(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def _sqlite_syncs(spool: Spool, write: Callable[[], object]) -> int:
    """The ``synchronous`` level the spool's connection has while ``write`` commits (SQLite
    takes it at BEGIN): the spool's execute is watched for the statement."""
    levels: list[int] = []
    db = spool._db

    class Watching:
        def execute(self, sql: str, *args: object) -> object:
            if sql == "BEGIN IMMEDIATE":
                levels.append(db.execute("PRAGMA synchronous").fetchone()[0])
            return db.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(db, name)

    spool._db = Watching()  # type: ignore[assignment]
    try:
        write()
    finally:
        spool._db = db
    assert levels, "the write began no transaction"
    return levels[0]


def test_the_spool_is_durable_by_default(tmp_path: Path, fsynced: list[str]) -> None:
    from syncbus.publisher.spool import INLINE_BYTES

    spool = Spool(tmp_path / "s.db")
    try:
        fsynced.clear()
        sqlite_syncs = _sqlite_syncs(spool, lambda: spool.append(
            "a.b", [(b"k", b"v", "m")], last_seq=1, now=1.0))
        assert sqlite_syncs == FULL, "the append's commit is fsynced by SQLite"
        assert fsynced == [], "a small batch is in its row: the WAL's fsync is the only one"
        big = [(b"k", os.urandom(INLINE_BYTES), "m")]
        sqlite_syncs = _sqlite_syncs(spool, lambda: spool.append("a.b", big, 2, now=1.0))
        assert any(path.endswith(".seg") for path in fsynced), fsynced
        assert sqlite_syncs == FULL, "and the big batch's row after its segment blob"
    finally:
        spool.close()


def test_the_publisher_spools_durably_by_default(tmp_path: Path, bus: Bus) -> None:
    record = make_records(bus.resources["licence.business"].schema, 1, seed=1)[0]
    publisher = Publisher("js-scjgj", bus, "127.0.0.1:9", spool_path=tmp_path / "p.db",
                          registry=CollectorRegistry())
    try:
        sqlite_syncs = _sqlite_syncs(publisher.spool, lambda: publisher.publish(
            "licence.business", "CREATE", after=record))
        assert sqlite_syncs == FULL
    finally:
        publisher.close(timeout=0.1)


def test_a_store_commit_is_on_disk_when_it_returns(tmp_path: Path, fsynced: list[str]) -> None:
    store = SqlStore.open(tmp_path / "s.db")
    assert str(tmp_path) in fsynced, "the WAL's name is made durable once, at open"
    try:
        store.record("a")
        fsynced.clear()
        store.commit()
        assert fsynced == [f"{tmp_path / 's.db'}-wal"], fsynced
        store.record("b")
        fsynced.clear()
        store.commit()
        assert fsynced == [f"{tmp_path / 's.db'}-wal"], "the WAL's name is on disk already"
    finally:
        store.close()


def test_per_event_commits_wait_for_the_durable_one(tmp_path: Path, fsynced: list[str]) -> None:
    """The subscriber's per-event commits skip the fsync; the batch commit before the
    offsets makes them all durable at once."""
    store = SqlStore.open(tmp_path / "s.db")
    try:
        fsynced.clear()
        for event_id in ("a", "b", "c"):
            store.record(event_id)
            store.commit(durable=False)
        assert fsynced == []
        store.save_sequences({("r", 0): 3})
        store.commit()
        assert fsynced[:1] == [f"{tmp_path / 's.db'}-wal"]
    finally:
        store.close()
