"""The shipped bus loads; every broken case is refused naming file, entry and problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncbus.core.catalog import (
    Bus,
    BusDefinitionError,
    UnknownId,
    bus_from_dict,
    bus_to_dict,
    load_bus,
)


def test_shipped_bus(bus: Bus) -> None:
    assert set(bus.departments) == {"js-gaj", "js-scjgj", "js-zrzyt", "js-xyb", "js-wjw", "mca"}
    assert bus.departments["mca"].level == "national"
    assert set(bus.subscribers) == {
        "province.jiangsu",
        "city.nanjing",
        "city.suzhou",
        "city.wuxi",
        "district.gusu",
        "district.xuanwu",
    }
    resident = bus.resource("population.resident")
    assert (resident.owner, resident.sharing, resident.vertical) == (
        "js-gaj",
        "conditional",
        "provincial",
    )
    assert bus.resource("health.diagnosis").sharing == "not_shared"
    assert bus.grants_for("health.diagnosis") == ()
    effective = {g.subscriber: g.clearance for g in bus.effective_grants("population.resident")}
    assert effective == {
        "province.jiangsu": "L4",
        "city.nanjing": "L2",
        "city.suzhou": "L2",
        "district.gusu": "L2",
        "district.xuanwu": "L2",
    }
    assert len(bus.effective_grants("legal.company")) == 6
    marriage = {g.subscriber for g in bus.effective_grants("population.marriage")}
    assert marriage == {"province.jiangsu", "city.nanjing", "city.suzhou", "city.wuxi"}


def test_unknown_resource_names_the_id(bus: Bus) -> None:
    with pytest.raises(KeyError) as info:
        bus.resource("population.nobody")
    assert isinstance(info.value, UnknownId)
    assert str(info.value) == "unknown resource 'population.nobody'"


def test_grant_expiry(bus: Bus) -> None:
    grant = next(
        g for g in bus.grants_for("population.resident") if g.subscriber == "district.gusu"
    )
    resource = bus.resource("population.resident")
    assert grant.effective(resource, datetime(2027, 6, 30, 23, 59, tzinfo=UTC))
    assert not grant.effective(resource, datetime(2027, 7, 1, tzinfo=UTC))
    assert bus.scopes(grant) == ("320508",)


def test_policy_dict_round_trip(bus: Bus) -> None:
    data = json.loads(json.dumps(bus_to_dict(bus), ensure_ascii=False))
    assert "city.wuxi/population.resident" in data["grants"]
    again = bus_from_dict(data)
    assert again.grants == bus.grants
    assert again.resources == bus.resources
    assert again.subscribers == bus.subscribers
    assert again.schemas.latest("population.resident") == bus.schemas.latest("population.resident")


Edit = Callable[[dict[str, Any]], None]


def _edit(folder: Path, name: str, change: Edit) -> None:
    path = folder / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _entry(data: dict[str, Any], section: str, **match: str) -> dict[str, Any]:
    return next(e for e in data[section] if all(e.get(k) == v for k, v in match.items()))


def _grant(data: dict[str, Any], subscriber: str, resource: str) -> dict[str, Any]:
    return _entry(data, "grants", subscriber=subscriber, resource=resource)


def _problems(streams: Path, schemas: Path) -> list[str]:
    with pytest.raises(BusDefinitionError) as info:
        load_bus(streams, schemas)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


BROKEN: list[tuple[str, str, Edit, str, str]] = [
    # (id, file, edit, expected entry, expected message fragment)
    (
        "unknown owner",
        "resources",
        lambda d: _entry(d, "resources", id="spatial.parcel").update(owner="js-nobody"),
        "resource spatial.parcel",
        "unknown owner 'js-nobody'",
    ),
    (
        "unknown subscriber",
        "grants",
        lambda d: _grant(d, "city.wuxi", "legal.company").update(subscriber="city.nowhere"),
        "grant city.nowhere/legal.company",
        "unknown subscriber 'city.nowhere'",
    ),
    (
        "grant on not_shared",
        "grants",
        lambda d: d["grants"].append(
            {
                "subscriber": "city.nanjing",
                "resource": "health.diagnosis",
                "clearance": "L1",
                "state": "approved",
                "approved_by": "js-wjw",
            }
        ),
        "grant city.nanjing/health.diagnosis",
        "is not_shared",
    ),
    (
        "conditional approved by someone else",
        "grants",
        lambda d: _grant(d, "city.nanjing", "population.resident").update(approved_by="js-xyb"),
        "grant city.nanjing/population.resident",
        "only the owner 'js-gaj' may approve it",
    ),
    (
        "conditional approved by nobody",
        "grants",
        lambda d: _grant(d, "city.suzhou", "spatial.parcel").pop("approved_by"),
        "grant city.suzhou/spatial.parcel",
        "only the owner 'js-zrzyt' may approve it",
    ),
    (
        "fake department region",
        "departments",
        lambda d: _entry(d, "departments", id="js-xyb").update(region="329999"),
        "department js-xyb",
        "region '329999' is not a GB/T 2260 region code",
    ),
    (
        "fake subscriber region",
        "subscribers",
        lambda d: _entry(d, "subscribers", id="district.gusu").update(region="320599"),
        "subscriber district.gusu",
        "region '320599' is not a GB/T 2260 region code",
    ),
    (
        "fake grant region",
        "grants",
        lambda d: _grant(d, "city.suzhou", "spatial.parcel").update(regions=["320500", "329900"]),
        "grant city.suzhou/spatial.parcel",
        "region '329900' is not a GB/T 2260 region code",
    ),
    (
        "key field missing",
        "resources",
        lambda d: _entry(d, "resources", id="legal.company").update(key_field="credit_code"),
        "resource legal.company",
        "key_field 'credit_code' is missing from schema legal.company v1",
    ),
    (
        "region field missing",
        "resources",
        lambda d: _entry(d, "resources", id="population.resident").update(region_field="hukou"),
        "resource population.resident",
        "region_field 'hukou' is missing from schema population.resident v1",
    ),
    (
        "duplicate department",
        "departments",
        lambda d: d["departments"].append(dict(_entry(d, "departments", id="mca"))),
        "department mca",
        "duplicate id",
    ),
    (
        "duplicate subscriber",
        "subscribers",
        lambda d: d["subscribers"].append(dict(_entry(d, "subscribers", id="city.wuxi"))),
        "subscriber city.wuxi",
        "duplicate id",
    ),
    (
        "duplicate resource",
        "resources",
        lambda d: d["resources"].append(dict(_entry(d, "resources", id="credit.penalty"))),
        "resource credit.penalty",
        "duplicate id",
    ),
    (
        "duplicate grant",
        "grants",
        lambda d: d["grants"].append(dict(_grant(d, "city.wuxi", "legal.company"))),
        "grant city.wuxi/legal.company",
        "duplicate grant",
    ),
    (
        "not_shared without legal basis",
        "resources",
        lambda d: _entry(d, "resources", id="health.diagnosis").pop("legal_basis"),
        "resource health.diagnosis",
        "needs its legal_basis",
    ),
    (
        "unknown key",
        "grants",
        lambda d: _grant(d, "city.wuxi", "legal.company").update(clearence="L2"),
        "grant city.wuxi/legal.company",
        "unknown key 'clearence'",
    ),
    (
        "bad clearance",
        "grants",
        lambda d: _grant(d, "city.wuxi", "legal.company").update(clearance="L5"),
        "grant city.wuxi/legal.company",
        "clearance 'L5' is not one of",
    ),
    (
        "mask on unknown field",
        "grants",
        lambda d: _grant(d, "city.suzhou", "population.resident").update(masks={"adress": "drop"}),
        "grant city.suzhou/population.resident",
        "mask on unknown field 'adress'",
    ),
    (
        "mask on nested field",
        "grants",
        lambda d: _grant(d, "city.suzhou", "spatial.parcel").update(
            masks={"location.longitude": "drop"}),
        "grant city.suzhou/spatial.parcel",
        "mask on nested field 'location.longitude': masks apply to whole top-level fields",
    ),
    (
        "unknown schema",
        "resources",
        lambda d: _entry(d, "resources", id="credit.penalty").update(schema="credit.fine"),
        "resource credit.penalty",
        "unknown schema 'credit.fine'",
    ),
    (
        "vertical owner level",
        "resources",
        lambda d: _entry(d, "resources", id="population.marriage").update(owner="js-gaj"),
        "resource population.marriage",
        "needs a national-level owner",
    ),
]


@pytest.mark.parametrize(
    ("file", "change", "entry", "fragment"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_broken_bus_is_rejected(
    bus_copy: tuple[Path, Path], file: str, change: Edit, entry: str, fragment: str
) -> None:
    streams, schemas = bus_copy
    _edit(streams, file, change)
    problems = _problems(streams, schemas)
    prefix = f"{streams / file}.yaml: {entry}: "
    assert any(p.startswith(prefix) and fragment in p for p in problems), problems


def test_field_without_grade(bus_copy: tuple[Path, Path]) -> None:
    streams, schemas = bus_copy
    path = schemas / "credit.penalty.v1.avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    del schema["fields"][4]["grade"]
    path.write_text(json.dumps(schema, ensure_ascii=False), encoding="utf-8")
    problems = _problems(streams, schemas)
    assert f"{path}: field subject_name: field without a grade (L1..L4)" in problems


def test_nested_field_without_grade(bus_copy: tuple[Path, Path]) -> None:
    streams, schemas = bus_copy
    path = schemas / "spatial.parcel.v1.avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    del schema["fields"][5]["type"]["fields"][0]["grade"]
    path.write_text(json.dumps(schema, ensure_ascii=False), encoding="utf-8")
    assert f"{path}: field location.longitude: field without a grade (L1..L4)" in _problems(
        streams, schemas
    )


def test_every_problem_is_collected(bus_copy: tuple[Path, Path]) -> None:
    streams, schemas = bus_copy
    for _, file, change, _, _ in BROKEN[:6]:
        _edit(streams, file, change)
    assert len(_problems(streams, schemas)) >= 6


def test_missing_file_and_bad_yaml(bus_copy: tuple[Path, Path]) -> None:
    streams, schemas = bus_copy
    (streams / "subscribers.yaml").unlink()
    (streams / "departments.yaml").write_text("departments: [unclosed\n", encoding="utf-8")
    problems = _problems(streams, schemas)
    assert any(
        p.startswith(f"{streams / 'subscribers.yaml'}: -: file is missing") for p in problems
    )
    assert any("departments.yaml: line 1: not valid YAML" in p for p in problems)
