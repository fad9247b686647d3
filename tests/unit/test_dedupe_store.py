"""The dedupe store on SQLite: ids survive reopening, writes share the batch transaction,
savepoints undo one event, and the id set stays bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncbus.subscriber import SqlStore


def test_recorded_ids_survive_reopening(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "s.db")
    store.record("a")
    store.record("b")
    store.save_sequences({("r", 0): 7})
    store.commit()
    store.close()
    again = SqlStore.open(f"sqlite:///{tmp_path / 's.db'}")
    assert again.seen(["a", "b", "c"]) == {"a", "b"}
    assert again.sequences() == {("r", 0): 7}


def test_uncommitted_ids_are_lost_with_the_transaction(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "s.db")
    store.record("a")
    store.rollback()
    assert store.seen(["a"]) == set()


def test_a_savepoint_undoes_only_the_failed_event(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "s.db")
    store.begin()
    store.execute("CREATE TABLE effects (id TEXT)")
    store.commit()
    store.execute("INSERT INTO effects VALUES (?)", ("kept",))
    with pytest.raises(RuntimeError), store.savepoint():
        store.execute("INSERT INTO effects VALUES (?)", ("undone",))
        raise RuntimeError("handler failed")
    store.commit()
    rows = store.execute("SELECT id FROM effects").fetchall()
    assert rows == [("kept",)]


def test_the_id_set_is_bounded_by_count(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "s.db", max_ids=3, prune_every=1)
    for n in range(10):
        store.record(f"e{n}")
        store.commit()
    assert store.count() == 3
    assert store.seen([f"e{n}" for n in range(10)]) == {"e7", "e8", "e9"}


def test_the_id_set_is_bounded_by_age(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "s.db", max_age_seconds=3600)
    store.record("old")
    store.execute("UPDATE syncbus_seen SET seen_at = seen_at - 7200")
    store.record("new")
    store.prune()
    store.commit()
    assert store.seen(["old", "new"]) == {"new"}


def test_unknown_database_urls_are_refused_with_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"sqlite:///path\.db"):
        SqlStore.open("mysql://db/x")
