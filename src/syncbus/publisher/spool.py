"""The publisher's durable spool: SQLite in WAL mode, one file per department.

An accepted event is committed here before librdkafka sees it and forgotten only
when the broker has acknowledged it (a successful delivery report), so a
publisher restarted on the same file resends exactly what was not confirmed, in
the order it was accepted (id order). The per-(source, resource) sequence
counters live in the same file and advance in the same transaction as the events
they number, so a crash can neither lose a number nor reuse one. They live only here:
deleting the spool file restarts them at 1, which readers see as a reset.

Storage is by batch, not by event: one ``publish_many`` is one row under
consecutive ids, its events (pickled keys, values and header meta) one blob. A
blob of up to ``INLINE_BYTES`` is kept in the row itself (``batches.events``), so a
durable publish of a few events costs one fsync, SQLite's WAL: the WAL is
rewritten in place, so its fsync commits no file-system journal, where fsyncing an
appended file does (measured on ext4: 0.35-0.45 ms an append with both, 0.2-0.3
with the WAL's alone, and half the system CPU). A bigger blob goes to an
append-only segment file beside the database (``segments``: most blobs are
acknowledged before they would ever reach the disk, and never pass through
SQLite's WAL and checkpoints). Acknowledgements are kept as a bitmap per batch,
so an append and a round of acks cost a few SQLite statements whatever their
size. The bitmaps live in their own small table: SQLite rewrites a whole row on
UPDATE. A batch's rows are deleted, and its segment file with its last blob,
when every event in it is acknowledged. (Spools of earlier versions kept the
bitmap in ``batches.acked``; it is still read.)

Durability: with ``sync="full"``, the default, a batch's segment blob is fsynced
before its row is committed and every commit fsyncs SQLite's WAL
(``synchronous=FULL``), so an accepted batch and the sequence numbers it used
survive a power cut or kernel crash: ``publish`` returning means on disk. It
costs one fsync per ``publish_many`` of up to ``INLINE_BYTES``, two or three for a
bigger one (blob, WAL, and the segment's directory entry when a segment starts).
Acknowledgements commit with
``synchronous=NORMAL``: one lost in a power cut only makes its event be sent
again, and the readers drop the duplicate by event id. ``sync="normal"``
(``synchronous=NORMAL`` throughout) survives only the death of the process
(kill -9, OOM): a power cut can lose the last accepted batches and, with them,
the sequence numbers they used, which the next batches then reuse. After such
a crash a batch whose row survived and whose segment blob did not is found at open,
logged as an error with its ids, dropped, and listed in ``Spool.lost``, rather
than sent damaged. The spool is not safe for two
publishers at once: ``Spool`` takes an exclusive lock file.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from syncbus.publisher.refused import SCHEMA as REFUSED_SCHEMA
from syncbus.publisher.refused import RefusedEvents, SpooledEvent
from syncbus.publisher.segments import BlobRef, Segments

log = logging.getLogger("syncbus.publisher.spool")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    first INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    resource TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    events BLOB NOT NULL,
    acked BLOB,
    segment INTEGER,
    offset INTEGER,
    length INTEGER,
    crc INTEGER
);
CREATE TABLE IF NOT EXISTS acks (
    first INTEGER PRIMARY KEY,
    acked BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (
    resource TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS owner (
    department TEXT NOT NULL
);
"""


# a batch's blob up to this size is kept in its row (at most four 16 KiB overflow
# pages, and no segment fsync), a bigger one in a segment file: megabyte batches
# stay out of the WAL and its checkpoints
INLINE_BYTES = 64 << 10


class SpoolLocked(RuntimeError):
    """Another publisher holds this spool file, or it belongs to another department."""


class _Batch:
    """What the spool keeps in memory of a batch: not its events, only which are acked
    and where its blob is (``None``: in its row, ``batches.events``)."""

    __slots__ = ("accepted_at", "acked", "blob", "count", "first", "left", "resource")

    def __init__(self, first: int, count: int, resource: str, accepted_at: float,
                 acked: bytes | None, blob: BlobRef | None = None) -> None:
        self.first, self.count, self.resource, self.accepted_at = (
            first, count, resource, accepted_at)
        self.blob = blob
        self.acked = bytearray(acked) if acked else bytearray((count + 7) // 8)
        self.left = count - sum(bin(b).count("1") for b in acked) if acked else count

    def is_acked(self, spool_id: int) -> bool:
        i = spool_id - self.first
        return bool(self.acked[i >> 3] & (1 << (i & 7)))


def _mark_acked(
    bits: bytearray, first: int, end: int, ids: list[int], start: int
) -> tuple[int, int]:
    """Set bit ``id - first`` for ``ids[start:]`` while they fall in ``[first, end)``:
    (bits newly set, index of the first id outside). ``_rows.mark_acked`` in C."""
    count = 0
    for i in range(start, len(ids)):
        offset = ids[i] - first
        if not 0 <= offset < end - first:
            return count, i
        byte, bit = offset >> 3, 1 << (offset & 7)
        if not bits[byte] & bit:
            bits[byte] |= bit
            count += 1
    return count, len(ids)


mark_acked: Callable[[bytearray, int, int, list[int], int], tuple[int, int]]
try:  # the same loop in C, compiled from Cython at install time (setup.py)
    from syncbus.publisher._rows import mark_acked
except ImportError:  # no C compiler where this was installed
    mark_acked = _mark_acked


class Spool(RefusedEvents):
    """Thread-safe (one connection behind a lock); ids are assigned here, ascending."""

    def __init__(
        self,
        path: Path | str,
        sync: Literal["normal", "full"] = "full",
        department: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLocked(
                f"spool {self.path} is in use by another publisher; give each publisher "
                "its own spool path"
            ) from None
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # a batch row is megabytes: 16 KiB pages chain a quarter as many overflow pages
        # as the default 4 KiB (append 1.6 -> 0.85 us an event). Only a new file takes
        # it; an existing spool keeps the page size it was made with.
        self._db.execute("PRAGMA page_size=16384")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL for acknowledgements (lost in a power cut, their events are resent and
        # readers drop the duplicates by id); appends switch to FULL when ``sync="full"``
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._append_sync = sync.upper()
        self._db.executescript(_SCHEMA + REFUSED_SCHEMA)
        self._lock = threading.Lock()
        if department is not None:
            self._claim(department)
        self._migrate()
        self._batches: list[_Batch] = [
            _Batch(first, count, resource, at, acked,
                   None if segment is None else BlobRef(segment, offset, length, crc))
            for first, count, resource, at, acked, segment, offset, length, crc in self._db.execute(
                "SELECT b.first, b.count, b.resource, b.accepted_at, "
                "COALESCE(a.acked, b.acked), b.segment, b.offset, b.length, b.crc "
                "FROM batches b LEFT JOIN acks a USING (first) ORDER BY b.first")
        ]
        self._segments = Segments(
            Path(f"{self.path}.segments"),
            [b.blob.segment for b in self._batches if b.blob is not None],
            sync=sync == "full",
        )
        self._firsts = [b.first for b in self._batches]
        self._last_id: int = sum((b.first + b.count - 1 for b in self._batches[-1:]), 0)
        self._depth: int = sum(b.left for b in self._batches)
        self._cache: tuple[int, list[Any]] | None = None  # the last batch read back
        self.lost: list[tuple[str, int, int]] = []  # (resource, first id, events) dropped at open
        self._drop_damaged()

    def _drop_damaged(self) -> None:
        """Drop the batches whose blob did not reach the disk before a power cut: sending
        them would send damaged events. Each is logged with its ids and kept in ``lost``.
        Every unsent blob is read once for this (a backlog of a million events is about
        half a gigabyte of page cache or disk)."""
        damaged = [b for b in self._batches
                   if b.blob is not None and b.left and self._segments.damaged(b.blob)]
        if not damaged:
            return
        for batch in damaged:
            log.error(
                "spool %s: the %d unsent events of %s with ids %d..%d were lost in an unclean "
                "shutdown of the host (their data never reached the disk); they are dropped, "
                "republish them from the source system", self.path, batch.left, batch.resource,
                batch.first, batch.first + batch.count - 1)
            self.lost.append((batch.resource, batch.first, batch.left))
            self._depth -= batch.left
            batch.left = 0
        self._save(damaged)

    def _claim(self, department: str) -> None:
        """Sequences are per (source, resource): one department's spool is no other's."""
        row = self._db.execute("SELECT department FROM owner").fetchone()
        if row is None:
            self._db.execute("INSERT INTO owner VALUES (?)", (department,))
        elif row[0] != department:
            self._db.close()
            self._unlock()
            raise SpoolLocked(
                f"spool {self.path} belongs to department {row[0]!r}, not {department!r}; "
                "give each department its own spool path"
            )

    def _migrate(self) -> None:
        """Spools written before batches kept one row per event in ``events``: move what
        is left of them into batches of consecutive ids, in one transaction. Spools
        written before segments get the columns that point into them."""
        db = self._db
        columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
        for column in ("segment", "offset", "length", "crc"):
            if column not in columns:
                db.execute(f"ALTER TABLE batches ADD COLUMN {column} INTEGER")
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
            return
        runs: list[list[Any]] = []
        for row in db.execute("SELECT id, resource, key, value, meta, accepted_at FROM events "
                              "ORDER BY id"):
            last = runs[-1] if runs else None
            if last and last[0] + len(last[3]) == row[0] and last[1:3] == [row[1], row[5]]:
                for column, item in zip(last[3:], row[2:5], strict=True):
                    column.append(item)
            else:
                runs.append([row[0], row[1], row[5], [row[2]], [row[3]], [row[4]]])
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO batches (first, count, resource, accepted_at, events) "
                           "VALUES (?, ?, ?, ?, ?)", [
                (first, len(keys), resource, at, pickle.dumps((keys, values, metas)))
                for first, resource, at, keys, values, metas in runs
            ])
            db.execute("DROP TABLE events")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @property
    def depth(self) -> int:
        """Events accepted and not yet confirmed by the broker."""
        return self._depth

    @property
    def last_id(self) -> int:
        return self._last_id

    def sequences(self) -> dict[str, int]:
        """The last sequence number used per resource."""
        with self._lock:
            return dict(self._db.execute("SELECT resource, last FROM sequences").fetchall())

    def append(
        self, resource: str, rows: Sequence[Sequence[Any]], last_seq: int, now: float
    ) -> int:
        """Commit (key, value, meta, ...) rows and the resource's new last sequence in one
        transaction; returns the id of the first row (the others follow)."""
        with self._lock:
            return self._append_locked(resource, [r[0] for r in rows], [r[1] for r in rows],
                                       [r[2] for r in rows], now, last_seq)

    def _append_locked(
        self, resource: str, keys: list[bytes], values: list[bytes], metas: list[str],
        now: float, last_seq: int | None, also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> int:
        """One batch (and the last sequence, unless None; and ``also``) in one transaction."""
        events = pickle.dumps((keys, values, metas), pickle.HIGHEST_PROTOCOL)
        count = len(keys)
        first = self._last_id + 1
        inline = len(events) <= INLINE_BYTES
        blob = None if inline else self._segments.write(events)
        db = self._db
        db.execute(f"PRAGMA synchronous={self._append_sync}")  # taken at BEGIN
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO batches (first, count, resource, accepted_at, events, "
                       "segment, offset, length, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (first, count, resource, now, events if inline else b"",
                        *(blob or (None,) * 4)))
            if last_seq is not None:
                db.execute(
                    "INSERT INTO sequences VALUES (?, ?) "
                    "ON CONFLICT(resource) DO UPDATE SET last = excluded.last",
                    (resource, last_seq),
                )
            if also is not None:
                also(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            if blob is not None:
                self._segments.release(blob.segment)
            raise
        finally:
            db.execute("PRAGMA synchronous=NORMAL")
        self._batches.append(_Batch(first, count, resource, now, None, blob))
        self._firsts.append(first)
        self._last_id += count
        self._depth += count
        return first

    def _events(self, batch: _Batch) -> list[Any]:
        """The batch's (keys, values, metas), read back from the file (cached once)."""
        if self._cache is None or self._cache[0] != batch.first:
            if batch.blob is not None:
                blob = self._segments.read(batch.blob)
            else:
                blob = self._db.execute(
                    "SELECT events FROM batches WHERE first = ?", (batch.first,)).fetchone()[0]
            self._cache = (batch.first, pickle.loads(blob))
        return self._cache[1]

    def pending(self, after_id: int, limit: int) -> list[SpooledEvent]:
        """Unconfirmed events with an id above ``after_id``, in acceptance order."""
        out: list[SpooledEvent] = []
        with self._lock:
            start = max(bisect.bisect_right(self._firsts, after_id) - 1, 0)
            for batch in self._batches[start:]:
                if batch.first + batch.count - 1 <= after_id or not batch.left:
                    continue
                keys, values, metas = self._events(batch)
                for i in range(max(after_id + 1 - batch.first, 0), batch.count):
                    spool_id = batch.first + i
                    if not batch.is_acked(spool_id):
                        out.append(SpooledEvent(spool_id, batch.resource, keys[i], values[i],
                                                metas[i], batch.accepted_at))
                        if len(out) >= limit:
                            return out
        return out

    def remove(self, ids: Iterable[int]) -> int:
        """Forget confirmed events: done batches go, the others keep a bitmap of acks."""
        return sum(n for _, _, n in self.acknowledge(ids))

    def acknowledge(self, ids: Iterable[int]) -> list[tuple[float, str, int]]:
        """``remove``, telling per batch touched its (accepted_at, resource, events removed):
        what the sender needs for its metrics, so delivery reports carry only the id."""
        ids = ids if isinstance(ids, list) else list(ids)
        with self._lock:
            return self._take_off(ids)

    def _take_off(
        self, ids: list[int], also: Callable[[sqlite3.Connection], None] | None = None
    ) -> list[tuple[float, str, int]]:
        """Mark ``ids`` sent and save that (with ``also``) in one transaction."""
        touched: dict[int, list[Any]] = {}
        firsts, batches = self._firsts, self._batches
        i, n = 0, len(ids)
        while i < n:  # consecutive ids mostly share a batch: one call per run of them
            index = bisect.bisect_right(firsts, ids[i]) - 1
            batch = batches[index] if index >= 0 else None
            if batch is None or ids[i] >= batch.first + batch.count:
                i += 1  # acknowledged and forgotten before: nothing to do
                continue
            new, i = mark_acked(batch.acked, batch.first, batch.first + batch.count, ids, i)
            batch.left -= new
            touched.setdefault(batch.first, [batch, 0])[1] += new
        done = [(b, n) for b, n in touched.values() if n]
        if not done and also is None:
            return []
        self._save([b for b, _ in done], also)
        self._depth -= sum(n for _, n in done)
        return [(b.accepted_at, b.resource, n) for b, n in done]

    def _unsent(self, ids: list[int]) -> list[SpooledEvent]:
        """The events of ``ids`` (ascending) not yet acknowledged."""
        out = []
        for spool_id in ids:
            index = bisect.bisect_right(self._firsts, spool_id) - 1
            if index < 0:
                continue
            batch = self._batches[index]
            if spool_id >= batch.first + batch.count or batch.is_acked(spool_id):
                continue
            keys, values, metas = self._events(batch)
            i = spool_id - batch.first
            out.append(SpooledEvent(spool_id, batch.resource, keys[i], values[i], metas[i],
                                    batch.accepted_at))
        return out

    def _save(self, touched: Sequence[_Batch],
              also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        done = [b for b in touched if not b.left]
        partial = [(b.first, bytes(b.acked)) for b in touched if b.left]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if done:
                firsts = [(b.first,) for b in done]
                db.executemany("DELETE FROM batches WHERE first = ?", firsts)
                db.executemany("DELETE FROM acks WHERE first = ?", firsts)
            if partial:
                db.executemany("INSERT OR REPLACE INTO acks VALUES (?, ?)", partial)
            if also is not None:
                also(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if done:
            for batch in done:
                if batch.blob is not None:
                    self._segments.release(batch.blob.segment)
            gone = {b.first for b in done}
            self._batches = [b for b in self._batches if b.first not in gone]
            self._firsts = [b.first for b in self._batches]

    def close(self) -> None:
        with self._lock:
            self._segments.close()
            self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)


def default_spool_path(department: str) -> Path:
    """``$XDG_STATE_HOME/syncbus/spool/<department>.db`` (``~/.local/state`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base, "syncbus", "spool", f"{department}.db")
