"""The bus as JSON-able data, for the compacted ``syncbus.policy`` topic.

The router and subscriber SDKs load the live policy from that topic instead of
from files, so the dict carries everything a ``Bus`` holds, schemas included
(domain schemas by name and version, and the envelope). Grants are keyed
``"<subscriber>/<resource>"``; datetimes are ISO 8601 in UTC.

API:
    POLICY_FORMAT: version of this layout
    bus_to_dict(bus) -> dict; bus_from_dict(d) -> Bus
    parse_duration(value) -> seconds; parse_expires(value) -> aware UTC datetime | None
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any

from syncbus.core.model import Bus, Department, Grant, Resource, Sla, Subscriber
from syncbus.core.schemas import SchemaRepository

POLICY_FORMAT = 1
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"2s"``, ``"15m"``, ``"1h"``, ``"1d"``; positive only."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"not a duration: {value!r} (use seconds or 30s, 15m, 1h, 1d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {value!r}")
    return seconds


def parse_expires(value: Any) -> datetime | None:
    """A date means through that whole day in UTC; naive datetimes are UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = (
                datetime.fromisoformat(value)
                if "T" in value or " " in value
                else (date.fromisoformat(value))
            )
        except ValueError:
            raise ValueError(f"expires {value!r} is not an ISO date or datetime") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value + timedelta(days=1), time(), tzinfo=UTC)
    raise ValueError(f"expires {value!r} is not an ISO date or datetime")


def _grant_to_dict(grant: Grant) -> dict[str, Any]:
    return {
        "subscriber": grant.subscriber,
        "resource": grant.resource,
        "clearance": grant.clearance,
        "masks": dict(grant.masks),
        "regions": list(grant.regions),
        "approved_by": grant.approved_by,
        "expires": grant.expires.isoformat() if grant.expires else None,
        "purpose": grant.purpose,
        "state": grant.state,
    }


def bus_to_dict(bus: Bus) -> dict[str, Any]:
    """Everything of the bus as plain JSON types."""
    return {
        "format": POLICY_FORMAT,
        "departments": {k: dataclasses.asdict(v) for k, v in bus.departments.items()},
        "subscribers": {k: dataclasses.asdict(v) for k, v in bus.subscribers.items()},
        "resources": {k: dataclasses.asdict(v) for k, v in bus.resources.items()},
        "grants": {g.key: _grant_to_dict(g) for g in bus.grants},
        "schemas": {
            name: {str(v): bus.schemas.get(name, v) for v in bus.schemas.versions(name)}
            for name in bus.schemas.names()
        },
        "envelope": bus.schemas.envelope,
    }


def bus_from_dict(data: dict[str, Any]) -> Bus:
    """The inverse of ``bus_to_dict``; raises ValueError on an unknown format."""
    if data.get("format") != POLICY_FORMAT:
        raise ValueError(f"unknown policy format {data.get('format')!r}")
    resources = {}
    for key, value in data["resources"].items():
        fields = dict(value)
        fields["sla"] = Sla(**fields["sla"])
        resources[key] = Resource(**fields)
    grants = []
    for value in data["grants"].values():
        fields = dict(value)
        fields["masks"] = MappingProxyType(dict(fields["masks"]))
        fields["regions"] = tuple(fields["regions"])
        fields["expires"] = parse_expires(fields["expires"])
        grants.append(Grant(**fields))
    domain = {
        (name, int(version)): schema
        for name, versions in data["schemas"].items()
        for version, schema in versions.items()
    }
    return Bus(
        departments={k: Department(**v) for k, v in data["departments"].items()},
        subscribers={k: Subscriber(**v) for k, v in data["subscribers"].items()},
        resources=resources,
        grants=tuple(grants),
        schemas=SchemaRepository(domain, data["envelope"]),
    )
