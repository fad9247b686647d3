"""Loading ``streams/`` and ``schemas/`` into a checked ``Bus``.

Every defect is collected as a ``Problem(file, entry, message)`` and reported
together in one ``BusDefinitionError``: an operator fixes the whole folder in
one pass. Entries are named by their id (``resource population.resident``,
``grant city.wuxi/population.resident``) so a message points at one YAML item.

``expires`` given as a date means the grant holds through that whole day (UTC);
naive datetimes are read as UTC. ``update_cycle`` and the SLA's durations need their
unit (``30s``/``15m``/``1h``/``1d``); ``syncbus.core.sla`` says why and judges them.

API (the dataclasses are re-exported from ``syncbus.core.model``):
    load_bus(streams_dir, schemas_dir) -> Bus        raises BusDefinitionError
    check_bus(streams_dir, schemas_dir) -> (Bus | None, list[Problem])
    bus_to_dict(bus) -> dict; bus_from_dict(d) -> Bus   (see syncbus.core.policy)
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from syncbus.core.model import (
    CLEARANCES,
    LEVELS,
    SHARING,
    STATES,
    VERTICALS,
    Bus,
    Department,
    Grant,
    Resource,
    Sla,
    Subscriber,
    UnknownId,
)
from syncbus.core.policy import bus_from_dict, bus_to_dict, parse_expires
from syncbus.core.problems import BusDefinitionError, Problem
from syncbus.core.regions import NATIONAL, is_valid_region
from syncbus.core.rules import check_references
from syncbus.core.schemas import SchemaRepository, load_schemas
from syncbus.core.sla import parse_sla, parse_update_cycle
from syncbus.core.sources import UnreadableInput, load_yaml, read_text

__all__ = [
    "Bus",
    "BusDefinitionError",
    "Department",
    "Grant",
    "Problem",
    "Resource",
    "Sla",
    "Subscriber",
    "UnknownId",
    "bus_from_dict",
    "bus_to_dict",
    "check_bus",
    "load_bus",
]

_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # section -> (required keys, optional keys)
    "departments": ({"id", "name", "level", "region"}, set()),
    "subscribers": ({"id", "name", "level", "region"}, set()),
    "resources": (
        {"id", "owner", "schema", "key_field", "region_field", "sharing", "update_cycle", "sla"},
        {"legal_basis", "vertical"},
    ),
    "grants": (
        {"subscriber", "resource", "clearance", "state"},
        {"masks", "regions", "approved_by", "expires", "purpose"},
    ),
}


class _Section:
    """The entries of one YAML file and the problems found while reading them."""

    def __init__(self, streams_dir: Path, name: str, problems: list[Problem]) -> None:
        self.file = str(streams_dir / f"{name}.yaml")
        self.name = name
        self.problems = problems
        self.entries: list[dict[str, Any]] = []
        try:
            data = load_yaml(read_text(streams_dir / f"{name}.yaml"))
        except UnreadableInput as exc:
            self.problem("-" if exc.line is None else f"line {exc.line}", exc.reason)
            return
        items = data.get(name) if isinstance(data, dict) else None
        if not isinstance(items, list):
            self.problem("-", f"expected a list under the top-level key {name!r}")
            return
        for index, item in enumerate(items):
            self._take(index, item)

    def problem(self, entry: str, message: str) -> None:
        self.problems.append(Problem(self.file, entry, message))

    def _take(self, index: int, item: Any) -> None:
        label = entry_label(self.name, item, index)
        if not isinstance(item, dict):
            self.problem(label, "entry must be a mapping")
            return
        required, optional = _KEYS[self.name]
        for key in sorted(required - item.keys()):
            self.problem(label, f"missing key {key!r}")
        for key in sorted(item.keys() - required - optional):
            self.problem(label, f"unknown key {key!r}")
        if not required - item.keys():
            self.entries.append(item)


def entry_label(section: str, item: Any, index: int) -> str:
    """How problems name an entry: by its id, or by subscriber/resource for grants."""
    if isinstance(item, dict):
        if section == "grants":
            return f"grant {item.get('subscriber', '?')}/{item.get('resource', '?')}"
        if "id" in item:
            return f"{section[:-1]} {item['id']}"
    return f"{section[:-1]} #{index + 1}"


def _choice(section: _Section, label: str, key: str, value: Any, allowed: tuple[str, ...]) -> bool:
    if value in allowed:
        return True
    section.problem(label, f"{key} {value!r} is not one of {', '.join(allowed)}")
    return False


def _region(section: _Section, label: str, value: Any, national_ok: bool) -> bool:
    code = str(value)
    if (national_ok and code == NATIONAL) or is_valid_region(code):
        return True
    section.problem(label, f"region {code!r} is not a GB/T 2260 region code")
    return False


def _unique(section: _Section, ids: list[str]) -> None:
    seen: set[str] = set()
    for id_ in ids:
        if id_ in seen:
            section.problem(f"{section.name[:-1]} {id_}", "duplicate id")
        seen.add(id_)


def _parties(section: _Section) -> dict[str, Any]:
    """Departments or subscribers, keyed by id."""
    out: dict[str, Any] = {}
    cls = Department if section.name == "departments" else Subscriber
    _unique(section, [str(e["id"]) for e in section.entries])
    for e in section.entries:
        label = entry_label(section.name, e, 0)
        ok = _choice(section, label, "level", e["level"], LEVELS)
        ok = _region(section, label, e["region"], national_ok=e["level"] == "national") and ok
        if ok:
            out.setdefault(
                str(e["id"]), cls(str(e["id"]), str(e["name"]), e["level"], str(e["region"]))
            )
    return out


def _resources(section: _Section) -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    _unique(section, [str(e["id"]) for e in section.entries])
    for e in section.entries:
        label = entry_label("resources", e, 0)
        ok = _choice(section, label, "sharing", e["sharing"], SHARING)
        vertical = e.get("vertical")
        if vertical is not None:
            ok = _choice(section, label, "vertical", vertical, VERTICALS) and ok
        if e["sharing"] == "not_shared" and not e.get("legal_basis"):
            ok = False
            section.problem(label, "a not_shared resource needs its legal_basis")
        try:
            resource = Resource(
                id=str(e["id"]),
                owner=str(e["owner"]),
                schema=str(e["schema"]),
                key_field=str(e["key_field"]),
                region_field=str(e["region_field"]),
                sharing=e["sharing"],
                legal_basis=e.get("legal_basis"),
                vertical=vertical,
                update_cycle_seconds=parse_update_cycle(e["update_cycle"]),
                sla=parse_sla(e["sla"]),
            )
        except ValueError as exc:
            section.problem(label, str(exc))
            continue
        if ok:
            out.setdefault(resource.id, resource)
    return out


def _grants(section: _Section) -> list[Grant]:
    out: list[Grant] = []
    seen: set[str] = set()
    for e in section.entries:
        label = entry_label("grants", e, 0)
        if label in seen:
            section.problem(label, "duplicate grant (one per subscriber and resource)")
        seen.add(label)
        ok = _choice(section, label, "clearance", e["clearance"], CLEARANCES)
        ok = _choice(section, label, "state", e["state"], STATES) and ok
        masks = e.get("masks") or {}
        regions = e.get("regions") or []
        if not isinstance(masks, dict) or not isinstance(regions, list):
            section.problem(label, "masks must be a mapping and regions a list")
            continue
        for code in regions:
            ok = _region(section, label, code, national_ok=True) and ok
        try:
            expires = parse_expires(e.get("expires"))
        except ValueError as exc:
            section.problem(label, str(exc))
            continue
        except OverflowError:  # 9999-12-31: "through that whole day" ends after year 9999
            section.problem(label, f"expires {e.get('expires')!s} is out of range "
                            "(the latest is 9999-12-30)")
            continue
        if ok:
            out.append(
                Grant(
                    subscriber=str(e["subscriber"]),
                    resource=str(e["resource"]),
                    clearance=e["clearance"],
                    masks=MappingProxyType({str(k): str(v) for k, v in masks.items()}),
                    regions=tuple(str(c) for c in regions),
                    approved_by=e.get("approved_by"),
                    expires=expires,
                    purpose=str(e.get("purpose") or ""),
                    state=e["state"],
                )
            )
    return out


def check_bus(streams_dir: Path, schemas_dir: Path) -> tuple[Bus | None, list[Problem]]:
    """Load and check everything; the bus is None when there is any problem."""
    problems: list[Problem] = []
    schemas: SchemaRepository
    schemas, schema_problems = load_schemas(schemas_dir)
    problems.extend(schema_problems)
    sections = {name: _Section(streams_dir, name, problems) for name in _KEYS}
    bus = Bus(
        departments=_parties(sections["departments"]),
        subscribers=_parties(sections["subscribers"]),
        resources=_resources(sections["resources"]),
        grants=tuple(_grants(sections["grants"])),
        schemas=schemas,
    )
    problems.extend(
        check_references(bus, sections["resources"].file, sections["grants"].file, schemas_dir)
    )
    return (None if problems else bus), problems


def load_bus(streams_dir: Path, schemas_dir: Path) -> Bus:
    """The checked bus; raises BusDefinitionError listing every problem found."""
    bus, problems = check_bus(Path(streams_dir), Path(schemas_dir))
    if bus is None:
        raise BusDefinitionError(problems)
    return bus
