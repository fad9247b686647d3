"""The publisher's durable spool: SQLite in WAL mode, one file per department.

An accepted event is committed here before librdkafka sees it and deleted only
when the broker has acknowledged it (a successful delivery report), so a
publisher restarted on the same file resends exactly what was not confirmed, in
the order it was accepted (row id order). The per-(source, resource) sequence
counters live in the same file and advance in the same transaction as the rows
they number, so a crash can neither lose a number nor reuse one. They live only here:
deleting the spool file restarts them at 1, which readers see as a reset.

Durability: with ``sync="normal"`` (WAL, ``synchronous=NORMAL``) a committed
batch survives the death of the process (kill -9, OOM, a crash of the host
application), because the WAL write has reached the operating system. It does
not survive a power cut or kernel crash before the next checkpoint; choose
``sync="full"`` (an fsync per commit, much slower) where that matters. The spool
is not safe for two publishers at once: ``Spool`` takes an exclusive lock file.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    meta TEXT NOT NULL,
    accepted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (
    resource TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS owner (
    department TEXT NOT NULL
);
"""


class SpooledEvent(NamedTuple):
    id: int
    resource: str
    key: bytes
    value: bytes
    meta: str
    accepted_at: float


class SpoolLocked(RuntimeError):
    """Another publisher holds this spool file, or it belongs to another department."""


class Spool:
    """Thread-safe (one connection behind a lock); ids are assigned here, ascending."""

    def __init__(
        self,
        path: Path | str,
        sync: Literal["normal", "full"] = "normal",
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
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        if department is not None:
            self._claim(department)
        row = self._db.execute("SELECT COALESCE(MAX(id), 0), COUNT(*) FROM events").fetchone()
        self._last_id: int = row[0]
        self._depth: int = row[1]

    def _claim(self, department: str) -> None:
        """Sequences are per (source, resource): one department's spool is no other's."""
        row = self._db.execute("SELECT department FROM owner").fetchone()
        if row is None:
            self._db.execute("INSERT INTO owner VALUES (?)", (department,))
        elif row[0] != department:
            self.close()
            raise SpoolLocked(
                f"spool {self.path} belongs to department {row[0]!r}, not {department!r}; "
                "give each department its own spool path"
            )

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
            first = self._last_id + 1
            params = [
                (first + i, resource, row[0], row[1], row[2], now)
                for i, row in enumerate(rows)
            ]
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", params)
                db.execute(
                    "INSERT INTO sequences VALUES (?, ?) "
                    "ON CONFLICT(resource) DO UPDATE SET last = excluded.last",
                    (resource, last_seq),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._last_id += len(rows)
            self._depth += len(rows)
            return first

    def pending(self, after_id: int, limit: int) -> list[SpooledEvent]:
        """Unconfirmed events with an id above ``after_id``, in acceptance order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, resource, key, value, meta, accepted_at FROM events "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [SpooledEvent(*row) for row in rows]

    def remove(self, ids: Iterable[int]) -> int:
        """Forget confirmed events; contiguous ids go in one range delete."""
        ranges = _ranges(sorted(ids))
        if not ranges:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cursor = db.executemany("DELETE FROM events WHERE id BETWEEN ? AND ?", ranges)
                removed = cursor.rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._depth -= removed
            return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)


def _ranges(ids: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in ids:
        if out and out[-1][1] + 1 >= i:
            out[-1] = (out[-1][0], max(out[-1][1], i))
        else:
            out.append((i, i))
    return out


def default_spool_path(department: str) -> Path:
    """``$XDG_STATE_HOME/syncbus/spool/<department>.db`` (``~/.local/state`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base, "syncbus", "spool", f"{department}.db")
