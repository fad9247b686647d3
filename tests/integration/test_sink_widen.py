"""A field whose view type changes under a new grant widens its sink column to text.

A grant re-approved at a lower clearance turns ``birth_date`` from a date into its
masked year, a string. The sink's column must take both the rows it holds and the
new values, on SQLite and on a real PostgreSQL (where a DATE column refused "2004").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from syncbus.sink.tables import Table
from syncbus.subscriber import SqlStore

META = {"_event_id": "e", "_op": "UPSERT", "_source_partition": 0, "_offset": 0,
        "_occurred_at": None}


def test_a_date_masked_to_its_year_widens_the_column(database: Any) -> None:
    store = SqlStore.open(database)
    table = Table(store, "population.resident")
    table.ensure({"name": "text", "birth_date": "date"})
    table.upsert("k1", {"name": "张三", "birth_date": dt.date(1990, 1, 2)}, META)
    store.commit()

    table.ensure({"name": "text", "birth_date": "text"})  # the view of the new grant
    table.upsert("k2", {"name": "李*", "birth_date": "2004"}, META)
    store.commit()

    rows = store.execute(
        "SELECT _key, birth_date FROM population_resident ORDER BY _key"
    ).fetchall()
    assert [(k, str(v)) for k, v in rows] == [("k1", "1990-01-02"), ("k2", "2004")]
    assert table.columns["birth_date"] == "text"
    reopened = Table(store, "population.resident")
    reopened.ensure({"birth_date": "date"})  # a wider grant again: text holds dates too
    reopened.upsert("k3", {"name": "王五", "birth_date": dt.date(2001, 5, 6)}, META)
    store.commit()
    found = store.execute("SELECT birth_date FROM population_resident WHERE _key = 'k3'")
    assert str(found.fetchone()[0]) == "2001-05-06"
