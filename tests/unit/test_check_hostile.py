"""Hostile input to ``syncbus check``: every defect is a problem naming file and entry.

Each case breaks one file of a copy of the shipped bus the way an operator's typo,
an editor or a bad merge can. ``check`` must exit 1 with ``<file>: <entry>: <why>``
lines and never a traceback (issue 22).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from syncbus.cli.check import check
from syncbus.core.catalog import check_bus

Breaker = Callable[[Path, Path], Path]  # (streams, schemas) -> the file it broke


def _replace(path: Path, old: str, new: str) -> Path:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _resource_sla(key: str, value: str) -> Breaker:
    """Set ``key`` of the first resource's flow-style ``sla`` mapping to ``value``."""

    def breaker(streams: Path, _: Path) -> Path:
        path = streams / "resources.yaml"
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(rf"{key}: [^,}}]+", f"{key}: {value}", text, count=1),
                        encoding="utf-8")
        return path

    return breaker


CASES: dict[str, tuple[Breaker, str]] = {
    # (break it, what the problem line must say besides the file)
    "impossible expires date": (
        lambda s, _: _replace(s / "grants.yaml", 'expires: "2027-12-31"', "expires: 2027-02-30"),
        "line ",
    ),
    "expires at the end of time": (
        lambda s, _: _replace(s / "grants.yaml", 'expires: "2027-12-31"', "expires: 9999-12-31"),
        "grant province.jiangsu/population.resident: expires",
    ),
    "non-UTF-8 streams file": (
        lambda s, _: _write(s / "grants.yaml", b"grants: [\xff\xfe]\n"), "not UTF-8",
    ),
    "non-UTF-8 schema file": (
        lambda _, c: _write(c / "legal.company.v1.avsc", b'{"name": "\xff"}'), "not UTF-8",
    ),
    "schema file is a JSON array": (
        lambda _, c: _write(c / "legal.company.v1.avsc", '["null", "string"]'),
        "legal.company.v1.avsc: top level must be an Avro record",
    ),
    "schema file is a JSON string": (
        lambda _, c: _write(c / "legal.company.v1.avsc", '"string"'),
        "legal.company.v1.avsc: top level must be an Avro record",
    ),
    "envelope is a JSON array": (
        lambda _, c: _write(c / "envelope" / "change_event.v1.avsc", "[]"),
        "envelope: top level must be an Avro record",
    ),
    "field format that is a list": (
        lambda _, c: _replace(c / "population.resident.v2.avsc", '"format": "citizen_id"',
                              '"format": ["citizen_id"]'),
        "field id_number: unknown format",
    ),
    "field pii that is a list": (
        lambda _, c: _replace(c / "population.resident.v2.avsc", '"pii": "id_number"',
                              '"pii": ["id_number"]'),
        "field id_number: pii must be a string",
    ),
    "streams file that is a folder": (
        lambda s, _: (s / "grants.yaml").unlink() or (s / "grants.yaml").mkdir() or s,
        "cannot read",
    ),
    "YAML that is a scalar": (
        lambda s, _: _write(s / "departments.yaml", "42\n"), "expected a list under",
    ),
    "empty YAML file": (
        lambda s, _: _write(s / "subscribers.yaml", ""), "expected a list under",
    ),
    "top-level key given twice": (
        lambda s, _: _write(s / "grants.yaml",
                            (s / "grants.yaml").read_text(encoding="utf-8") + "\ngrants: []\n"),
        "duplicate key 'grants'",
    ),
    "key given twice in an entry": (
        lambda s, _: _replace(s / "grants.yaml", "clearance: L4,", "clearance: L4, clearance: L1,"),
        "duplicate key 'clearance'",
    ),
    "completeness that is null": (_resource_sla("completeness", "null"), "completeness"),
    "completeness that is a list": (_resource_sla("completeness", "[1]"), "completeness"),
    "completeness that is true": (_resource_sla("completeness", "true"), "completeness"),
    "update cycle beyond a float": (
        lambda s, _: _replace(s / "resources.yaml", "update_cycle: ",
                              "update_cycle: 1" + "0" * 400 + " #"),
        "update_cycle",
    ),
    "latency that is not a number": (_resource_sla("latency_p99", ".nan"), "latency_p99"),
    "freshness that is infinite": (_resource_sla("freshness", ".inf"), "freshness"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_a_problem_not_a_traceback(
    case: str, bus_copy: tuple[Path, Path]
) -> None:
    streams, schemas = bus_copy
    breaker, expected = CASES[case]
    broken = breaker(streams, schemas)
    result = CliRunner().invoke(
        check, ["--streams", str(streams), "--schemas", str(schemas)], catch_exceptions=True
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{case}: {type(result.exception).__name__}: {result.exception}"
    )
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if expected in line]
    assert lines, f"{case}: no problem says {expected!r}:\n{result.output}"
    if isinstance(broken, Path) and broken.is_file():
        assert any(str(broken) in line for line in lines), result.output


def test_schema_array_in_check_of_a_resource_names_no_traceback(
    bus_copy: tuple[Path, Path],
) -> None:
    """The schema file a resource points to is a JSON array: the resource is named too."""
    streams, schemas = bus_copy
    _write(schemas / "legal.company.v1.avsc", json.dumps([{"type": "record"}]))
    result = CliRunner().invoke(check, ["--streams", str(streams), "--schemas", str(schemas)])
    assert result.exit_code == 1
    assert "resource legal.company: unknown schema" in result.output


WRONG_TYPES: list[Any] = [None, [1], {"a": 1}, True, 10**30]


@pytest.mark.parametrize("section", ["departments", "subscribers", "resources", "grants"])
def test_any_value_of_the_wrong_type_is_a_problem_or_accepted_never_a_crash(
    section: str, bus_copy: tuple[Path, Path]
) -> None:
    """Every key of the section's first entry, set to values of every wrong type."""
    streams, schemas = bus_copy
    path = streams / f"{section}.yaml"
    original = yaml.safe_load(path.read_text(encoding="utf-8"))
    entry = original[section][0]
    keys = [*entry, *(entry["sla"] if section == "resources" else {})]
    for key in keys:
        for value in WRONG_TYPES:
            broken = json.loads(json.dumps(original))
            target = broken[section][0]
            if key in target:
                target[key] = value
            else:
                target["sla"][key] = value
            path.write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
            try:
                check_bus(streams, schemas)
            except Exception as exc:  # the point is that none escapes
                pytest.fail(f"{section} {key}={value!r}: {type(exc).__name__}: {exc}")
