"""The subscriber's memory: event ids already handled, the last delivery sequences,
the version held per key and what it has seen of each resync.

It lives in a SQL database, SQLite by default (WAL) or PostgreSQL, and is written
inside the same transaction as whatever the handler writes through ``connection``:
a sink's upsert, a test's "seen" row. That is what makes a handler's effect
exactly-once across ``kill -9``: the effect and the record that it happened commit
together, before the Kafka offset does, and a redelivered event whose id is in the
store is skipped. The id set is bounded (count and age) so it never grows without
end; an event redelivered after it was pruned is handled again.

Durability: a ``commit()`` is on disk when it returns (PostgreSQL's own
``fsync``; on SQLite the WAL is fsynced, as ``synchronous=FULL`` does), because the
Kafka offsets committed next say "applied": a sink row lost in a power cut after
that is never delivered again. ``commit(durable=False)`` is for commits that a
durable one follows before any offset (the subscriber's per-event commits): a power
cut loses at most those, and their events come again.

Versions (issue #17): ``syncbus_versions`` holds, per (resource, key), the highest
version (raw offset) handled, and whether it was a DELETE (a tombstone: an older
snapshot arriving later must not bring the key back). It is written in the same
transaction as the handler's effect, never moves back, and is not pruned: pruning a
tombstone would let an older snapshot resurrect its key. It holds one row per key the
subscriber ever held. ``syncbus_resyncs`` holds one row per resync seen (id, resource,
kind, watermark, which share partitions' end markers were recorded, complete or
not); on PostgreSQL a marker locks its resync's row, so members of a group sharing
the database record their ends one at a time and exactly one completes it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncbus.core.problems import redact_url
from syncbus.subscriber.event import Marker
from syncbus.subscriber.gaps import ResyncInfo, Stream

DAY = 86_400.0


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL databases the store and the sink write to."""

    name: str
    param: str
    serial_pk: str
    real: str
    bigint: str


SQLITE = Dialect("sqlite", "?", "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "INTEGER")
POSTGRES = Dialect(
    "postgresql",
    "%s",
    "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "DOUBLE PRECISION",
    "BIGINT",
)


class StoreUnavailable(RuntimeError):
    """The database cannot be opened; the message shows its URL without the password."""


def connect(url: str | Path) -> tuple[Any, Dialect]:
    """A DB-API connection and its dialect: ``postgresql://...``, ``sqlite:///path`` or a path."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            return psycopg.connect(text, autocommit=False), POSTGRES
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to {redact_url(text)}: "
                                   f"{redact_url(str(exc))}") from None
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        raise ValueError(
            f"unsupported database URL {redact_url(text)!r}: use sqlite:///path.db, a path, "
            "or postgresql://user@host:port/db"
        )
    try:
        if text != ":memory:":
            Path(text).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(text, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailable(f"cannot open the SQLite database {text}: {exc}") from None
    # a WAL commit survives kill -9 of the process; ``SqlStore.commit`` fsyncs the WAL
    # for a power cut, only where an offset commit follows
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn, SQLITE


class SqlStore:
    """Dedupe ids and gap-checker state in one database, inside the caller's transactions."""

    def __init__(
        self,
        connection: Any,
        dialect: Dialect,
        *,
        max_ids: int = 1_000_000,
        max_age_seconds: float = 7 * DAY,
        prune_every: int = 10_000,
    ) -> None:
        if max_ids < 1 or max_age_seconds <= 0:
            raise ValueError("the dedupe store needs max_ids >= 1 and max_age_seconds > 0")
        self.connection = connection
        self.dialect = dialect
        self.max_ids = max_ids
        self.max_age_seconds = max_age_seconds
        self._prune_every = prune_every
        self._since_prune = 0
        self._in_txn = False
        self._unsynced = False  # a SQLite commit not yet fsynced
        self._wal_named = False  # the WAL's directory entry was fsynced
        self._create()

    @classmethod
    def open(cls, url: str | Path, **limits: Any) -> SqlStore:
        connection, dialect = connect(url)
        return cls(connection, dialect, **limits)

    def _create(self) -> None:
        d = self.dialect
        self.begin()
        self.execute(
            f"CREATE TABLE IF NOT EXISTS syncbus_seen (seq {d.serial_pk}, "
            f"event_id TEXT NOT NULL UNIQUE, seen_at {d.real} NOT NULL, outcome TEXT NOT NULL)"
        )
        self.execute(
            "CREATE TABLE IF NOT EXISTS syncbus_sequences (resource TEXT NOT NULL, "
            f"source_partition INTEGER NOT NULL, last_sequence {d.bigint} NOT NULL, "
            "PRIMARY KEY (resource, source_partition))"
        )
        self.execute(
            "CREATE TABLE IF NOT EXISTS syncbus_versions (resource TEXT NOT NULL, "
            f"key TEXT NOT NULL, version {d.bigint} NOT NULL, deleted INTEGER NOT NULL, "
            "PRIMARY KEY (resource, key))"
        )
        self.execute(
            "CREATE TABLE IF NOT EXISTS syncbus_resyncs (resync TEXT PRIMARY KEY, "
            "resource TEXT NOT NULL, topic TEXT NOT NULL, kind TEXT NOT NULL, "
            "watermark TEXT NOT NULL, partitions INTEGER NOT NULL, ended TEXT NOT NULL, "
            f"complete INTEGER NOT NULL, begun TEXT NOT NULL, updated_at {d.real} NOT NULL)"
        )
        self.commit()

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """Run one statement in the current transaction (``?`` placeholders become the
        dialect's)."""
        if self.dialect.param != "?":
            sql = sql.replace("?", self.dialect.param)
        cursor = self.connection.cursor()
        cursor.execute(sql, tuple(params))
        return cursor

    def begin(self) -> None:
        if not self._in_txn:
            if self.dialect is SQLITE:
                self.connection.execute("BEGIN")
            self._in_txn = True

    def commit(self, durable: bool = True) -> None:
        """Commit the transaction; ``durable``: on disk when this returns (module doc)."""
        if self._in_txn:
            if self._since_prune >= self._prune_every:
                self.prune()
            if self.dialect is SQLITE:
                self.connection.execute("COMMIT")
                self._unsynced = True
            else:
                self.connection.commit()
            self._in_txn = False
        if durable and self._unsynced:
            self._sync_wal()

    def _sync_wal(self) -> None:
        """fsync SQLite's WAL: every commit written to it so far is then on disk (what
        ``synchronous=FULL`` does at each commit, here once per durable commit)."""
        self._unsynced = False
        row = self.connection.execute("PRAGMA database_list").fetchone()
        if not row or not row[2]:
            return  # an in-memory database
        path = Path(row[2])
        for target in (Path(f"{path}-wal"), path.parent):
            if self._wal_named and target == path.parent:
                continue  # the WAL file's name is on disk already
            try:
                fd = os.open(target, os.O_RDONLY)
            except FileNotFoundError:
                continue  # checkpointed and removed: the database file holds it all
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._wal_named = True

    def rollback(self) -> None:
        if self._in_txn:
            if self.dialect is SQLITE:
                self.connection.execute("ROLLBACK")
            else:
                self.connection.rollback()
            self._in_txn = False

    @contextmanager
    def savepoint(self, name: str = "syncbus_event") -> Iterator[None]:
        """Undo only this block's writes if it raises; the batch transaction goes on."""
        self.begin()
        self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.execute(f"RELEASE SAVEPOINT {name}")

    def seen(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these ids were already handled (one query per batch)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return set()
        self.begin()
        if self.dialect is SQLITE:
            marks = ",".join("?" * len(ids))
            rows = self.execute(
                f"SELECT event_id FROM syncbus_seen WHERE event_id IN ({marks})", ids
            )
        else:
            rows = self.execute("SELECT event_id FROM syncbus_seen WHERE event_id = ANY(?)", [ids])
        return {row[0] for row in rows.fetchall()}

    def record(self, event_id: str, outcome: str = "handled") -> None:
        """Remember an event in the current transaction; it counts once committed."""
        self.begin()
        self.execute(
            "INSERT INTO syncbus_seen (event_id, seen_at, outcome) VALUES (?, ?, ?) "
            "ON CONFLICT (event_id) DO NOTHING",
            (event_id, time.time(), outcome),
        )
        self._since_prune += 1

    def sequences(self) -> dict[Stream, int]:
        self.begin()
        rows = self.execute(
            "SELECT resource, source_partition, last_sequence FROM syncbus_sequences"
        )
        found = {(str(r), int(p)): int(s) for r, p, s in rows.fetchall()}
        self.commit()
        return found

    def save_sequences(self, changes: Mapping[Stream, int]) -> None:
        for (resource, partition), last in changes.items():
            self.execute(
                "INSERT INTO syncbus_sequences (resource, source_partition, last_sequence) "
                "VALUES (?, ?, ?) ON CONFLICT (resource, source_partition) "
                "DO UPDATE SET last_sequence = excluded.last_sequence",
                (resource, partition, last),
            )

    def versions(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The version held for each of these (resource, key) pairs that has one (one
        query per resource and batch)."""
        by_resource: dict[str, list[str]] = {}
        for resource, key in dict.fromkeys(keys):
            by_resource.setdefault(resource, []).append(key)
        found: dict[tuple[str, str], int] = {}
        self.begin()
        for resource, names in by_resource.items():
            if self.dialect is SQLITE:
                marks = ",".join("?" * len(names))
                rows = self.execute(
                    "SELECT key, version FROM syncbus_versions WHERE resource = ? "
                    f"AND key IN ({marks})",
                    [resource, *names],
                )
            else:
                rows = self.execute(
                    "SELECT key, version FROM syncbus_versions WHERE resource = ? "
                    "AND key = ANY(?)",
                    [resource, names],
                )
            found.update({(resource, str(k)): int(v) for k, v in rows.fetchall()})
        return found

    def hold_version(self, resource: str, key: str, version: int, deleted: bool) -> None:
        """Remember ``version`` as the key's, in the current transaction, unless a higher
        one is held (a replay re-handles older versions; the held one never moves back)."""
        self.begin()
        self.execute(
            "INSERT INTO syncbus_versions (resource, key, version, deleted) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (resource, key) DO UPDATE SET version = excluded.version, "
            "deleted = excluded.deleted WHERE syncbus_versions.version <= excluded.version",
            (resource, key, version, int(deleted)),
        )

    def held_version(self, resource: str, key: str) -> tuple[int, bool] | None:
        """(version, deleted) held for a key, or None: for applications and tests."""
        self.begin()
        row = self.execute(
            "SELECT version, deleted FROM syncbus_versions WHERE resource = ? AND key = ?",
            (resource, key),
        ).fetchone()
        return None if row is None else (int(row[0]), bool(row[1]))

    def claim_resync(self, marker: Marker, partitions: int) -> ResyncInfo | None:
        """The stored state of ``marker``'s resync, locked until the transaction ends
        (PostgreSQL); None when this marker is the first of it the store sees, in which
        case a row is claimed for it, so that concurrent members sharing the store
        announce its begin once."""
        self.begin()
        created = self.execute(
            "INSERT INTO syncbus_resyncs (resync, resource, topic, kind, watermark, "
            "partitions, ended, complete, begun, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, '[]', 0, '{}', ?) "
            "ON CONFLICT (resync) DO NOTHING",
            (marker.resync, marker.resource, marker.topic, marker.kind,
             _offsets_json(marker.watermark), partitions, time.time()),
        ).rowcount
        lock = "" if self.dialect is SQLITE else " FOR UPDATE"
        row = self.execute(
            "SELECT resync, resource, topic, kind, watermark, partitions, ended, complete, begun "
            f"FROM syncbus_resyncs WHERE resync = ?{lock}",
            (marker.resync,),
        ).fetchone()
        if created == 1 or row is None:
            return None
        return _resync_info(row)

    def save_resync(self, info: ResyncInfo) -> None:
        """Store a resync's state (after ``claim_resync``), in the current transaction."""
        self.execute(
            "UPDATE syncbus_resyncs SET watermark = ?, partitions = ?, ended = ?, "
            "complete = ?, begun = ?, updated_at = ? WHERE resync = ?",
            (_offsets_json(info.watermark), info.partitions, json.dumps(sorted(info.ended)),
             int(info.complete), _offsets_json(info.begun), time.time(), info.resync),
        )

    def resync(self, resync_id: str) -> ResyncInfo | None:
        """What the store holds of a resync (for applications and tests)."""
        self.begin()
        row = self.execute(
            "SELECT resync, resource, topic, kind, watermark, partitions, ended, complete, begun "
            "FROM syncbus_resyncs WHERE resync = ?",
            (resync_id,),
        ).fetchone()
        return None if row is None else _resync_info(row)

    def prune(self) -> None:
        """Keep at most ``max_ids`` ids, none older than ``max_age_seconds``.

        Ids are recorded in ``seq`` order, so the old ones are the first: those before
        the first young one are deleted, found by walking ``seq`` from the oldest. A
        ``seen_at`` condition over the whole table (it has no index on it) read every
        row: 55 ms at 1,000,000 ids on an idle machine, every ``prune_every`` events, a
        stall of the subscriber's loop. A young id is never deleted; after the clock
        was set back, an old id behind a younger one waits for the next prunes."""
        self.execute(
            "DELETE FROM syncbus_seen WHERE seq <= (SELECT MAX(seq) FROM syncbus_seen) - ?",
            (self.max_ids,),
        )
        self.execute(
            "DELETE FROM syncbus_seen WHERE seq < COALESCE("
            "(SELECT seq FROM syncbus_seen WHERE seen_at >= ? ORDER BY seq LIMIT 1), "
            "(SELECT MAX(seq) + 1 FROM syncbus_seen))",
            (time.time() - self.max_age_seconds,),
        )
        self._since_prune = 0

    def count(self) -> int:
        self.begin()
        (n,) = self.execute("SELECT COUNT(*) FROM syncbus_seen").fetchone()
        self.commit()
        return int(n)

    def close(self) -> None:
        self.rollback()
        self.connection.close()


def _offsets_json(watermark: Mapping[int, int]) -> str:
    return json.dumps({str(p): o for p, o in sorted(watermark.items())})


def _resync_info(row: Any) -> ResyncInfo:
    resync, resource, topic, kind, watermark, partitions, ended, complete, begun = row
    return ResyncInfo(
        str(resync),
        str(resource),
        str(topic),
        str(kind),
        {int(p): int(o) for p, o in json.loads(watermark).items()},
        int(partitions),
        frozenset(int(p) for p in json.loads(ended)),
        bool(complete),
        {int(p): int(o) for p, o in json.loads(begun).items()},
    )
