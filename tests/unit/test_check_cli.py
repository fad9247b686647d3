"""``syncbus check`` on the shipped bus, on broken buses, and on incompatible versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from syncbus.cli.check import check

ROOT = Path(__file__).resolve().parents[2]
STREAMS, SCHEMAS = ROOT / "streams", ROOT / "schemas"


def _run(streams: Path, schemas: Path) -> Any:
    return CliRunner().invoke(check, ["--streams", str(streams), "--schemas", str(schemas)])


def test_shipped_bus_is_ok() -> None:
    result = _run(STREAMS, SCHEMAS)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "ok: 6 departments, 6 subscribers, 7 resources, 24 grants, 8 schemas"
    )


def test_env_defaults(monkeypatch: Any) -> None:
    monkeypatch.setenv("SYNCBUS_STREAMS", str(STREAMS))
    monkeypatch.setenv("SYNCBUS_SCHEMAS", str(SCHEMAS))
    assert CliRunner().invoke(check, []).exit_code == 0


def test_broken_grant_is_named(bus_copy: tuple[Path, Path]) -> None:
    streams, schemas = bus_copy
    grants = streams / "grants.yaml"
    grants.write_text(
        grants.read_text(encoding="utf-8").replace("approved_by: js-zrzyt", "approved_by: js-gaj"),
        encoding="utf-8",
    )
    result = _run(streams, schemas)
    assert result.exit_code == 1
    assert f"{grants}: grant province.jiangsu/spatial.parcel: conditional grant approved" in (
        result.output
    )


def _write_v3(schemas: Path, change: Any) -> Path:
    v2 = json.loads((schemas / "population.resident.v2.avsc").read_text(encoding="utf-8"))
    change(v2["fields"])
    path = schemas / "population.resident.v3.avsc"
    path.write_text(json.dumps(v2, ensure_ascii=False), encoding="utf-8")
    return path


def test_added_required_field_is_incompatible(bus_copy: tuple[Path, Path]) -> None:
    streams, schemas = bus_copy
    path = _write_v3(
        schemas,
        lambda fields: fields.append({"name": "blood_type", "type": "string", "grade": "L3"}),
    )
    result = _run(streams, schemas)
    assert result.exit_code == 1
    assert f"{path}: field blood_type: new version cannot read data of the previous one" in (
        result.output
    )


def test_changed_field_type_is_incompatible(bus_copy: tuple[Path, Path]) -> None:
    streams, schemas = bus_copy

    def retype(fields: list[dict[str, Any]]) -> None:
        next(f for f in fields if f["name"] == "ethnicity")["type"] = "int"

    path = _write_v3(schemas, retype)
    result = _run(streams, schemas)
    assert result.exit_code == 1
    assert f"{path}: field ethnicity: " in result.output
    assert "reader type: int not compatible with writer type: string" in result.output


def test_added_optional_field_is_compatible(bus_copy: tuple[Path, Path]) -> None:
    streams, schemas = bus_copy
    _write_v3(
        schemas,
        lambda fields: fields.append(
            {"name": "nickname", "type": ["null", "string"], "default": None, "grade": "L2"}
        ),
    )
    result = _run(streams, schemas)
    assert result.exit_code == 0, result.output
