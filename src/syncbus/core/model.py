"""The catalog as values: departments, subscribers, resources, grants, the bus.

Everything is frozen: the router swaps a whole new ``Bus`` in when the policy
topic changes instead of mutating one under its feet. Effectiveness of a grant
(``Grant.effective``) is defined here once so the router, ``syncbus apply`` and
the tests agree on it.

API:
    LEVELS, SHARING, VERTICALS, STATES, CLEARANCES
    Department(id, name, level, region); Subscriber(id, name, level, region)
    Sla(latency_p99_seconds, completeness, freshness_seconds)
    Resource(id, owner, schema, key_field, region_field, sharing, legal_basis,
             vertical, update_cycle_seconds, sla)
    Grant(subscriber, resource, clearance, masks, regions, approved_by, expires,
          purpose, state); .key -> "subscriber/resource"; .effective(resource, now)
    Bus(departments, subscribers, resources, grants, schemas)
        .resource(id) / .department(id) / .subscriber(id) raise UnknownId (a KeyError)
        .grants_for(resource_id) -> tuple[Grant, ...]
        .effective_grants(resource_id, now=None) -> tuple[Grant, ...]
        .scopes(grant) -> tuple[str, ...]  region codes the grant covers
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

from syncbus.core.schemas import SchemaRepository

Level = Literal["national", "province", "city", "county"]
Sharing = Literal["unconditional", "conditional", "not_shared"]
Vertical = Literal["national", "provincial"]
State = Literal["approved", "pending"]

LEVELS: tuple[Level, ...] = ("national", "province", "city", "county")
SHARING: tuple[Sharing, ...] = ("unconditional", "conditional", "not_shared")
VERTICALS: tuple[Vertical, ...] = ("national", "provincial")
STATES: tuple[State, ...] = ("approved", "pending")
CLEARANCES = ("L1", "L2", "L3", "L4")


class UnknownId(KeyError):
    """An id the bus does not declare; str() names the kind and the id."""

    def __init__(self, kind: str, id_: str) -> None:
        super().__init__(id_)
        self.kind = kind
        self.id = id_

    def __str__(self) -> str:
        return f"unknown {self.kind} {self.id!r}"


@dataclass(frozen=True, slots=True)
class Department:
    id: str
    name: str
    level: Level
    region: str


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: str
    name: str
    level: Level
    region: str


@dataclass(frozen=True, slots=True)
class Sla:
    latency_p99_seconds: float
    completeness: float
    freshness_seconds: float


@dataclass(frozen=True, slots=True)
class Resource:
    id: str
    owner: str
    schema: str
    key_field: str
    region_field: str
    sharing: Sharing
    legal_basis: str | None
    vertical: Vertical | None
    update_cycle_seconds: float
    sla: Sla


@dataclass(frozen=True, slots=True)
class Grant:
    """A subscriber's right to a resource; ``regions`` empty means its own region."""

    subscriber: str
    resource: str
    clearance: str
    masks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    regions: tuple[str, ...] = ()
    approved_by: str | None = None
    expires: datetime | None = None
    purpose: str = ""
    state: State = "approved"

    @property
    def key(self) -> str:
        return f"{self.subscriber}/{self.resource}"

    def effective(self, resource: Resource, now: datetime | None = None) -> bool:
        """Whether data flows under this grant now (see docs/architecture.md, Routing)."""
        if resource.sharing == "not_shared" or self.state != "approved":
            return False
        if resource.sharing == "conditional" and self.approved_by != resource.owner:
            return False
        if self.expires is None:
            return True
        return (now or datetime.now(UTC)) < self.expires


@dataclass(frozen=True)
class Bus:
    """A whole, checked bus definition; build it with ``catalog.load_bus``."""

    departments: Mapping[str, Department]
    subscribers: Mapping[str, Subscriber]
    resources: Mapping[str, Resource]
    grants: tuple[Grant, ...]
    schemas: SchemaRepository
    _by_resource: dict[str, tuple[Grant, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        index: dict[str, list[Grant]] = {}
        for grant in self.grants:
            index.setdefault(grant.resource, []).append(grant)
        object.__setattr__(self, "_by_resource", {k: tuple(v) for k, v in index.items()})

    def resource(self, resource_id: str) -> Resource:
        try:
            return self.resources[resource_id]
        except KeyError:
            raise UnknownId("resource", resource_id) from None

    def department(self, department_id: str) -> Department:
        try:
            return self.departments[department_id]
        except KeyError:
            raise UnknownId("department", department_id) from None

    def subscriber(self, subscriber_id: str) -> Subscriber:
        try:
            return self.subscribers[subscriber_id]
        except KeyError:
            raise UnknownId("subscriber", subscriber_id) from None

    def grants_for(self, resource_id: str) -> tuple[Grant, ...]:
        """Every declared grant on a resource, effective or not, in file order."""
        return self._by_resource.get(resource_id, ())

    def effective_grants(self, resource_id: str, now: datetime | None = None) -> tuple[Grant, ...]:
        resource = self.resource(resource_id)
        return tuple(g for g in self.grants_for(resource_id) if g.effective(resource, now))

    def scopes(self, grant: Grant) -> tuple[str, ...]:
        """Region codes whose records the grant delivers."""
        return grant.regions or (self.subscriber(grant.subscriber).region,)
