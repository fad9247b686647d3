"""A change is checked, keyed and encoded once, exactly as the wire contract says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from syncbus.core import topics as t
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.model import Bus
from syncbus.core.validation import to_json
from syncbus.publisher import ChangeRejected, NotPermitted, UnknownResource
from syncbus.publisher.changes import (
    Change,
    ResourceWriter,
    make_headers,
    new_event_ids,
    to_micros,
)


@pytest.fixture(scope="module")
def resident() -> dict[str, Any]:
    return make_record("population.resident", region="320508", seed=4)


@pytest.fixture
def writer(bus: Bus) -> ResourceWriter:
    return ResourceWriter(bus, "js-gaj", "population.resident")


def paths(exc: pytest.ExceptionInfo[ChangeRejected]) -> list[str]:
    return [e.path for e in exc.value.errors]


def test_only_the_owner_may_publish_a_catalogued_resource(bus: Bus) -> None:
    with pytest.raises(NotPermitted, match="owner is 'js-gaj'"):
        ResourceWriter(bus, "js-scjgj", "population.resident")
    with pytest.raises(UnknownResource, match=r"unknown resource 'x\.y'"):
        ResourceWriter(bus, "js-gaj", "x.y")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (Change("CREATE"), ["after"]),
        (Change("DELETE"), ["before"]),
        (Change("UPDATE", after={}), ["before", "after.id_number"]),
        (Change("HEARTBEAT"), ["op"]),
        (Change("create"), ["op"]),
    ],
)
def test_op_rules_name_the_missing_side(
    writer: ResourceWriter, change: Change, expected: list[str]
) -> None:
    with pytest.raises(ChangeRejected) as exc:
        writer.check(change)
    assert paths(exc)[: len(expected)] == expected


def test_field_errors_name_the_field_and_the_reason(
    writer: ResourceWriter, resident: dict[str, Any]
) -> None:
    wrong = resident["id_number"][:17] + ("1" if resident["id_number"][17] != "1" else "2")
    with pytest.raises(ChangeRejected) as exc:
        writer.check(Change("CREATE", after={**resident, "id_number": wrong, "region": "999999",
                                             "nickname": "x"}), index=7)
    reasons = {e.path: e.reason for e in exc.value.errors}
    assert "check digit" in reasons["after.id_number"]
    assert "region code" in reasons["after.region"]
    assert reasons["after.nickname"] == "unknown field"
    assert exc.value.index == 7


def test_key_and_regions_come_from_the_catalog_fields(
    writer: ResourceWriter, resident: dict[str, Any]
) -> None:
    moved = {**resident, "region": "320102"}
    assert writer.check(Change("CREATE", after=resident)) == (
        resident["id_number"], "320508", "")
    assert writer.check(Change("UPDATE", before=resident, after=moved)) == (
        resident["id_number"], "320102", "320508")
    assert writer.check(Change("DELETE", before=resident))[1:] == ("320508", "")
    other = make_record("population.resident", region="320508", seed=5)
    with pytest.raises(ChangeRejected, match="a key change is a DELETE and a CREATE"):
        writer.check(Change("UPDATE", before=resident, after=other))


def test_encoded_event_decodes_with_the_core_codec_and_headers_survive_the_spool(
    bus: Bus, writer: ResourceWriter, resident: dict[str, Any]
) -> None:
    change = Change("CREATE", after=resident, occurred_at=dt.datetime(2025, 1, 2, 3, 4, 5))
    key, region, old = writer.check(change)
    k, value, meta, headers = writer.encode(
        change, key, region, old, 42, "00000000-0000-4000-8000-000000000001", 1_800_000_000_000_000
    )
    codec = Codec([bus.schemas.event_schema("population.resident")])
    event, fp = codec.decode(value)
    assert k == resident["id_number"].encode() and fp == writer.fingerprint
    assert event["after"] == {**resident, "email": None} and event["before"] is None
    assert (event["sequence"], event["source"], event["region"]) == (42, "js-gaj", "320508")
    assert event["occurred_at"] == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    as_dict = dict(headers)
    assert as_dict[t.H_FINGERPRINT] == fp.hex() and len(fp.hex()) == 16
    assert as_dict[t.H_SEQUENCE] == "42" and t.H_OLD_REGION not in as_dict
    assert make_headers("js-gaj", "population.resident", value, meta) == headers


def test_json_lines_are_converted_strictly(
    writer: ResourceWriter, resident: dict[str, Any]
) -> None:
    change = writer.from_json({"op": "CREATE", "after": to_json(resident),
                               "occurred_at": "2025-01-02T03:04:05+08:00"})
    assert change.after == {**resident, "email": None}
    assert change.occurred_at == to_micros(dt.datetime(2025, 1, 1, 19, 4, 5), 0)
    with pytest.raises(ChangeRejected) as exc:
        writer.from_json({"after": {**to_json(resident), "birth_date": "1990-13-01"}, "x": 1})
    assert set(paths(exc)) == {"after.birth_date", "x", "op"}


def test_event_ids_are_distinct_canonical_version_4_uuids() -> None:
    import uuid

    from syncbus.publisher.changes import new_event_ids

    ids = new_event_ids(2000) + new_event_ids(2000)
    assert len(set(ids)) == 4000  # within a batch and across batches
    for event_id in ids:
        parsed = uuid.UUID(event_id)
        assert (str(parsed), parsed.version, parsed.variant) == (event_id, 4, uuid.RFC_4122)


def _mixed_batch(resident: dict[str, Any]) -> list[Change]:
    """New states (the C loop's case) among everything it leaves to Python."""
    others = [make_record("population.resident", region="320102", seed=s) for s in range(6)]
    moved = {**resident, "region": "320102"}
    bad_id = {**others[1], "id_number": others[1]["id_number"][:-1] + "0"}
    if bad_id == others[1]:
        bad_id["id_number"] = others[1]["id_number"][:-1] + "1"
    return [
        Change("SNAPSHOT", after=others[0]),
        Change("CREATE", after=bad_id),  # wrong check digit: rejected
        Change("CREATE", after=others[2], occurred_at=1_700_000_000_000_000),
        Change("UPDATE", before=resident, after=moved),  # Python: old region
        Change("DELETE", before=others[3]),
        Change("CREATE", after={**others[4], "unexpected": 1}),  # unknown field: rejected
        Change("CREATE", after=others[4], occurred_at=dt.datetime(2025, 1, 2, 3, 4, 5)),
        Change("CREATE", after=others[5], before=others[5]),  # before on a CREATE: rejected
        Change("CREATE", after={**others[5], "email": None}),
        Change("SNAPSHOT", after=others[3]),
    ]


def test_the_c_loop_and_the_python_path_prepare_the_same_rows(
    bus: Bus, resident: dict[str, Any]
) -> None:
    fast = ResourceWriter(bus, "js-gaj", "population.resident")
    slow = ResourceWriter(bus, "js-gaj", "population.resident", native=False)
    assert fast.native, "syncbus.publisher._rows is not built: run `make venv` (needs gcc)"
    assert not slow.native
    batch = _mixed_batch(resident)
    ids = new_event_ids(len(batch))
    prepared = []
    for writer in (fast, slow):
        errors: list[ChangeRejected] = []
        rows, accepted = writer.prepare(batch, 7, ids, 1_800_000_000_000_000, errors.append)
        prepared.append((rows, accepted, [e.index for e in errors]))
    assert prepared[0] == prepared[1]
    rows, accepted, rejected = prepared[0]
    assert fast.prepare(tuple(batch), 7, tuple(ids), 1_800_000_000_000_000,
                        lambda exc: None) == (rows, accepted)  # any sequences will do
    assert rejected == [1, 5, 7] and accepted == ids[:7] and len(rows) == 7
    codec = Codec([bus.schemas.event_schema("population.resident")])
    sequences = [codec.decode(value)[0]["sequence"] for _, value, _, _ in rows]
    assert sequences == list(range(7, 14))  # gap-free over the rejected ones
    for _, value, meta, headers in rows:
        assert make_headers("js-gaj", "population.resident", value, meta) == headers
    for writer in (fast, slow):  # without on_reject: the first bad change, by its index
        with pytest.raises(ChangeRejected) as exc:
            writer.prepare(batch, 1, ids, 1_800_000_000_000_000)
        assert exc.value.index == 1 and paths(exc) == ["after.id_number"]


def test_event_ids_are_numbered_alike_in_c_and_python() -> None:
    from syncbus.publisher import _rows, changes

    assert changes.numbered is _rows.numbered, "_rows is not built: run `make venv`"
    prefix = new_event_ids(1)[0][:25]
    for n in (0, 1, 17, 70_000):  # past 0xffff: every digit position moves
        assert _rows.numbered(prefix, n) == changes._numbered(prefix, n)
    with pytest.raises(ValueError, match="ASCII"):
        _rows.numbered("é", 1)


def test_a_decimal_its_type_cannot_hold_is_refused_in_c_and_python(bus: Bus) -> None:
    """The C loop's encoder takes what fastavro takes (``1E+17`` for a decimal(18, 2)),
    so it must decline what validation refuses and leave the change to it."""
    from decimal import Decimal

    company = make_record("legal.company", seed=5)
    fast = ResourceWriter(bus, "js-scjgj", "legal.company")
    slow = ResourceWriter(bus, "js-scjgj", "legal.company", native=False)
    assert fast.native and not slow.native
    wrong = ["1E+17", "12345678901234567", "1.234", "NaN", "-Infinity"]
    fits = ["9999999999999999.99", "-9999999999999999.99", "0.00", "12.3", "1E+15"]
    batch = [Change("CREATE", after={**company, "registered_capital": Decimal(v)})
             for v in [*wrong, *fits]]
    ids = new_event_ids(len(batch))
    for writer in (fast, slow):
        errors: list[ChangeRejected] = []
        rows, accepted = writer.prepare(batch, 1, ids, 1_800_000_000_000_000, errors.append)
        assert [e.index for e in errors] == list(range(len(wrong)))
        assert accepted == ids[:len(fits)] and len(rows) == len(fits)  # ids as accepted
        reasons = [e.errors[0].reason for e in errors]
        assert all(e.errors[0].path == "after.registered_capital" for e in errors)
        assert reasons[:2] == ["decimal has more than 16 digits before the point; the "
                               "schema's type is decimal(18, 2)"] * 2
        assert reasons[2].startswith("decimal has more than 2 digits after the point")
        assert reasons[3:] == ["decimal must be a finite number, not NaN or an infinity"] * 2


def test_a_double_that_is_not_finite_is_refused_in_c_and_python(bus: Bus) -> None:
    import math

    parcel = make_record("spatial.parcel", seed=6)
    owner = bus.resources["spatial.parcel"].owner
    fast = ResourceWriter(bus, owner, "spatial.parcel")
    slow = ResourceWriter(bus, owner, "spatial.parcel", native=False)
    assert fast.native and not slow.native
    batch = [Change("CREATE", after={**parcel, "area_m2": math.nan}),
             Change("CREATE", after={**parcel, "location": {"longitude": -math.inf,
                                                           "latitude": 30.0}}),
             Change("CREATE", after={**parcel, "area_m2": 1.5})]
    ids = new_event_ids(len(batch))
    for writer in (fast, slow):
        errors: list[ChangeRejected] = []
        rows, _ = writer.prepare(batch, 1, ids, 1_800_000_000_000_000, errors.append)
        assert [e.index for e in errors] == [0, 1] and len(rows) == 1
        assert [e.errors[0].path for e in errors] == ["after.area_m2",
                                                      "after.location.longitude"]
