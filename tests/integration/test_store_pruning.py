"""The dedupe store's age bound on SQLite and on a real PostgreSQL: the ids older than
the age go, found from the oldest by ``seq`` (no scan of the whole id set), and a young
id never goes, even when the clock was set back."""

from __future__ import annotations

from syncbus.subscriber import SqlStore


def _aged(store: SqlStore, *names: str) -> None:
    """Make these ids two hours older."""
    store.begin()
    for name in names:
        store.execute("UPDATE syncbus_seen SET seen_at = seen_at - 7200 WHERE event_id = ?",
                      (name,))


def test_every_id_older_than_the_age_goes_even_when_all_are_old(database: str) -> None:
    store = SqlStore.open(database, max_age_seconds=3600)
    names = [f"e{n}" for n in range(5)]
    for name in names:
        store.record(name)
    _aged(store, *names)
    store.prune()
    store.commit()
    assert store.count() == 0
    store.close()


def test_an_old_id_behind_a_younger_one_waits_and_no_young_one_goes(database: str) -> None:
    """The clock was set back: ids are no longer in age order. Nothing young goes; the
    old one behind the young one goes once that one is old too."""
    store = SqlStore.open(database, max_age_seconds=3600)
    names = ["old1", "young", "old2", "new"]
    for name in names:
        store.record(name)
    _aged(store, "old1", "old2")
    store.prune()
    store.commit()
    assert store.seen(names) == {"young", "old2", "new"}
    _aged(store, "young")
    store.prune()
    store.commit()
    assert store.seen(names) == {"new"}
    store.close()
