"""Sink tables and versions on SQLite (issue #17): the version rule in SQL, tombstones,
the end of a full resync, and a table from before versions migrated in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from syncbus.sink.tables import Table
from syncbus.subscriber import SqlStore

RID = "r" * 32


def meta(
    version: int | None, resync: str | None = None, partition: int = 0, at: int = 0
) -> dict[str, Any]:
    """Bookkeeping of a delivery: raw ``partition``, and ``at`` its offset on share
    partition 0."""
    return {
        "_event_id": f"e{version}",
        "_op": "SNAPSHOT" if resync else "UPDATE",
        "_source_partition": partition,
        "_share_partition": 0,
        "_offset": at,
        "_occurred_at": None,
        "_version": version,
        "_resync": resync,
    }


def table_at(tmp_path: Path) -> tuple[SqlStore, Table]:
    store = SqlStore.open(tmp_path / "sink.db")
    table = Table(store, "population.resident")
    table.ensure({"name": "text"})
    return store, table


def rows(store: SqlStore) -> dict[str, tuple[Any, ...]]:
    found = store.execute("SELECT _key, name, _version, _resync FROM population_resident")
    return {r[0]: tuple(r[1:]) for r in found.fetchall()}


def test_only_newer_versions_land(tmp_path: Path) -> None:
    store, table = table_at(tmp_path)
    assert table.upsert("k", {"name": "v20"}, meta(20))
    assert not table.upsert("k", {"name": "v15"}, meta(15, RID))  # older snapshot
    assert not table.upsert("k", {"name": "again"}, meta(20))  # equal, live
    assert table.upsert("k", {"name": "v20 resent"}, meta(20, RID))  # equal, resync
    assert rows(store) == {"k": ("v20 resent", 20, RID)}
    assert table.upsert("k", {"name": "v21"}, meta(21))
    assert rows(store) == {"k": ("v21", 21, None)}  # a live write clears the resync id
    assert table.upsert("k", {"name": "old router"}, meta(None))  # no version: as before
    assert rows(store)["k"][0] == "old router"


def test_a_delete_leaves_a_tombstone_an_older_snapshot_cannot_pass(tmp_path: Path) -> None:
    store, table = table_at(tmp_path)
    table.upsert("k", {"name": "v30"}, meta(30))
    assert table.delete("k", 29) == 0  # older than the row: the row stays
    assert rows(store) == {"k": ("v30", 30, None)}
    assert table.delete("k", 31, None, 2) == 1
    assert not table.upsert("k", {"name": "v30"}, meta(30, RID))
    assert not table.upsert("k", {"name": "v31"}, meta(31))  # equal, live
    assert rows(store) == {}
    tomb = store.execute("SELECT table_name, key, version, source_partition "
                         "FROM syncbus_sink_tombstones").fetchall()
    assert tomb == [("population_resident", "k", 31, 2)]
    # a grant approved again resends the same version: it lands
    assert table.upsert("k", {"name": "back"}, meta(31, RID))
    assert rows(store) == {"k": ("back", 31, RID)}
    assert table.delete("gone", 5, RID) == 0  # a retraction of an absent key: tombstone only
    assert not table.upsert("gone", {"name": "x"}, meta(4, RID))


def test_the_end_of_a_full_resync_drops_what_it_did_not_send(tmp_path: Path) -> None:
    store, table = table_at(tmp_path)
    table.upsert("resent", {"name": "a"}, meta(5, RID, partition=0))
    table.upsert("unsent", {"name": "b"}, meta(6, partition=0))
    table.upsert("live after", {"name": "c"}, meta(40, partition=0))  # >= watermark 40
    table.upsert("other partition", {"name": "d"}, meta(3, partition=1))
    table.upsert("partition not named", {"name": "e"}, meta(3, partition=7))
    table.upsert("no version", {"name": "f"}, meta(None, partition=1))
    table.upsert("older resync", {"name": "g"}, meta(9, "o" * 32, partition=1))
    assert table.drop_unsent(RID, {0: 40, 1: 10}) == 4
    assert set(rows(store)) == {"resent", "live after", "partition not named"}
    assert table.drop_unsent(RID, {}) == 0


def test_a_later_resync_that_rewrote_a_row_keeps_it_at_the_end_of_an_earlier_one(
    tmp_path: Path,
) -> None:
    """Resyncs of one share may overlap: a snapshot of the same version from another
    resync, written after this one began, takes over ``_resync`` and must not make the
    row look unsent."""
    store, table = table_at(tmp_path)
    other = "o" * 32
    table.upsert("before", {"name": "a"}, meta(3, other, at=5))  # before RID's begin (10)
    table.upsert("taken over", {"name": "b"}, meta(4, RID, at=12))
    table.upsert("taken over", {"name": "b"}, meta(4, other, at=13))  # equal: applied
    table.upsert("live", {"name": "c"}, meta(6, None, at=14))  # live, below the watermark
    assert rows(store)["taken over"] == ("b", 4, other)
    assert table.drop_unsent(RID, {0: 40}, {0: 10}) == 2
    assert set(rows(store)) == {"taken over"}


def test_a_table_from_before_versions_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE population_resident (_key TEXT PRIMARY KEY, _event_id TEXT NOT NULL, "
        "_op TEXT NOT NULL, _source_partition INTEGER, _offset INTEGER, _occurred_at TEXT, "
        "name TEXT)"
    )
    old.execute("INSERT INTO population_resident VALUES ('k', 'e', 'CREATE', 0, 1, NULL, 'old')")
    old.commit()
    old.close()
    store = SqlStore.open(path)
    table = Table(store, "population.resident")
    assert table.exists()
    assert {"_version", "_resync", "_share_partition"} <= table.columns.keys()
    assert rows(store) == {"k": ("old", None, None)}
    assert table.upsert("k", {"name": "new"}, meta(1))  # an unversioned row takes any version
    assert rows(store) == {"k": ("new", 1, None)}
    assert not Table(store, "no.such").exists()
