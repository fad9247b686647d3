"""The spool keeps what was accepted and not confirmed, in order, across reopenings."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from syncbus.publisher.spool import Spool, SpoolLocked


def rows(n: int, start: int = 0) -> list[tuple[bytes, bytes, str]]:
    return [(f"k{i}".encode(), f"v{i}".encode(), f"m{i}") for i in range(start, start + n)]


def test_rows_come_back_in_acceptance_order_until_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    first = spool.append("a.b", rows(5), last_seq=5, now=1.0)
    second = spool.append("c.d", rows(3, 5), last_seq=3, now=2.0)
    assert (first, second, spool.depth, spool.last_id) == (1, 6, 8, 8)
    assert [r.key for r in spool.pending(0, 100)] == [f"k{i}".encode() for i in range(8)]
    assert spool.remove([2, 3, 4, 7, 1]) == 5
    left = spool.pending(0, 100)
    assert [(r.id, r.resource, r.meta) for r in left] == [(5, "a.b", "m4"), (6, "c.d", "m5"),
                                                          (8, "c.d", "m7")]
    assert [r.id for r in spool.pending(5, 1)] == [6]
    assert spool.depth == 3
    spool.close()


def test_what_is_left_and_the_sequences_survive_a_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(4), last_seq=4, now=1.0)
    spool.append("a.b", rows(2, 4), last_seq=6, now=1.0)
    spool.remove([1, 2])
    spool.close()

    again = Spool(tmp_path / "s.db")
    assert again.depth == 4 and again.sequences() == {"a.b": 6}
    assert [r.id for r in again.pending(0, 10)] == [3, 4, 5, 6]
    assert again.append("a.b", rows(1), last_seq=7, now=1.0) == 7, "ids keep growing"
    again.close()


def test_two_publishers_cannot_share_a_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    with pytest.raises(SpoolLocked, match="own spool path"):
        Spool(tmp_path / "s.db")
    spool.close()
    Spool(tmp_path / "s.db").close()


def test_removing_nothing_or_unknown_ids_changes_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(2), last_seq=2, now=1.0)
    assert spool.remove([]) == 0
    assert spool.remove([40, 41]) == 0
    assert spool.depth == 2
    spool.close()


def test_a_spool_belongs_to_one_department(tmp_path: Path) -> None:
    Spool(tmp_path / "s.db", department="js-gaj").close()
    with pytest.raises(SpoolLocked, match="belongs to department 'js-gaj'"):
        Spool(tmp_path / "s.db", department="js-scjgj")
    Spool(tmp_path / "s.db", department="js-gaj").close()


def test_acks_inside_a_batch_survive_a_reopening_and_done_batches_go(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(5), last_seq=5, now=1.0)
    spool.append("a.b", rows(5, 5), last_seq=10, now=2.0)
    assert spool.remove([2, 4, 6, 7, 8, 9, 10, 2]) == 7, "an id acked twice counts once"
    spool.close()

    again = Spool(tmp_path / "s.db")
    assert again.depth == 3
    left = again.pending(0, 10)
    assert [(r.id, r.key, r.accepted_at) for r in left] == [
        (1, b"k0", 1.0), (3, b"k2", 1.0), (5, b"k4", 1.0)]
    assert [r.id for r in again.pending(3, 10)] == [5]
    assert again.remove([1, 3, 5]) == 3 and again.depth == 0
    again.close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT COUNT(*) FROM batches").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM acks").fetchone() == (0,), "bitmaps go with batches"


def test_an_ack_bitmap_kept_on_the_batch_row_by_earlier_versions_still_counts(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(5), last_seq=5, now=1.0)
    spool.close()
    db = sqlite3.connect(tmp_path / "s.db")  # as the previous version stored acks of 1 and 4
    db.execute("UPDATE batches SET acked = ?", (bytes([0b1001]),))
    db.commit()
    db.close()

    again = Spool(tmp_path / "s.db")
    assert again.depth == 3 and [r.id for r in again.pending(0, 10)] == [2, 3, 5]
    assert again.remove([2]) == 1
    again.close()
    third = Spool(tmp_path / "s.db")
    assert [r.id for r in third.pending(0, 10)] == [3, 5], "the new bitmap keeps the old acks"
    third.close()


def _write_by_hand(path: Path, script: str, insert: str, rows: list[tuple[Any, ...]]) -> None:
    """A spool file as an earlier version left it, written with SQLite directly."""
    db = sqlite3.connect(path)
    db.executescript(script)
    db.executemany(insert, rows)
    db.commit()
    db.close()


def test_a_spool_of_the_per_event_format_is_taken_over(tmp_path: Path) -> None:
    """Spools written by earlier versions (one row per event) lose nothing on upgrade."""

    _write_by_hand(
        tmp_path / "old.db",
        "CREATE TABLE events (id INTEGER PRIMARY KEY, resource TEXT NOT NULL, key BLOB NOT NULL,"
        " value BLOB NOT NULL, meta TEXT NOT NULL, accepted_at REAL NOT NULL);"
        "CREATE TABLE sequences (resource TEXT PRIMARY KEY, last INTEGER NOT NULL);"
        "INSERT INTO sequences VALUES ('a.b', 9);",
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
        [(i, "a.b" if i < 7 else "c.d", f"k{i}".encode(), b"v", f"m{i}", 1.0)
         for i in (3, 4, 5, 7, 8)],
    )
    spool = Spool(tmp_path / "old.db")
    assert spool.depth == 5 and spool.last_id == 8 and spool.sequences() == {"a.b": 9}
    assert [(r.id, r.resource, r.meta) for r in spool.pending(0, 10)] == [
        (3, "a.b", "m3"), (4, "a.b", "m4"), (5, "a.b", "m5"), (7, "c.d", "m7"), (8, "c.d", "m8")]
    assert spool.append("a.b", rows(1), last_seq=10, now=2.0) == 9
    spool.close()


@pytest.fixture(params=["c", "python"])
def marking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``Spool.acknowledge`` with the C loop (``_rows.mark_acked``) or its Python one."""
    from syncbus.publisher import _rows, spool

    if request.param == "python":
        monkeypatch.setattr(spool, "mark_acked", spool._mark_acked)
    else:
        assert spool.mark_acked is _rows.mark_acked, "_rows is not built: run `make venv`"
    return str(request.param)


def test_acks_in_any_order_and_repeated_leave_exactly_the_rest(
    tmp_path: Path, marking: str
) -> None:
    spool = Spool(tmp_path / "s.db")
    for size in (7, 13, 1, 20):
        spool.append("r", [(b"k", b"v%d" % i, "m") for i in range(size)], 1, 0.0)
    rng = random.Random(marking)
    ids = list(range(1, spool.last_id + 1))
    acked = [*rng.sample(ids, 25), 0, 99, 5, 5]  # unknown ids and repeats are ignored
    rng.shuffle(acked)
    assert spool.remove(acked) == len({i for i in acked if 1 <= i <= spool.last_id})
    left = [e.id for e in spool.pending(0, 100)]
    assert left == sorted(set(ids) - set(acked)) and spool.depth == len(left)
    assert spool.remove(ids) == len(left) and spool.pending(0, 100) == []
    assert spool.depth == 0


def test_the_c_and_python_marking_loops_agree() -> None:
    from syncbus.publisher import _rows, spool

    rng = random.Random(3)
    for _ in range(200):
        bits = bytearray(rng.randbytes(4))
        ids = [rng.randrange(90, 140) for _ in range(rng.randrange(0, 12))]
        start = rng.randrange(0, len(ids) + 1)
        mine, theirs = bytearray(bits), bytearray(bits)
        assert _rows.mark_acked(mine, 100, 132, ids, start) == spool._mark_acked(
            theirs, 100, 132, ids, start)
        assert mine == theirs


def _segment_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "s.db.segments").glob("*.seg"))


def _segment_bytes(tmp_path: Path) -> int:
    return sum(p.stat().st_size for p in (tmp_path / "s.db.segments").glob("*.seg"))


@pytest.fixture
def in_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every blob, however small, goes to a segment file (as a big batch's does)."""
    from syncbus.publisher import spool

    monkeypatch.setattr(spool, "INLINE_BYTES", 0)


def test_a_small_batch_stays_in_its_row_and_a_big_one_goes_to_a_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncbus.publisher import spool as spool_module

    monkeypatch.setattr(spool_module, "INLINE_BYTES", 1000)
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(3), last_seq=3, now=1.0)
    assert _segment_bytes(tmp_path) == 0, "a few events are kept in their row"
    big = [(b"k%d" % i, bytes([i]) * 200, "m") for i in range(3, 13)]  # over 1000 pickled
    spool.append("a.b", big, last_seq=13, now=1.0)
    spool.append("c.d", rows(2, 13), last_seq=2, now=1.0)
    assert _segment_bytes(tmp_path) > 2000, "the big batch's blob is in a segment file"
    spool.close()

    again = Spool(tmp_path / "s.db")
    keys = [r.key for r in again.pending(0, 100)]
    assert keys == [b"k0", b"k1", b"k2", *(k for k, _, _ in big), b"k13", b"k14"]
    assert again.pending(3, 1)[0].value == bytes([3]) * 200
    (held,) = [name for name in _segment_files(tmp_path)
               if (tmp_path / "s.db.segments" / name).stat().st_size]
    assert again.remove(range(4, 14)) == 10
    assert held not in _segment_files(tmp_path), "its segment went with the big batch"
    assert [r.id for r in again.pending(0, 100)] == [1, 2, 3, 14, 15]
    again.close()


def test_blobs_live_in_segment_files_that_go_when_their_events_are_acked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_segments: None
) -> None:
    from syncbus.publisher import segments

    monkeypatch.setattr(segments, "SEGMENT_BYTES", 300)  # a few batches per file
    spool = Spool(tmp_path / "s.db")
    for n in range(6):
        spool.append("a.b", rows(10, 10 * n), last_seq=10 * n + 10, now=1.0)
    files = _segment_files(tmp_path)
    assert len(files) == 6, "each blob is over half the limit: one file each"
    assert spool.remove(range(1, 31)) == 30
    assert _segment_files(tmp_path) == files[3:]
    assert [r.key for r in spool.pending(0, 100)] == [f"k{i}".encode() for i in range(30, 60)]
    spool.remove(range(31, 61))
    spool.close()
    assert _segment_files(tmp_path) == [], "nothing left to send, no file left"


def test_a_blob_no_row_points_to_is_removed_at_open(tmp_path: Path, in_segments: None) -> None:
    """A crash between writing a blob and committing its row leaves bytes nobody needs."""
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(3), last_seq=3, now=1.0)
    spool.close()
    stray = tmp_path / "s.db.segments" / "00000099.seg"
    stray.write_bytes(b"half a batch")
    again = Spool(tmp_path / "s.db")
    assert not stray.exists()
    assert [r.key for r in again.pending(0, 10)] == [b"k0", b"k1", b"k2"]
    again.close()


def test_a_blob_lost_in_a_power_cut_drops_its_batch_loudly_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, in_segments: None
) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(3), last_seq=3, now=1.0)
    spool.append("c.d", rows(4, 3), last_seq=4, now=1.0)
    spool.remove([2])
    spool.close()
    (segment,) = (tmp_path / "s.db.segments").glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # the second batch's blob is not what was written
    segment.write_bytes(bytes(data))

    again = Spool(tmp_path / "s.db")
    assert again.lost == [("c.d", 4, 4)]
    assert "ids 4..7 were lost" in caplog.text
    assert again.depth == 2 and [r.id for r in again.pending(0, 10)] == [1, 3]
    assert again.sequences() == {"a.b": 3, "c.d": 4}, "numbers are never reused"
    assert again.append("a.b", rows(1), last_seq=4, now=2.0) == 8, "nor are ids"
    again.close()
    third = Spool(tmp_path / "s.db")
    assert third.lost == [], "dropped once, not at every open"
    third.close()


def test_a_spool_of_the_blob_in_sqlite_format_is_read_and_acked(tmp_path: Path) -> None:
    """Spools of the previous version kept each batch's events in ``batches.events``."""
    import pickle

    _write_by_hand(
        tmp_path / "s.db",
        "CREATE TABLE batches (first INTEGER PRIMARY KEY, count INTEGER NOT NULL, resource TEXT"
        " NOT NULL, accepted_at REAL NOT NULL, events BLOB NOT NULL, acked BLOB);"
        "CREATE TABLE sequences (resource TEXT PRIMARY KEY, last INTEGER NOT NULL);"
        "INSERT INTO sequences VALUES ('a.b', 2);",
        "INSERT INTO batches VALUES (1, 2, 'a.b', 1.0, ?, NULL)",
        [(pickle.dumps(([b"k0", b"k1"], [b"v0", b"v1"], ["m0", "m1"])),)],
    )
    spool = Spool(tmp_path / "s.db")
    assert [(r.id, r.key, r.meta) for r in spool.pending(0, 10)] == [(1, b"k0", "m0"),
                                                                     (2, b"k1", "m1")]
    assert spool.append("a.b", rows(1), last_seq=3, now=2.0) == 3
    assert spool.remove([1, 2, 3]) == 3 and spool.depth == 0
    spool.close()


def test_a_full_sync_spool_writes_and_reads_back_the_same(
    tmp_path: Path, in_segments: None
) -> None:
    """``sync="full"`` fsyncs each blob (and each new segment's name) before its row."""
    spool = Spool(tmp_path / "s.db", sync="full")
    spool.append("a.b", rows(3), last_seq=3, now=1.0)
    spool.close()
    again = Spool(tmp_path / "s.db", sync="full")
    assert [(r.id, r.key, r.value) for r in again.pending(0, 10)] == [
        (1, b"k0", b"v0"), (2, b"k1", b"v1"), (3, b"k2", b"v2")]
    again.close()
