"""A share's table in the subscriber's database: columns from the view schema.

One table per resource (``population.resident`` -> ``population_resident``), primary
key the delivered entity key, one column per top-level field of the view record
(nested records, arrays and maps as JSON), and bookkeeping columns ``_event_id``,
``_op``, ``_source_partition`` (the raw partition of the row's key), ``_offset`` (on
the share topic), ``_occurred_at``, ``_version`` (the raw offset of the change the row
holds: its version, issue #17), ``_resync`` (the id of the resync that last wrote
the row; null when a live event did) and ``_share_partition`` (the share partition
of the delivery that wrote it, with ``_offset`` its place there). Columns are added
when a newer writer schema brings a field (``ALTER TABLE ... ADD COLUMN``) and never
dropped; a row written in a view without a column has it null, so a grant that
narrows leaves nulls, never the values of the wider view. A field whose view type changed (a
birth date now masked to its year, a string) widens its column to text, which
holds both (PostgreSQL: ``ALTER COLUMN ... TYPE TEXT``; SQLite columns take any
value already). Values are converted for the column they land in, as the column
exists in the database. A table from before issue #17 gets ``_version``, ``_resync``
and ``_share_partition`` added the first time the sink opens it (null: its rows take
the next version delivered).

Versions, in SQL so that a restart or a second sink on the same database cannot
move a row back: ``upsert`` with a version writes only when the row is absent or
older (live: ``_version < v``; resync: ``_version <= v``) and no tombstone of the
key is newer (live: ``>=``; resync: ``>``); ``delete`` with a version removes an older
row and remembers the version in ``syncbus_sink_tombstones`` (table, key, version,
resync, raw partition), so an older snapshot cannot bring the key back. (One limit,
on PostgreSQL's READ COMMITTED: an insert of an absent key checks the tombstones
committed when it starts, so a snapshot written at the very moment another sink's
uncommitted DELETE of that key removes the row can pass. Members of one group own
disjoint keys; this needs two groups writing one database.)
``drop_unsent`` is the end of a full resync: rows the resync did not write whose
version is below the watermark of their raw partition, except rows that another
resync wrote after this one began (after its begin marker on their share
partition): resyncs of one share may overlap (a policy change during a requested
full resync), and a later resync's equal-version snapshot takes over ``_resync``
from this one's. Without a version (an older router) both write unconditionally,
as before.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from syncbus.core.jsonconv import to_json
from syncbus.subscriber.store import SQLITE, SqlStore

_SQLITE_TYPES = {
    "text": "TEXT",
    "bigint": "INTEGER",
    "double": "REAL",
    "boolean": "INTEGER",
    "date": "TEXT",
    "timestamp": "TEXT",
    "numeric": "TEXT",
    "bytes": "BLOB",
    "json": "TEXT",
}
_POSTGRES_TYPES = {
    "text": "TEXT",
    "bigint": "BIGINT",
    "double": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "numeric": "NUMERIC",
    "bytes": "BYTEA",
    "json": "JSONB",
}
_AVRO_KINDS = {
    "string": "text",
    "enum": "text",
    "int": "bigint",
    "long": "bigint",
    "float": "double",
    "double": "double",
    "boolean": "boolean",
    "bytes": "bytes",
    "fixed": "bytes",
    "record": "json",
    "array": "json",
    "map": "json",
}
_LOGICAL_KINDS = {
    "date": "date",
    "timestamp-micros": "timestamp",
    "timestamp-millis": "timestamp",
    "decimal": "numeric",
    "uuid": "text",
}


TOMBSTONES = "syncbus_sink_tombstones"
# the bookkeeping columns added after the first release: migrated into older tables
VERSION_COLUMNS = {"_version": "bigint", "_resync": "text", "_share_partition": "bigint"}
_BOOKKEEPING = {
    "_key": "text",
    "_event_id": "text",
    "_op": "text",
    "_source_partition": "bigint",
    "_offset": "bigint",
    "_occurred_at": "timestamp",
    **VERSION_COLUMNS,
}


def table_name(resource: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", resource.lower())


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def view_record(event_schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The domain view record inside a change-event schema (``before`` holds it)."""
    for field in event_schema["fields"]:
        if field["name"] in ("before", "after"):
            for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
                if isinstance(branch, dict) and branch.get("type") == "record":
                    return branch
    raise ValueError(f"event schema {event_schema.get('name')!r} has no before/after record")


def kind_of(avro_type: Any) -> str:
    """The column kind of an Avro field type (unions: their one non-null branch)."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        return kind_of(branches[0]) if len(branches) == 1 else "json"
    if isinstance(avro_type, dict):
        logical = _LOGICAL_KINDS.get(str(avro_type.get("logicalType")))
        return logical or _AVRO_KINDS.get(str(avro_type.get("type")), "json")
    return _AVRO_KINDS.get(str(avro_type), "text")


def field_kinds(event_schema: Mapping[str, Any]) -> dict[str, str]:
    return {f["name"]: kind_of(f["type"]) for f in view_record(event_schema)["fields"]}


class Table:
    """One resource's table; knows its columns as they are in the database."""

    def __init__(self, store: SqlStore, resource: str) -> None:
        self.store = store
        self.name = table_name(resource)
        self.types = _SQLITE_TYPES if store.dialect is SQLITE else _POSTGRES_TYPES
        self.columns: dict[str, str] = {}  # column -> kind

    def ensure(self, kinds: Mapping[str, str]) -> None:
        """Create the table, or add the columns a newer view brings."""
        if not self.columns:
            t = self.types
            self.store.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(self.name)} (_key TEXT PRIMARY KEY, "
                f"_event_id TEXT NOT NULL, _op TEXT NOT NULL, _source_partition {t['bigint']}, "
                f"_offset {t['bigint']}, _occurred_at {t['timestamp']}, "
                f"_version {t['bigint']}, _resync TEXT, _share_partition {t['bigint']})"
            )
            self.store.execute(
                f"CREATE TABLE IF NOT EXISTS {TOMBSTONES} (table_name TEXT NOT NULL, "
                f"key TEXT NOT NULL, version {t['bigint']} NOT NULL, resync TEXT, "
                f"source_partition {t['bigint']}, PRIMARY KEY (table_name, key))"
            )
            self.columns = self._existing()
            kinds = {**VERSION_COLUMNS, **kinds}  # a table from before #17: migrated
        for name, kind in kinds.items():
            have = self.columns.get(name)
            if have is None:
                self.store.execute(
                    f"ALTER TABLE {quote(self.name)} ADD COLUMN {quote(name)} {self.types[kind]}"
                )
                self.columns[name] = kind
            elif have not in (kind, "text"):
                self._widen(name)

    def _widen(self, name: str) -> None:
        """Make a column text: a newer view delivers another type for it (masking)."""
        if self.store.dialect is not SQLITE:
            self.store.execute(
                f"ALTER TABLE {quote(self.name)} ALTER COLUMN {quote(name)} TYPE TEXT "
                f"USING {quote(name)}::text"
            )
        self.columns[name] = "text"

    def _existing(self) -> dict[str, str]:
        by_type = {v: k for k, v in reversed(list(self.types.items()))}
        if self.store.dialect is SQLITE:
            rows = self.store.execute(f"PRAGMA table_info({quote(self.name)})").fetchall()
            found = {row[1]: str(row[2]).upper() for row in rows}
        else:
            rows = self.store.execute(
                "SELECT column_name, udt_name FROM information_schema.columns "
                "WHERE table_name = ? AND table_schema = current_schema()",
                (self.name,),
            ).fetchall()
            found = {row[0]: _PG_UDT.get(row[1], "TEXT") for row in rows}
        return {name: by_type.get(sqltype, "text") for name, sqltype in found.items()}

    def upsert(
        self, key: str, record: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> bool:
        """Write the row unless the version rule says it is stale (module doc); ``meta``
        holds the bookkeeping columns, ``_version`` and ``_resync`` among them (absent or
        null version: unconditional). True when the row was written."""
        # a column the record's view lacks (a field its grant no longer shows, after a
        # lowered clearance) is emptied: the row never keeps a value its view dropped
        dropped = {n: None for n in self.columns if n not in record and n not in _BOOKKEEPING}
        row = {**{n: self.value(n, v) for n, v in record.items()}, **dropped, **meta,
               "_key": key}
        names = list(row)
        cols = ", ".join(quote(n) for n in names)
        updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n != "_key")
        version = row.get("_version")
        if version is None:
            marks = ", ".join("?" for _ in names)
            cursor = self.store.execute(
                f"INSERT INTO {quote(self.name)} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT (_key) DO UPDATE SET {updates}",
                [row[n] for n in names],
            )
            return bool(cursor.rowcount)
        resync = row.get("_resync") is not None
        stale_row, stale_tomb = ("<=", ">") if resync else ("<", ">=")
        me = quote(self.name)
        cursor = self.store.execute(
            f"INSERT INTO {me} ({cols}) SELECT {', '.join(self._mark(n) for n in names)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {TOMBSTONES} WHERE table_name = ? AND key = ? "
            f"AND version {stale_tomb} ?) "
            f"ON CONFLICT (_key) DO UPDATE SET {updates} "
            f"WHERE {me}._version IS NULL OR {me}._version {stale_row} excluded._version",
            [*(row[n] for n in names), self.name, key, version],
        )
        return bool(cursor.rowcount)

    def delete(
        self,
        key: str,
        version: int | None = None,
        resync: str | None = None,
        source_partition: int | None = None,
    ) -> int:
        """Remove the row unless it is newer than ``version`` (live: newer or equal), and
        remember ``version`` as the key's tombstone; rows removed (0 or 1)."""
        me = quote(self.name)
        if version is None:
            cursor = self.store.execute(f"DELETE FROM {me} WHERE _key = ?", (key,))
            return int(cursor.rowcount or 0)
        older = "<=" if resync is not None else "<"
        cursor = self.store.execute(
            f"DELETE FROM {me} WHERE _key = ? AND (_version IS NULL OR _version {older} ?)",
            (key, version),
        )
        removed = int(cursor.rowcount or 0)
        big = "?" if self.store.dialect is SQLITE else "CAST(? AS BIGINT)"
        self.store.execute(  # no tombstone while a newer row stands
            f"INSERT INTO {TOMBSTONES} (table_name, key, version, resync, source_partition) "
            f"SELECT ?, ?, {big}, ?, {big} WHERE NOT EXISTS (SELECT 1 FROM {me} WHERE _key = ?) "
            f"ON CONFLICT (table_name, key) DO UPDATE SET version = excluded.version, "
            "resync = excluded.resync, source_partition = excluded.source_partition "
            f"WHERE {TOMBSTONES}.version < excluded.version",
            (self.name, key, version, resync, source_partition, key),
        )
        return removed

    def drop_unsent(
        self, resync: str, watermark: Mapping[int, int], begun: Mapping[int, int] | None = None
    ) -> int:
        """The end of a full resync: remove each row this resync did not write whose
        version is below the watermark of its raw partition (rows at or above it came
        from live events after the resync began; rows without a version predate
        versions), unless another resync wrote it after this one's begin marker on its
        share partition (``begun``: share partition -> begin marker offset). Rows of a
        raw partition the watermark does not name stay. Rows removed."""
        if not watermark:
            return 0
        params: list[Any] = [resync, *watermark, *_pairs(watermark)]
        sql = (
            f"DELETE FROM {quote(self.name)} WHERE (_resync IS NULL OR _resync <> ?) "
            f"AND _source_partition IN ({_marks(watermark)}) AND (_version IS NULL OR "
            f"_version < CASE _source_partition {_cases(watermark)} END)"
        )
        if begun:
            sql += (
                f" AND NOT COALESCE(_resync IS NOT NULL AND _share_partition IN "
                f"({_marks(begun)}) AND _offset > CASE _share_partition {_cases(begun)} END, "
                "FALSE)"
            )
            params += [*begun, *_pairs(begun)]
        return int(self.store.execute(sql, params).rowcount or 0)

    def exists(self) -> bool:
        """Whether the table is in the database (its columns are then known, and one from
        before #17 is migrated)."""
        if not self.columns and self._existing():
            self.ensure({})
        return bool(self.columns)

    def _mark(self, column: str) -> str:
        """A placeholder typed for its column: PostgreSQL resolves an untyped parameter
        of ``INSERT ... SELECT`` to text, which a DATE or BIGINT column refuses."""
        if self.store.dialect is SQLITE:
            return "?"
        kind = self.columns.get(column) or _BOOKKEEPING.get(column, "text")
        return f"CAST(? AS {self.types[kind]})"

    def value(self, column: str, value: Any) -> Any:
        """``value`` as the database takes it for this column as it exists."""
        if value is None:
            return None
        kind = self.columns.get(column, "text")
        sqlite = self.store.dialect is SQLITE
        if kind == "json":
            text = json.dumps(to_json(value), ensure_ascii=False)
            return text if sqlite else _jsonb(text)
        if kind == "text" and not isinstance(value, str):
            return (
                json.dumps(to_json(value), ensure_ascii=False)
                if isinstance(value, dict | list)
                else str(to_json(value))
            )
        if sqlite and isinstance(value, dt.date | Decimal):
            return to_json(value)
        return value


_PG_UDT = {
    "text": "TEXT",
    "varchar": "TEXT",
    "int8": "BIGINT",
    "int4": "BIGINT",
    "float8": "DOUBLE PRECISION",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamptz": "TIMESTAMPTZ",
    "numeric": "NUMERIC",
    "bytea": "BYTEA",
    "jsonb": "JSONB",
}


def _marks(offsets: Mapping[int, int]) -> str:
    return ", ".join("?" for _ in offsets)


def _cases(offsets: Mapping[int, int]) -> str:
    return " ".join("WHEN ? THEN ?" for _ in offsets)


def _pairs(offsets: Mapping[int, int]) -> list[int]:
    return [n for pair in offsets.items() for n in pair]


def _jsonb(text: str) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(json.loads(text))
