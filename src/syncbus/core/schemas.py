"""The Avro contracts: domain record schemas by (name, version) and the envelope.

Files are ``schemas/<name>.v<N>.avsc`` where ``<name>`` is the record's full name
without the ``syncbus.`` namespace root (``population.resident`` is record
``resident`` in namespace ``syncbus.population``). Full names stay the same
across versions so Avro resolution matches writer and reader records. The
envelope lives in ``schemas/envelope/change_event.v<N>.avsc``; its ``before``
and ``after`` name a ``Placeholder`` record that ``event_schema`` replaces with
the resource's domain record, so one envelope serves every resource.

Every field carries ``"grade": "L1".."L4"`` and, for personal data, ``"pii"``
(``id_number``, ``name``, ``phone``, ``birth_date``, ``address``, ``location``,
others allowed); ``"format"`` selects a validator (``citizen_id``, ``uscc``,
``region_code``).

API:
    GRADES, PII_KINDS, FORMATS
    SchemaRepository(domain, envelope): get(name, version), latest(name),
        latest_version(name), versions(name), names(), envelope, file_of(name, version)
    load_schemas(dir) -> (SchemaRepository, list[Problem])
    SchemaRepository.from_dir(dir) -> SchemaRepository (raises BusDefinitionError)
    event_schema(domain_schema, envelope=None) -> dict (None: envelope.ENVELOPE)
    SchemaRepository.event_schema(name, version=None) -> dict
    field_grade(field) -> str; field_pii(field) -> str | None; field_format(field) -> str | None
    iter_fields(schema) -> (path, field) for every field, nested records included
    schema_name(schema) -> "population.resident"
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from syncbus.core.envelope import ENVELOPE
from syncbus.core.problems import BusDefinitionError, Problem
from syncbus.core.sources import UnreadableInput, load_json, read_text

GRADES = ("L1", "L2", "L3", "L4")
PII_KINDS = frozenset({"id_number", "name", "phone", "birth_date", "address", "location"})
FORMATS = frozenset({"citizen_id", "uscc", "region_code"})
ROOT_NAMESPACE = "syncbus"
ENVELOPE_DIR = "envelope"
PLACEHOLDER = "Placeholder"

Schema = dict[str, Any]
_FILE_NAME = re.compile(
    r"^(?P<name>[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)\.v(?P<v>[1-9]\d*)\.avsc$"
)
_ENVELOPE_FILE = re.compile(r"^change_event\.v(?P<v>[1-9]\d*)\.avsc$")


def field_grade(field: Mapping[str, Any]) -> str:
    """The field's grade; fields without one are refused at load, so this raises KeyError."""
    grade = field["grade"]
    assert isinstance(grade, str)
    return grade


def field_pii(field: Mapping[str, Any]) -> str | None:
    """The PII kind of a field, or None when it is not personal data."""
    pii = field.get("pii")
    return pii if isinstance(pii, str) else None


def field_format(field: Mapping[str, Any]) -> str | None:
    """The validator a field asks for (``citizen_id``, ``uscc``, ``region_code``)."""
    fmt = field.get("format")
    return fmt if isinstance(fmt, str) else None


def schema_name(schema: Mapping[str, Any]) -> str:
    """Catalog name of a domain record schema: its full name minus ``syncbus.``."""
    namespace = schema.get("namespace", "")
    full = f"{namespace}.{schema['name']}" if namespace else str(schema["name"])
    prefix = ROOT_NAMESPACE + "."
    return full[len(prefix) :] if full.startswith(prefix) else full


def _record_of(type_: Any) -> Mapping[str, Any] | None:
    """The record inside a field type (directly or as a union branch), if any."""
    if isinstance(type_, dict) and type_.get("type") == "record":
        return type_
    if isinstance(type_, list):
        for branch in type_:
            found = _record_of(branch)
            if found is not None:
                return found
    return None


def iter_fields(schema: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Schema]]:
    """Every field with its dotted path, nested record fields after their parent."""
    for field in schema.get("fields", []):
        path = f"{prefix}{field['name']}"
        yield path, field
        nested = _record_of(field["type"])
        if nested is not None:
            yield from iter_fields(nested, path + ".")


class SchemaRepository:
    """Domain schemas by (name, version), and the envelope; read-only once built."""

    def __init__(
        self,
        domain: Mapping[tuple[str, int], Schema],
        envelope: Schema,
        files: Mapping[tuple[str, int], str] | None = None,
    ) -> None:
        self._domain = dict(domain)
        self.envelope = envelope
        self._files = dict(files or {})
        self._versions: dict[str, list[int]] = {}
        for name, version in sorted(self._domain):
            self._versions.setdefault(name, []).append(version)

    @classmethod
    def from_dir(cls, schemas_dir: Path) -> SchemaRepository:
        """Load and check a schemas folder, raising BusDefinitionError on any problem."""
        repo, problems = load_schemas(schemas_dir)
        if problems:
            raise BusDefinitionError(problems)
        return repo

    def names(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, name: str) -> list[int]:
        """Versions of a schema, ascending; empty when unknown."""
        return list(self._versions.get(name, []))

    def latest_version(self, name: str) -> int:
        if name not in self._versions:
            raise KeyError(f"unknown schema {name!r}")
        return self._versions[name][-1]

    def latest(self, name: str) -> Schema:
        return self.get(name, self.latest_version(name))

    def get(self, name: str, version: int) -> Schema:
        try:
            return self._domain[(name, version)]
        except KeyError:
            raise KeyError(f"unknown schema {name!r} version {version}") from None

    def file_of(self, name: str, version: int) -> str:
        """The file a schema came from, for error messages."""
        return self._files.get((name, version), f"{name}.v{version}.avsc")

    def event_schema(self, name: str, version: int | None = None) -> Schema:
        """The change-event schema of a domain schema (latest version by default)."""
        domain = self.latest(name) if version is None else self.get(name, version)
        return event_schema(domain, self.envelope)

    def items(self) -> Iterator[tuple[tuple[str, int], Schema]]:
        yield from sorted(self._domain.items())

    def __len__(self) -> int:
        return len(self._domain)


def event_schema(
    domain_schema: Mapping[str, Any], envelope: Mapping[str, Any] | None = None
) -> Schema:
    """The full change-event schema of a resource: the envelope with typed before/after."""
    event = copy.deepcopy(dict(ENVELOPE if envelope is None else envelope))
    record = copy.deepcopy(dict(domain_schema))
    if "namespace" not in record:
        raise ValueError("domain schemas need a namespace (syncbus.<area>)")
    full_name = f"{record['namespace']}.{record['name']}"
    for field in event["fields"]:
        if field["name"] == "before":
            field["type"] = ["null", record]
        elif field["name"] == "after":
            field["type"] = ["null", full_name]
    return event


def _check_domain(file: str, schema: Any, name: str) -> list[Problem]:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return [Problem(file, name, "top level must be an Avro record")]
    problems = []
    if schema_name(schema) != name:
        problems.append(
            Problem(file, name, f"record full name is {schema_name(schema)!r}, file says {name!r}")
        )
    for path, field in iter_fields(schema):
        grade = field.get("grade")
        if grade is None:
            problems.append(Problem(file, f"field {path}", "field without a grade (L1..L4)"))
        elif grade not in GRADES:
            problems.append(Problem(file, f"field {path}", f"grade {grade!r} is not L1..L4"))
        fmt = field.get("format")
        if fmt is not None and (not isinstance(fmt, str) or fmt not in FORMATS):
            problems.append(
                Problem(
                    file, f"field {path}", f"unknown format {fmt!r} ({', '.join(sorted(FORMATS))})"
                )
            )
        pii = field.get("pii")
        if pii is not None and not isinstance(pii, str):
            problems.append(Problem(file, f"field {path}", f"pii must be a string, not {pii!r}"))
    return problems


def _parse_file(path: Path, problems: list[Problem], entry: str) -> Schema | None:
    """The file's record schema, or None with the problem (unreadable, not JSON, not a
    record, not valid Avro) added under ``entry``."""
    from fastavro.schema import parse_schema  # parse to catch invalid Avro early

    try:
        data = load_json(read_text(path))
    except UnreadableInput as exc:
        problems.append(Problem(str(path), entry, str(exc)))
        return None
    if not isinstance(data, dict) or data.get("type") != "record":
        problems.append(Problem(str(path), entry, "top level must be an Avro record "
                                "(a JSON object with \"type\": \"record\")"))
        return None
    try:
        parse_schema(copy.deepcopy(data), _write_hint=False)
    except Exception as exc:  # any parse failure is reported, never raised
        problems.append(Problem(str(path), entry, f"not a valid Avro schema: {exc}"))
        return None
    return data


def load_schemas(schemas_dir: Path) -> tuple[SchemaRepository, list[Problem]]:
    """Read every ``.avsc`` under ``schemas_dir``; return the repository and all problems."""
    from syncbus.core.compat import check_evolution

    problems: list[Problem] = []
    domain: dict[tuple[str, int], Schema] = {}
    files: dict[tuple[str, int], str] = {}
    if not schemas_dir.is_dir():
        return SchemaRepository({}, dict(ENVELOPE)), [
            Problem(str(schemas_dir), "-", "no such directory")
        ]
    for path in sorted(schemas_dir.glob("*.avsc")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            problems.append(Problem(str(path), path.name, "file name must be <name>.v<N>.avsc"))
            continue
        schema = _parse_file(path, problems, path.name)
        if schema is None:
            continue
        name, version = match["name"], int(match["v"])
        problems.extend(_check_domain(str(path), schema, name))
        domain[(name, version)] = schema
        files[(name, version)] = str(path)
    envelope = _load_envelope(schemas_dir / ENVELOPE_DIR, problems)
    repo = SchemaRepository(domain, envelope, files)
    problems.extend(check_evolution(repo))
    return repo, problems


def _load_envelope(folder: Path, problems: list[Problem]) -> Schema:
    found = sorted(
        (int(m["v"]), p) for p in folder.glob("*.avsc") if (m := _ENVELOPE_FILE.match(p.name))
    )
    if not found:
        problems.append(Problem(str(folder), "envelope", "no change_event.v<N>.avsc"))
        return {}
    path = found[-1][1]
    schema = _parse_file(path, problems, "envelope")
    if schema is not None and schema != ENVELOPE:
        problems.append(
            Problem(str(path), "envelope", "differs from syncbus.core.envelope.ENVELOPE")
        )
    return schema or dict(ENVELOPE)
