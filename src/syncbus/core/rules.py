"""Cross-file rules of a bus: the checks no single YAML entry can make alone.

These are the rules a broken catalog most often breaks in practice: a grant
naming a subscriber nobody declared, a conditional grant signed by someone other
than the owner (only the source department may approve, 数源部门审核), a grant on
the negative list, a resource whose key or routing field its schema lacks.

API:
    MASK_KINDS: what a grant's ``masks`` may say for a field
    check_references(bus, resources_file, grants_file, schemas_dir) -> list[Problem]
"""

from __future__ import annotations

from pathlib import Path

from syncbus.core.model import Bus, Grant, Resource
from syncbus.core.problems import Problem
from syncbus.core.schemas import PII_KINDS, iter_fields

MASK_KINDS = PII_KINDS | {"drop", "pass", "token"}
_OWNER_LEVEL = {"national": "national", "provincial": "province"}


def _resource_problems(bus: Bus, resource: Resource, file: str, schemas_dir: Path) -> list[Problem]:
    label = f"resource {resource.id}"
    problems = []
    owner = bus.departments.get(resource.owner)
    if owner is None:
        problems.append(
            Problem(file, label, f"unknown owner {resource.owner!r} (not in departments)")
        )
    elif resource.vertical and owner.level != _OWNER_LEVEL[resource.vertical]:
        problems.append(
            Problem(
                file,
                label,
                f"a {resource.vertical} vertical resource needs a "
                f"{_OWNER_LEVEL[resource.vertical]}-level owner, {owner.id} is {owner.level}",
            )
        )
    versions = bus.schemas.versions(resource.schema)
    if not versions:
        problems.append(
            Problem(
                file,
                label,
                f"unknown schema {resource.schema!r} "
                f"(no {schemas_dir / resource.schema}.v<N>.avsc)",
            )
        )
    for version in versions:
        fields = {path for path, _ in iter_fields(bus.schemas.get(resource.schema, version))}
        for role, name in (
            ("key_field", resource.key_field),
            ("region_field", resource.region_field),
        ):
            if name not in fields:
                problems.append(
                    Problem(
                        file,
                        label,
                        f"{role} {name!r} is missing from schema {resource.schema} v{version}",
                    )
                )
    return problems


def _grant_problems(bus: Bus, grant: Grant, file: str) -> list[Problem]:
    label = f"grant {grant.key}"
    problems = []
    if grant.subscriber not in bus.subscribers:
        problems.append(
            Problem(file, label, f"unknown subscriber {grant.subscriber!r} (not in subscribers)")
        )
    resource = bus.resources.get(grant.resource)
    if resource is None:
        problems.append(Problem(file, label, f"unknown resource {grant.resource!r}"))
        return problems
    if resource.sharing == "not_shared":
        problems.append(
            Problem(
                file,
                label,
                f"resource {resource.id} is not_shared (negative list: "
                f"{resource.legal_basis}); it cannot be granted",
            )
        )
    if (
        resource.sharing == "conditional"
        and grant.state == "approved"
        and grant.approved_by != resource.owner
    ):
        problems.append(
            Problem(
                file,
                label,
                f"conditional grant approved by {grant.approved_by!r}; "
                f"only the owner {resource.owner!r} may approve it",
            )
        )
    if bus.schemas.versions(resource.schema):
        fields = {path for path, _ in iter_fields(bus.schemas.latest(resource.schema))}
        for field, mask in grant.masks.items():
            if field not in fields:
                problems.append(Problem(file, label, f"mask on unknown field {field!r}"))
            elif "." in field:  # masking applies per top-level field (core.masking)
                top = field.split(".")[0]
                problems.append(Problem(
                    file, label, f"mask on nested field {field!r}: masks apply to whole "
                    f"top-level fields; mask {top!r} instead (its grade covers {field})"))
            if mask not in MASK_KINDS:
                problems.append(
                    Problem(
                        file,
                        label,
                        f"mask {mask!r} for {field} is not one of {', '.join(sorted(MASK_KINDS))}",
                    )
                )
    return problems


def check_references(
    bus: Bus, resources_file: str, grants_file: str, schemas_dir: Path
) -> list[Problem]:
    """Every cross-reference of the bus, checked; empty when all hold."""
    problems: list[Problem] = []
    for resource in bus.resources.values():
        problems.extend(_resource_problems(bus, resource, resources_file, schemas_dir))
    for grant in bus.grants:
        problems.extend(_grant_problems(bus, grant, grants_file))
    return problems
