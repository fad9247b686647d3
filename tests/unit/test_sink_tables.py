"""Sink tables on SQLite: column kinds from view schemas, upsert on key, new columns for
a newer view, values converted for the column as it exists."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from syncbus.core.schemas import SchemaRepository, event_schema
from syncbus.sink.tables import Table, field_kinds, kind_of, table_name
from syncbus.subscriber import SqlStore

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("avro", "kind"),
    [
        ("string", "text"),
        (["null", "long"], "bigint"),
        ({"type": "int", "logicalType": "date"}, "date"),
        (["null", {"type": "long", "logicalType": "timestamp-micros"}], "timestamp"),
        ({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}, "numeric"),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "text"),
        ({"type": "record", "name": "R", "fields": []}, "json"),
        (["null", "string", "long"], "json"),
    ],
)
def test_column_kinds_follow_the_avro_types(avro: object, kind: str) -> None:
    assert kind_of(avro) == kind


def test_the_view_record_gives_the_columns() -> None:
    repo = SchemaRepository.from_dir(REPO / "schemas")
    kinds = field_kinds(event_schema(repo.get("population.resident", 2)))
    assert kinds["birth_date"] == "date" and kinds["email"] == "text"
    assert table_name("population.resident") == "population_resident"


def test_upsert_delete_and_a_column_added_later(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "sink.db")
    table = Table(store, "population.resident")
    table.ensure({"name": "text", "born": "date", "amount": "numeric"})
    meta = {
        "_event_id": "e1",
        "_op": "CREATE",
        "_source_partition": 0,
        "_offset": 1,
        "_occurred_at": None,
    }
    table.upsert(
        "k1", {"name": "张三", "born": dt.date(1990, 1, 2), "amount": Decimal("1.50")}, meta
    )
    table.upsert(
        "k1",
        {"name": "张三丰", "born": dt.date(1990, 1, 2), "amount": None},
        {**meta, "_event_id": "e2", "_op": "UPDATE"},
    )
    table.ensure({"name": "text", "email": "text"})
    table.upsert("k2", {"name": "李四", "email": "l@example.cn", "born": 1990}, meta)
    store.commit()
    rows = store.execute(
        "SELECT _key, name, born, amount, email, _event_id FROM population_resident ORDER BY _key"
    ).fetchall()
    assert rows == [
        ("k1", "张三丰", "1990-01-02", None, None, "e2"),
        ("k2", "李四", "1990", None, "l@example.cn", "e1"),  # a TEXT column
    ]
    assert table.delete("k1") == 1 and table.delete("missing") == 0
    store.commit()
    reopened = Table(store, "population.resident")
    reopened.ensure({"email": "text"})
    assert reopened.columns["email"] == "text" and "born" in reopened.columns
