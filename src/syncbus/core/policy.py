"""The bus as JSON-able data, for the compacted ``syncbus.policy`` topic.

The router and subscriber SDKs load the live policy from that topic instead of
from files, so the dict carries everything a ``Bus`` holds, schemas included
(domain schemas by name and version, and the envelope). Grants are keyed
``"<subscriber>/<resource>"``; datetimes are ISO 8601 in UTC. ``RoutingTable``
turns that policy into the router's decisions: which grants receive an event,
and whether a region move reaches a subscriber as DELETE, CREATE or UPDATE.

API:
    POLICY_FORMAT: version of this layout
    bus_to_dict(bus) -> dict; bus_from_dict(d) -> Bus
    grant_to_dict(grant) -> dict; grant_from_dict(d) -> Grant
    parse_duration(value) -> seconds; parse_expires(value) -> aware UTC datetime | None
    policy_records(bus) -> {key: bytes}; bus_from_records(records) -> Bus
    Delivery(grant, op); UnroutableEvent; RoutingTable(bus).route(resource, op, region,
        old_region, now) -> list[Delivery]; .effective(resource, now) -> list[Grant]
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
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


def grant_to_dict(grant: Grant) -> dict[str, Any]:
    """A grant as the JSON of its policy record (also a resync job's old and new grant)."""
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
        "grants": {g.key: grant_to_dict(g) for g in bus.grants},
        "schemas": {
            name: {str(v): bus.schemas.get(name, v) for v in bus.schemas.versions(name)}
            for name in bus.schemas.names()
        },
        "envelope": bus.schemas.envelope,
    }


def grant_from_dict(value: Mapping[str, Any]) -> Grant:
    """The inverse of ``grant_to_dict``."""
    fields = dict(value)
    fields["masks"] = MappingProxyType(dict(fields["masks"]))
    fields["regions"] = tuple(fields["regions"])
    fields["expires"] = parse_expires(fields["expires"])
    return Grant(**fields)


def bus_from_dict(data: dict[str, Any]) -> Bus:
    """The inverse of ``bus_to_dict``; raises ValueError on an unknown format."""
    if data.get("format") != POLICY_FORMAT:
        raise ValueError(f"unknown policy format {data.get('format')!r}")
    resources = {}
    for key, value in data["resources"].items():
        fields = dict(value)
        fields["sla"] = Sla(**fields["sla"])
        resources[key] = Resource(**fields)
    grants = [grant_from_dict(value) for value in data["grants"].values()]
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


BUS_KEY = "bus"
GRANT_KEY_PREFIX = "grant/"


def policy_records(bus: Bus) -> dict[str, bytes]:
    """The records of the compacted policy topic: the whole bus, and one per grant.

    A grant change is then one small record; readers overlay grant records on the
    bus record (``bus_from_records``), so either may arrive first.
    """
    data = bus_to_dict(bus)
    records = {BUS_KEY: json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")}
    for key, grant in data["grants"].items():
        records[GRANT_KEY_PREFIX + key] = json.dumps(grant, sort_keys=True).encode("utf-8")
    return records


def bus_from_records(records: Mapping[str, bytes | None]) -> Bus:
    """The bus the policy topic holds; a ``None`` value (tombstone) removes a grant.

    Raises ValueError when there is no bus record (``syncbus apply`` never ran).
    """
    raw = records.get(BUS_KEY)
    if raw is None:
        raise ValueError("the policy topic holds no bus record: run `syncbus apply` first")
    data = json.loads(raw)
    grants = dict(data["grants"])
    for key, value in records.items():
        if not key.startswith(GRANT_KEY_PREFIX):
            continue
        grant_key = key[len(GRANT_KEY_PREFIX) :]
        if value is None:
            grants.pop(grant_key, None)
        else:
            grants[grant_key] = json.loads(value)
    data["grants"] = grants
    return bus_from_dict(data)


# --- routing decisions: who receives an event, and as which operation ---------------


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One subscriber receiving one event under ``grant``, as operation ``op``.

    ``key`` is ``grant.key`` computed once, when the decision is made: routers
    look grants up by it for every delivery.
    """

    grant: Grant
    op: str
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.grant.key)


class UnroutableEvent(ValueError):
    """An event the policy cannot place (unknown resource, missing region); dead-lettered."""


class RoutingTable:
    """The bus's routing decisions, compiled once per policy version.

    Grants that can never deliver (pending, unapproved conditional, not_shared)
    are left out at compile time; expiry is checked per call against ``now``, so
    an expired grant stops without any new policy record. A grant's scope is its
    regions, else its subscriber's region, compared by prefix (``covers``).
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._grants: dict[str, tuple[tuple[Grant, tuple[str, ...]], ...]] = {}
        dawn = datetime.min.replace(tzinfo=UTC)  # expiry is checked per event, not here
        for resource in bus.resources.values():
            live = []
            for grant in bus.grants_for(resource.id):
                if grant.subscriber in bus.subscribers and grant.effective(resource, dawn):
                    prefixes = tuple(_scope_prefix(scope) for scope in bus.scopes(grant))
                    live.append((grant, prefixes))
            self._grants[resource.id] = tuple(live)
        self._decided: dict[tuple[str, str, str | None, str | None], _Decision] = {}

    def effective_ignoring_expiry(self, resource_id: str) -> list[Grant]:
        """Grants that deliver until they expire: the ones worth preparing views for."""
        return [g for g, _ in self._live(resource_id)]

    def effective(self, resource_id: str, now: datetime) -> list[Grant]:
        """Grants on a resource through which data flows at ``now``."""
        return [g for g, _ in self._live(resource_id) if g.expires is None or now < g.expires]

    def _live(self, resource_id: str) -> tuple[tuple[Grant, tuple[str, ...]], ...]:
        try:
            return self._grants[resource_id]
        except KeyError:
            raise UnroutableEvent(f"resource {resource_id!r} is not in the bus policy") from None

    def route(
        self,
        resource_id: str,
        op: str,
        region: str | None,
        old_region: str | None,
        now: datetime,
    ) -> list[Delivery]:
        """Deliveries of one event; a region move splits into DELETE / CREATE / UPDATE.

        The answer depends on the event only through (resource, op, region, old
        region), a small set, so it is decided once and reused until the next grant
        expiry; the list returned is shared and must not be changed.
        """
        cache_key = (resource_id, op, region, old_region)
        decided = self._decided.get(cache_key)
        if decided is not None and decided.since <= now < decided.until:
            return decided.deliveries
        deliveries = self._decide(resource_id, op, region, old_region, now)
        if len(self._decided) >= _MAX_DECISIONS:
            self._decided.clear()
        until = min(
            (g.expires for g, _ in self._live(resource_id) if g.expires and g.expires > now),
            default=_FOREVER,
        )
        self._decided[cache_key] = _Decision(deliveries, now, until)
        return deliveries

    def _decide(
        self,
        resource_id: str,
        op: str,
        region: str | None,
        old_region: str | None,
        now: datetime,
    ) -> list[Delivery]:
        live = self._live(resource_id)
        if op == "HEARTBEAT":
            return [Delivery(g, op) for g in self.effective(resource_id, now)]
        if not region:
            raise UnroutableEvent(f"{op} event of {resource_id} has no region to route on")
        old = old_region or ""
        moved = op == "UPDATE" and bool(old) and old != region
        deliveries = []
        for grant, prefixes in live:
            if grant.expires is not None and now >= grant.expires:
                continue
            in_new = any(region.startswith(p) for p in prefixes)
            if not moved:
                if in_new:
                    deliveries.append(Delivery(grant, op))
                continue
            in_old = any(old.startswith(p) for p in prefixes)
            if in_new and in_old:
                deliveries.append(Delivery(grant, "UPDATE"))
            elif in_old:
                deliveries.append(Delivery(grant, "DELETE"))
            elif in_new:
                deliveries.append(Delivery(grant, "CREATE"))
        return deliveries


_MAX_DECISIONS = 65536  # (resource, op, region, old region) tuples; GB/T 2260 has ~3,200 codes
_FOREVER = datetime.max.replace(tzinfo=UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class _Decision:
    """A routing answer and the span of time in which no grant expiry changes it."""

    deliveries: list[Delivery]
    since: datetime
    until: datetime


def _scope_prefix(scope: str) -> str:
    # imported here: regions loads python-stdnum's database, which the policy JSON code never needs
    from syncbus.core.regions import scope_prefix

    return scope_prefix(scope)
