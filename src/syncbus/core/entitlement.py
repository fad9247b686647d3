"""What a policy change or a grant's expiry changes of a subscriber's share: pure rules.

A share is what ``RoutingTable`` routes to a subscriber; an entitlement change is the
difference between the share under an old bus at one time and under a new bus at a
later time. This module says which (subscriber, resource) pairs changed and how
(``entitlement_changes``), and, for one stored record (the latest state of a key in
a compacted raw topic), whether the subscriber now needs a SNAPSHOT of it in its new
view, a DELETE, or nothing (``Resync.decide``). Who is routed what is asked of
``RoutingTable.route`` and effectiveness of ``Grant.effective`` (through the
table): no second copy of the routing rules lives here, so a resync can never
disagree with live routing.

API:
    CHANGE_KINDS; EntitlementChange(subscriber, resource, kinds, old, new)
        .change -> "approved" | "scope narrowed, clearance lowered" | ...
        .resends_view -> True when every entitled key must be sent again
    effective_grant(table, subscriber, resource, now) -> Grant | None
    entitlement_changes(old, new, old_at, new_at) -> list[EntitlementChange]
    expiries_between(bus, since, until) -> list[EntitlementChange]
    one_grant_bus(bus, grant) -> Bus: the bus with that grant only (or none)
    Resync(subscriber, resource, old_table, new_table, old_at, new_at, resend)
        .decide(op, region, before_region) -> "SNAPSHOT" | "DELETE" | None
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from syncbus.core.model import CLEARANCES, Bus, Grant
from syncbus.core.policy import RoutingTable, UnroutableEvent

CHANGE_KINDS = (
    "approved", "revoked", "expired", "scope widened", "scope narrowed",
    "clearance raised", "clearance lowered", "masks changed", "subscriber added",
    "subscriber removed", "requested",
)
Decision = Literal["SNAPSHOT", "DELETE"] | None


@dataclass(frozen=True)
class EntitlementChange:
    """One subscriber's entitlement to one resource, before and after; ``old`` and
    ``new`` are the grants in force then (None: none), ``kinds`` from CHANGE_KINDS."""

    subscriber: str
    resource: str
    kinds: tuple[str, ...]
    old: Grant | None
    new: Grant | None

    @property
    def change(self) -> str:
        return ", ".join(self.kinds)

    @property
    def resends_view(self) -> bool:
        """The view changed (clearance, masks): keys held stay, but in another form, so
        every key of the new share is sent again, not only the newly entitled ones."""
        return self.old is not None and self.new is not None and (
            self.old.clearance != self.new.clearance or dict(self.old.masks) != dict(self.new.masks)
        )


def effective_grant(
    table: RoutingTable, subscriber: str, resource: str, now: datetime
) -> Grant | None:
    """The subscriber's grant through which ``resource`` flows at ``now``, if any."""
    if resource not in table.bus.resources:
        return None
    return next((g for g in table.effective(resource, now) if g.subscriber == subscriber), None)


def entitlement_changes(
    old: Bus, new: Bus, old_at: datetime, new_at: datetime
) -> list[EntitlementChange]:
    """Every (subscriber, resource) whose share differs between ``old`` at ``old_at`` and
    ``new`` at ``new_at``, sorted; pairs with no grant in force on either side are left out."""
    old_table, new_table = RoutingTable(old), RoutingTable(new)
    pairs = sorted({(g.subscriber, g.resource) for g in (*old.grants, *new.grants)})
    changes = []
    for subscriber, resource in pairs:
        before = effective_grant(old_table, subscriber, resource, old_at)
        after = effective_grant(new_table, subscriber, resource, new_at)
        kinds = _kinds(old, new, before, after, new_at)
        if kinds:
            changes.append(EntitlementChange(subscriber, resource, kinds, before, after))
    return changes


def expiries_between(bus: Bus, since: datetime, until: datetime) -> list[EntitlementChange]:
    """Grants of ``bus`` whose expiry falls in (since, until]: expired with no new policy."""
    return [c for c in entitlement_changes(bus, bus, since, until) if c.kinds == ("expired",)]


def _kinds(
    old: Bus, new: Bus, before: Grant | None, after: Grant | None, new_at: datetime
) -> tuple[str, ...]:
    if before is None and after is None:
        return ()
    if before is None:
        assert after is not None
        return ("subscriber added",) if after.subscriber not in old.subscribers else ("approved",)
    if after is None:
        if before.subscriber not in new.subscribers:
            return ("subscriber removed",)
        same = next((g for g in new.grants if g.key == before.key), None)
        resource = new.resources.get(before.resource)
        if (same is not None and resource is not None and same.expires is not None
                and new_at >= same.expires
                and same.effective(resource, same.expires - timedelta(microseconds=1))):
            return ("expired",)  # in force until its expiry, which has passed
        return ("revoked",)
    kinds = []
    old_scopes = _prefixes(old, before)
    new_scopes = _prefixes(new, after)
    if any(not _covered(p, old_scopes) for p in new_scopes):
        kinds.append("scope widened")
    if any(not _covered(p, new_scopes) for p in old_scopes):
        kinds.append("scope narrowed")
    rank_before, rank_after = CLEARANCES.index(before.clearance), CLEARANCES.index(after.clearance)
    if rank_after > rank_before:
        kinds.append("clearance raised")
    elif rank_after < rank_before:
        kinds.append("clearance lowered")
    if dict(before.masks) != dict(after.masks):
        kinds.append("masks changed")
    return tuple(kinds)


def _prefixes(bus: Bus, grant: Grant) -> tuple[str, ...]:
    from syncbus.core.regions import scope_prefix  # loads stdnum's region data: only here

    return tuple(scope_prefix(s) for s in bus.scopes(grant))


def _covered(prefix: str, scopes: tuple[str, ...]) -> bool:
    return any(prefix.startswith(s) for s in scopes)


def one_grant_bus(bus: Bus, grant: Grant | None) -> Bus:
    """``bus`` with ``grant`` as its only grant (none when None): what a resync routes
    under, so the engine compiles and delivers for that one subscriber only."""
    return dataclasses.replace(bus, grants=() if grant is None else (grant,))


@dataclass
class Resync:
    """The decision per stored record for one (subscriber, resource) between two views.

    ``old_table`` at ``old_at`` is what the subscriber was routed, ``new_table`` at
    ``new_at`` what it is routed now; ``resend`` (a view change, a full resync) sends
    a SNAPSHOT of every key of the new share, not only of the newly entitled ones.
    """

    subscriber: str
    resource: str
    old_table: RoutingTable
    new_table: RoutingTable
    old_at: datetime
    new_at: datetime
    resend: bool = False
    _decided: dict[str, Decision] = field(default_factory=dict, init=False, repr=False)
    _old_routes: dict[str, bool] = field(default_factory=dict, init=False, repr=False)
    _new_routes: dict[str, bool] = field(default_factory=dict, init=False, repr=False)

    def decide(self, op: str, region: str | None, before_region: str | None = None) -> Decision:
        """SNAPSHOT, DELETE or nothing for a key whose latest record is (``op``, ``region``),
        ``before_region`` being where that record says the key was before (a move).

        The subscriber holds what live routing sent it: records up to the job's
        watermark were routed under the old grant or, in the moment between the
        switch and the watermark, under the new one. So a key whose latest record is a
        DELETE or a move out of the old scope may still be held, if live routing
        passed that record under the new grant, which no longer covered the region the
        key left: it gets a DELETE (a second one is harmless: deletes are idempotent).
        Raises ``UnroutableEvent`` for a record with no region. The answers depend on
        the regions alone (the times are fixed), so they are remembered.
        """
        if op == "HEARTBEAT":
            return None
        if not region:
            raise UnroutableEvent(f"{op} record of {self.resource} has no region to route on")
        if op == "DELETE":
            return "DELETE" if self._held(region) else None
        decided = self._decided.get(region)
        if decided is None and region not in self._decided:
            decided = self._decided[region] = self._decide(region)
        if decided is None and before_region and before_region != region \
                and self._held(before_region) and not self._entitled(region):
            return "DELETE"
        return decided

    def _decide(self, region: str) -> Decision:
        in_new = self._entitled(region)
        if in_new:
            return "SNAPSHOT" if self.resend or not self._held(region) else None
        return "DELETE" if self._held(region) else None

    def _held(self, region: str) -> bool:
        """Whether the old grant routed a record of ``region`` to the subscriber."""
        found = self._old_routes.get(region)
        if found is None:
            found = self._old_routes[region] = self._routed(self.old_table, region, self.old_at)
        return found

    def _entitled(self, region: str) -> bool:
        found = self._new_routes.get(region)
        if found is None:
            found = self._new_routes[region] = self._routed(self.new_table, region, self.new_at)
        return found

    def _routed(self, table: RoutingTable, region: str, now: datetime) -> bool:
        if self.resource not in table.bus.resources:
            return False
        deliveries = table.route(self.resource, "SNAPSHOT", region, None, now)
        return any(d.grant.subscriber == self.subscriber for d in deliveries)
