"""Validation names the field path; JSON input converts and refuses unknown fields."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

import pytest

from syncbus.core.catalog import Bus
from syncbus.core.fake import RESOURCE_SCHEMAS, citizen_id, make_record, make_records, uscc_for
from syncbus.core.validation import (
    ValidationError,
    check_format,
    compile_validator,
    from_json,
    to_json,
)


@pytest.mark.parametrize("name", RESOURCE_SCHEMAS)
def test_generated_records_are_valid(bus: Bus, name: str) -> None:
    validator = compile_validator(bus.schemas.latest(name))
    for record in make_records(name, 10, seed=5):
        assert validator.errors(record) == []


def test_wrong_check_digit_names_the_path(bus: Bus) -> None:
    validator = compile_validator(bus.schemas.latest("population.resident"))
    record = make_record("population.resident", seed=2)
    good = record["id_number"]
    record["id_number"] = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(ValidationError) as info:
        validator.check(record, prefix="after")
    # the reason names the field, not the number: it may end up in a dead letter
    assert str(info.value) == "after.id_number: citizen ID check digit is wrong"
    assert info.value.errors[0].path == "after.id_number"


def test_many_errors_at_once(bus: Bus) -> None:
    validator = compile_validator(bus.schemas.latest("legal.company"))
    record = make_record("legal.company", seed=4)
    record["uscc"] = record["uscc"][:-1] + "I"
    record["region"] = "329999"
    del record["name"]
    record["registered_capital"] = "lots"
    record["nickname"] = "x"
    reasons = {e.path: e.reason for e in validator.errors(record)}
    assert reasons["uscc"].startswith("USCC has an invalid format")
    assert reasons["region"] == "not a GB/T 2260 region code (got 329999)"
    assert reasons["name"] == "required field is missing"
    assert reasons["registered_capital"] == "expected decimal, got str"
    assert reasons["nickname"] == "unknown field"


def test_nested_and_enum_paths(bus: Bus) -> None:
    parcel = make_record("spatial.parcel", seed=1)
    parcel["location"]["latitude"] = "north"
    errors = compile_validator(bus.schemas.latest("spatial.parcel")).errors(parcel)
    assert [str(e) for e in errors] == ["location.latitude: expected double, got str"]
    resident = make_record("population.resident", seed=1)
    resident["gender"] = "X"
    errors = compile_validator(bus.schemas.latest("population.resident")).errors(resident)
    assert [str(e) for e in errors] == ["gender: 'X' is not one of M, F"]


def test_formats() -> None:
    import random

    rng = random.Random(1)
    assert check_format("citizen_id", citizen_id("320508", dt.date(2015, 5, 1), rng)) is None
    assert check_format("citizen_id", "11010519491231002X") is None
    assert "18 characters" in (check_format("citizen_id", "1234") or "")
    assert check_format("uscc", uscc_for("320500", rng)) is None
    assert check_format("uscc", "91110000600037341L") is None
    assert "check digit" in (check_format("uscc", "91110000600037341A") or "")
    assert check_format("region_code", "320508") is None


def test_from_json_and_back(bus: Bus) -> None:
    schema = bus.schemas.latest("legal.company")
    record = make_record("legal.company", seed=9)
    text = json.dumps(to_json(record), ensure_ascii=False)
    again = from_json(schema, json.loads(text))
    assert again == {**record}
    assert isinstance(again["established_on"], dt.date)
    assert isinstance(again["registered_capital"], Decimal)


def test_from_json_fills_defaults_and_converts(bus: Bus) -> None:
    schema = bus.schemas.latest("population.resident")
    obj = to_json(make_record("population.resident", seed=3))
    del obj["phone"]
    record = from_json(schema, obj)
    assert record["phone"] is None and record["email"] is None
    assert isinstance(record["birth_date"], dt.date)
    compile_validator(schema).check(record)


def test_from_json_errors_name_the_field(bus: Bus) -> None:
    schema = bus.schemas.latest("population.resident")
    obj = to_json(make_record("population.resident", seed=3))
    obj["birth_date"] = "1990/01/02"
    obj["hobby"] = "go"
    with pytest.raises(ValidationError) as info:
        from_json(schema, obj, prefix="after")
    paths = {e.path: e.reason for e in info.value.errors}
    assert paths["after.hobby"] == "unknown field"
    assert paths["after.birth_date"] == "expected a date YYYY-MM-DD, got '1990/01/02'"


def test_a_decimal_is_checked_against_its_precision_and_scale(bus: Bus) -> None:
    """Nullable or not, the fast check and the field-by-field one agree on decimals."""
    for name, field in (("legal.company", "registered_capital"), ("credit.penalty", "amount")):
        validator = compile_validator(bus.schemas.latest(name))
        record = make_record(name, seed=8)
        assert validator.has_fast_path
        for value in ("9999999999999999.99", "-0.01", "0", "0E+20", "7E+15", "12.30"):
            fine = {**record, field: Decimal(value)}
            assert validator.valid(fine) and validator.errors(fine) == [], value
        for value, reason in (("1E+16", "more than 16 digits before the point"),
                              ("0.001", "more than 2 digits after the point"),
                              ("0E-3", "more than 2 digits after the point"),
                              ("sNaN", "finite"), ("Infinity", "finite")):
            bad = {**record, field: Decimal(value)}
            assert not validator.valid(bad), value
            (error,) = validator.errors(bad)
            assert error.path == field and reason in error.reason, (value, error)


def test_a_double_must_be_finite_at_any_depth(bus: Bus) -> None:
    """NaN and the infinities are no number a JSON reader or a SQL column takes."""
    validator = compile_validator(bus.schemas.latest("spatial.parcel"))
    record = make_record("spatial.parcel", seed=9)
    assert validator.has_fast_path
    for fine in ({"area_m2": 0.0}, {"area_m2": -1e308},
                 {"location": {"longitude": 120.5, "latitude": -0.0}}):
        changed = {**record, **fine}
        assert validator.valid(changed) and validator.errors(changed) == [], fine
    assert validator.errors({**record, "area_m2": 12}) == [], "an int is a double's value"
    for bad, path in (({"area_m2": math.nan}, "area_m2"), ({"area_m2": -math.inf}, "area_m2"),
                      ({"area_m2": 10**400}, "area_m2"),
                      ({"location": {"longitude": math.inf, "latitude": 1.0}},
                       "location.longitude")):
        changed = {**record, **bad}
        assert not validator.valid(changed), bad
        (error,) = validator.errors(changed)
        assert error.path == path and "finite" in error.reason, (bad, error)
