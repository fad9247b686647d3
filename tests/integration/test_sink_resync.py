"""Issue #17 in the sink, on SQLite and on a real PostgreSQL, against the real broker:
rows take only newer versions (also on a replay, where the SDK's own check is off:
the SQL holds), a DELETE's tombstone keeps an older snapshot out, a full resync's end
drops the rows the share no longer holds and keeps those that live events wrote after
it began, and a full resync refills a database that was lost. Share messages are
produced to the wire contract by ``ShareProducer`` until the router writes them."""

from __future__ import annotations

import uuid
from typing import Any

from prometheus_client import CollectorRegistry

from syncbus.core.fake import make_records
from syncbus.sink import run_sink
from syncbus.subscriber import ResyncInfo, SqlStore
from tests.subscriber_helpers import ShareProducer

RESOURCE = "population.resident"
TABLE = "population_resident"


def rows(database: str) -> dict[str, dict[str, Any]]:
    store = SqlStore.open(database)
    try:
        cursor = store.execute(f"SELECT * FROM {TABLE}")
        names = [c[0] for c in cursor.description]
        found = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
        store.commit()
        return found
    finally:
        store.close()


def lose(database: str) -> None:
    """The city lost its database: every table of the sink and of its store is gone."""
    store = SqlStore.open(database)
    try:
        for name in (TABLE, "syncbus_sink_tombstones", "syncbus_seen", "syncbus_sequences",
                     "syncbus_versions", "syncbus_resyncs"):
            store.execute(f"DROP TABLE IF EXISTS {name}")
        store.commit()
    finally:
        store.close()


def sink(sub_id: str, database: str, kafka: Any, **kw: Any) -> int:
    kw.setdefault("registry", CollectorRegistry())
    return run_sink(sub_id, database, [RESOURCE], bootstrap=kafka.bootstrap, idle_timeout=3, **kw)


def test_rows_never_move_back(kafka: Any, database: str) -> None:
    sub_id = f"test.sv{uuid.uuid4().hex[:8]}"
    share = ShareProducer(kafka.bootstrap, sub_id, partitions=2)
    kept, deleted = make_records(RESOURCE, 2, seed=51)
    rid = uuid.uuid4().hex
    share.send([kept], version=10)
    share.send([{**kept, "name": "newer"}], op="UPDATE", version=20)
    share.send([kept], op="SNAPSHOT", version=15, resync=rid)  # older snapshot: not applied
    share.send([deleted], version=5)
    share.send([deleted], op="DELETE", version=6)
    share.send([deleted], op="SNAPSHOT", version=5, resync=rid)  # older than the delete
    assert sink(sub_id, database, kafka) == 4
    table = rows(database)
    assert set(table) == {kept["id_number"]}
    row = table[kept["id_number"]]
    assert row["name"] == "newer" and row["_version"] == 20 and row["_resync"] is None
    assert row["_source_partition"] == 0

    # a replay re-reads everything with the SDK's version check off: the SQL holds
    sink(sub_id, database, kafka, group_id=f"{sub_id}.replay", start="beginning")
    assert rows(database) == table


def test_a_full_resync_drops_what_the_share_lost_and_refills_a_lost_database(
    kafka: Any, database: str
) -> None:
    sub_id = f"test.sf{uuid.uuid4().hex[:8]}"
    share = ShareProducer(kafka.bootstrap, sub_id, partitions=2)
    a, b, c, d = make_records(RESOURCE, 4, seed=52)
    share.send([a, b], version=1, source_partition=0)
    share.send([c, d], version=2, source_partition=1)
    watermark = {0: 10, 1: 10}
    first = uuid.uuid4().hex
    share.marker(first, "begin", "full", watermark)
    share.send([{**c, "name": "live after the resync began"}], op="UPDATE", version=50,
               source_partition=1)
    share.send([a], op="SNAPSHOT", version=1, resync=first, source_partition=0)
    share.send([c], op="SNAPSHOT", version=2, resync=first, source_partition=1)  # stale
    share.send([d], op="SNAPSHOT", version=2, resync=first, source_partition=1)
    share.send([a], op="SNAPSHOT", version=1, resync=first)  # b is no longer in the share
    share.marker(first, "end", "full", watermark)
    ended: list[ResyncInfo] = []
    registry = CollectorRegistry()
    assert sink(sub_id, database, kafka, on_resync_end=ended.append, registry=registry) == 8
    table = rows(database)
    assert set(table) == {a["id_number"], c["id_number"], d["id_number"]}
    assert table[a["id_number"]]["_resync"] == first
    assert table[c["id_number"]]["_version"] == 50 and table[c["id_number"]]["_resync"] is None
    assert [i.resync for i in ended] == [first] and ended[0].complete
    labels = {"subscriber": sub_id, "resource": RESOURCE, "action": "resync_drop"}
    assert registry.get_sample_value("syncbus_sink_rows_total", labels) == 1

    # the city lost its database; `syncbus resync` resends the share at the same versions
    lose(database)
    second = uuid.uuid4().hex
    watermark = {0: 10, 1: 60}
    share.marker(second, "begin", "full", watermark)
    share.send([a], op="SNAPSHOT", version=1, resync=second, source_partition=0)
    share.send([{**c, "name": "live after the resync began"}], op="SNAPSHOT", version=50,
               resync=second, source_partition=1)
    share.send([d], op="SNAPSHOT", version=2, resync=second, source_partition=1)
    share.marker(second, "end", "full", watermark)
    ended.clear()
    assert sink(sub_id, database, kafka, on_resync_end=ended.append) == 3
    refilled = rows(database)
    assert set(refilled) == set(table)
    assert {k: r["_version"] for k, r in refilled.items()} == {
        k: r["_version"] for k, r in table.items()
    }
    assert all(r["_resync"] == second for r in refilled.values())
    assert [i.resync for i in ended] == [second]


def test_a_delta_resync_retracts_and_returns_rows(kafka: Any, database: str) -> None:
    """A grant narrowed (a resync DELETE at the key's own version, before and after
    null) removes the row; widened again (a SNAPSHOT at that same version) it returns."""
    sub_id = f"test.sd{uuid.uuid4().hex[:8]}"
    share = ShareProducer(kafka.bootstrap, sub_id, partitions=2)
    stays, leaves = make_records(RESOURCE, 2, seed=53)
    share.send([stays, leaves], version=7)
    narrowed = uuid.uuid4().hex
    share.marker(narrowed, "begin", "delta", {0: 8})
    share.send([leaves], op="DELETE", version=7, resync=narrowed)
    share.marker(narrowed, "end", "delta", {0: 8})
    assert sink(sub_id, database, kafka) == 3
    assert set(rows(database)) == {stays["id_number"]}
    widened = uuid.uuid4().hex
    share.marker(widened, "begin", "delta", {0: 8})
    share.send([leaves], op="SNAPSHOT", version=7, resync=widened)
    share.marker(widened, "end", "delta", {0: 8})
    assert sink(sub_id, database, kafka) == 1
    table = rows(database)
    assert set(table) == {stays["id_number"], leaves["id_number"]}
    assert table[leaves["id_number"]]["_resync"] == widened
