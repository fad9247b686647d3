"""View schemas: derived once per (schema, grant), stable names, router fields appended."""

from __future__ import annotations

import datetime as dt

from syncbus.core.catalog import Bus
from syncbus.core.codec import Codec, fingerprint
from syncbus.core.fake import make_record
from syncbus.core.masking import Masker
from syncbus.core.views import (
    NULL_ROUTER_TAIL,
    ViewCache,
    avro_long,
    routed_at_suffix,
    router_suffix,
    subscriber_suffix,
    view_event_schema,
)


def _grant(bus: Bus, key: str):  # type: ignore[no-untyped-def]
    return next(g for g in bus.grants if g.key == key)


def test_view_fields_follow_the_plan(bus: Bus) -> None:
    schema = bus.schemas.latest("population.resident")
    view = ViewCache().get(schema, _grant(bus, "city.suzhou/population.resident"), "id_number")
    after = next(f for f in view.event_schema["fields"] if f["name"] == "before")["type"][1]
    fields = {f["name"]: f for f in after["fields"]}
    assert "address" not in fields and "email" not in fields  # grant mask drop, default deny
    assert fields["id_number"]["type"] == ["null", "string"]
    assert fields["id_number"]["masked"] == "id_number"
    assert fields["gender"]["type"]["type"] == "enum"
    assert after["name"] == "resident" and after["namespace"] == "syncbus.population"
    assert set(view.plan.dropped_fields) == {"address", "email"}


def test_full_clearance_view_is_the_source_schema(bus: Bus) -> None:
    schema = bus.schemas.latest("population.resident")
    view = ViewCache().get(schema, _grant(bus, "province.jiangsu/population.resident"), "id_number")
    assert view.fingerprint == fingerprint(bus.schemas.event_schema("population.resident"))


def test_views_are_cached_per_schema_and_grant(bus: Bus) -> None:
    cache = ViewCache()
    schema = bus.schemas.latest("population.resident")
    a = cache.get(schema, _grant(bus, "city.nanjing/population.resident"), "id_number")
    b = cache.get(schema, _grant(bus, "city.nanjing/population.resident"), "id_number")
    c = cache.get(schema, _grant(bus, "city.suzhou/population.resident"), "id_number")
    assert a is b and a.fingerprint != c.fingerprint


def test_a_v1_reader_of_a_view_resolves_v2_data(bus: Bus) -> None:
    grant = _grant(bus, "city.nanjing/population.resident")
    cache = ViewCache()
    v1 = cache.get(bus.schemas.get("population.resident", 1), grant, "id_number")
    v2 = cache.get(bus.schemas.get("population.resident", 2), grant, "id_number")
    codec = Codec()
    fp1, fp2 = codec.register(v1.event_schema), codec.register(v2.event_schema)
    record = make_record("population.resident", region="320102", seed=3)
    event = {
        "event_id": "00000000-0000-0000-0000-000000000002",
        "source": "js-gaj",
        "resource": "population.resident",
        "op": "CREATE",
        "key": "k",
        "region": "320102",
        "sequence": 1,
        "occurred_at": 0,
        "published_at": 0,
        "before": None,
        "after": Masker(v2.plan, b"s").record(record),
    }
    decoded, writer = codec.decode(codec.encode(fp2, event), reader_fp=fp1)
    assert writer == fp2 and decoded["after"]["name"].endswith("*")


def test_router_suffix_equals_encoding_the_router_fields(bus: Bus) -> None:
    schema = view_event_schema(
        bus.schemas.latest("legal.company"),
        ViewCache()
        .get(bus.schemas.latest("legal.company"), _grant(bus, "city.nanjing/legal.company"), "uscc")
        .plan,
        "L2",
    )
    codec = Codec()
    fp = codec.register(schema)
    record = make_record("legal.company", region="320102", seed=5)
    base = {
        "event_id": "00000000-0000-0000-0000-000000000003",
        "source": "js-scjgj",
        "resource": "legal.company",
        "op": "UPDATE",
        "key": record["uscc"],
        "region": "320102",
        "sequence": 7,
        "occurred_at": 1,
        "published_at": 2,
        "before": None,
        "after": {k: v for k, v in record.items() if k != "legal_rep_id"}
        | {"legal_rep_id": "320102********0000"},
    }
    blank = codec.encode(fp, base)
    assert blank.endswith(NULL_ROUTER_TAIL)
    routed_at = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    micros = int(routed_at.timestamp() * 1_000_000)
    spliced = blank[: -len(NULL_ROUTER_TAIL)] + router_suffix("city.nanjing", 123456789, micros)
    full = codec.encode(
        fp,
        base | {"subscriber": "city.nanjing", "delivery_sequence": 123456789, "routed_at": micros},
    )
    assert spliced == full
    decoded, _ = codec.decode(spliced)
    assert decoded["routed_at"] == routed_at and decoded["delivery_sequence"] == 123456789


def test_router_suffix_is_its_precomputed_parts() -> None:
    for sequence in (0, 1, 63, 64, 127, 128, 2**31, 2**62):
        whole = router_suffix("district.gusu", sequence, 1_795_401_015_797_000)
        parts = (
            subscriber_suffix("district.gusu")
            + avro_long(sequence)
            + routed_at_suffix(1_795_401_015_797_000)
        )
        assert whole == parts


def test_avro_long_is_fastavros_long_at_every_length() -> None:
    import io

    from fastavro import schemaless_writer

    edges = [(1 << (7 * k)) >> 1 for k in range(1, 10)]  # first value of each byte length
    values = [0, 1, -1, 2**63 - 1, -(2**63)] + [s * (e + d) for e in edges
                                                  for d in (-1, 0, 1) for s in (1, -1)]
    for value in values:
        out = io.BytesIO()
        schemaless_writer(out, "long", value)
        assert avro_long(value) == out.getvalue(), value
