"""The sink on SQLite and on a real PostgreSQL: upsert on key, delete on DELETE, new
columns for a newer view, nothing applied twice across runs."""

from __future__ import annotations

import uuid
from typing import Any

from prometheus_client import CollectorRegistry

from syncbus.core.fake import make_records
from syncbus.sink import run_sink
from syncbus.subscriber import SqlStore
from tests.subscriber_helpers import ShareProducer

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


def test_the_table_follows_creates_updates_and_deletes(kafka: Any, database: str) -> None:
    sub_id = f"test.sink{uuid.uuid4().hex[:8]}"
    share = ShareProducer(kafka.bootstrap, sub_id, version=1, clearance="L2", partitions=2)
    records = make_records("population.resident", 8, seed=21)
    share.send(records)
    moved = {**records[0], "region": "320102"}
    share.send([moved], op="UPDATE")
    share.send(records[1:3], op="DELETE")
    registry = CollectorRegistry()
    applied = run_sink(
        sub_id,
        database,
        ["population.resident"],
        bootstrap=kafka.bootstrap,
        idle_timeout=3,
        registry=registry,
    )
    assert applied == 11
    table = rows(database)
    keys = {r["id_number"] for r in records}
    assert set(table) == keys - {records[1]["id_number"], records[2]["id_number"]}
    row = table[records[0]["id_number"]]
    assert row["region"] == "320102" and row["_op"] == "UPDATE"
    assert row["gender"] == records[0]["gender"]
    assert str(row["registered_on"]) == records[0]["registered_on"].isoformat()
    assert row["name"] != records[0]["name"]  # masked for an L2 grant, as delivered
    assert "email" not in row
    labels = {"subscriber": sub_id, "resource": "population.resident"}
    assert registry.get_sample_value("syncbus_sink_rows_total", {**labels, "action": "delete"}) == 2

    # a newer view brings a column; a rerun applies only what is new
    v2 = ShareProducer(kafka.bootstrap, sub_id, version=2, clearance="L4", partitions=2)
    v2.send([{**records[3], "email": "a@example.cn"}], op="UPDATE")
    assert (
        run_sink(
            sub_id, database, ["population.resident"], bootstrap=kafka.bootstrap, idle_timeout=3
        )
        == 1
    )
    table = rows(database)
    assert table[records[3]["id_number"]]["email"] == "a@example.cn"
    assert table[records[3]["id_number"]]["name"] == records[3]["name"]
    assert table[records[4]["id_number"]]["email"] is None


def test_a_new_consumer_group_on_the_same_database_applies_nothing_twice(
    kafka: Any, database: str
) -> None:
    sub_id = f"test.sink{uuid.uuid4().hex[:8]}"
    share = ShareProducer(kafka.bootstrap, sub_id)
    share.send(make_records("population.resident", 4, seed=22))
    assert (
        run_sink(
            sub_id, database, ["population.resident"], bootstrap=kafka.bootstrap, idle_timeout=3
        )
        == 4
    )
    assert (
        run_sink(
            sub_id,
            database,
            ["population.resident"],
            bootstrap=kafka.bootstrap,
            group_id=f"{sub_id}.again",
            idle_timeout=3,
        )
        == 0
    )
    assert len(rows(database)) == 4
