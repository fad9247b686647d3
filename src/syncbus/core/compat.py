"""Schema evolution rule: each version is fully compatible with the one before.

"Full" means a reader of either version reads data written with the other, so
publishers and subscribers upgrade in any order. The check uses the ``avro``
package's ``ReaderWriterCompatibilityChecker`` in both directions and names the
field at fault from the incompatibility's location (``/fields/3/type``) so the
message says ``field phone`` rather than a JSON pointer.

API:
    compatibility_problems(old, new, file) -> list[Problem]
    check_evolution(repo) -> list[Problem]
    incompatibilities(reader, writer) -> [(field path, message)]; empty when readable
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from syncbus.core.problems import Problem

if TYPE_CHECKING:
    from syncbus.core.schemas import SchemaRepository

_FIELD_INDEX = re.compile(r"/fields/(\d+)")


def _field_path(schema: Mapping[str, Any], location: str) -> str:
    """Turn an avro location like ``/fields/2/type/fields/0`` into ``location.longitude``."""
    names: list[str] = []
    node: Any = schema
    for match in _FIELD_INDEX.finditer(location):
        fields = node.get("fields", []) if isinstance(node, dict) else []
        index = int(match.group(1))
        if index >= len(fields):
            break
        names.append(fields[index]["name"])
        node = fields[index]["type"]
        if isinstance(node, list):
            node = next((b for b in node if isinstance(b, dict)), node)
    return ".".join(names)


@lru_cache(maxsize=512)
def _cached(reader_json: str, writer_json: str) -> tuple[tuple[str, str], ...]:
    reader, writer = json.loads(reader_json), json.loads(writer_json)
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro.schema.parse(reader_json), avro.schema.parse(writer_json)
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return ()
    message = "; ".join(sorted(result.messages)) or "incompatible"
    paths = sorted(
        {_field_path(reader, loc) or _field_path(writer, loc) for loc in result.locations} - {""}
    )
    found = [(path, message) for path in paths]
    if not found:
        found.append(("", message))
    return tuple(found)


def incompatibilities(
    reader: Mapping[str, Any], writer: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """Why ``reader`` cannot read ``writer`` data, as (field path, message); cached per pair."""
    key = (json.dumps(reader, sort_keys=True), json.dumps(writer, sort_keys=True))
    return list(_cached(*key))


def compatibility_problems(
    old: Mapping[str, Any], new: Mapping[str, Any], file: str, entry: str = "schema"
) -> list[Problem]:
    """Why ``new`` is not fully compatible with ``old`` (empty when it is)."""
    problems = []
    for label, reader, writer in (
        ("new version cannot read data of the previous one", new, old),
        ("previous version cannot read data of the new one", old, new),
    ):
        for path, message in incompatibilities(reader, writer):
            where = f"field {path}" if path else entry
            problems.append(Problem(file, where, f"{label}: {message}"))
    return problems


def check_evolution(repo: SchemaRepository) -> list[Problem]:
    """Every consecutive pair of versions of every schema, checked both ways."""
    problems: list[Problem] = []
    for name in repo.names():
        versions = repo.versions(name)
        for before, after in itertools.pairwise(versions):
            if after != before + 1:
                problems.append(
                    Problem(
                        repo.file_of(name, after), name, f"version gap: v{before} then v{after}"
                    )
                )
            try:
                problems.extend(
                    compatibility_problems(
                        repo.get(name, before),
                        repo.get(name, after),
                        repo.file_of(name, after),
                        f"{name} v{after}",
                    )
                )
            except Exception as exc:  # avro refuses some schemas fastavro accepted
                problems.append(Problem(repo.file_of(name, after), name, f"cannot check: {exc}"))
    return problems
