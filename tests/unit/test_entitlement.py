"""Entitlement changes of the shipped bus, and the per-record resync decisions.

The property test checks the one invariant a resync exists for: a subscriber that
held exactly its old share and applies the decisions holds exactly its new share,
with every key whose view changed sent again.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from syncbus.core.entitlement import (
    CHANGE_KINDS,
    Resync,
    entitlement_changes,
    expiries_between,
    one_grant_bus,
)
from syncbus.core.model import Bus, Grant
from syncbus.core.policy import RoutingTable, UnroutableEvent

NOW = datetime(2026, 6, 1, tzinfo=UTC)
RES = "population.resident"
GUSU, WUXI, NANJING = "320508", "320205", "320102"


def _with(bus: Bus, key: str, **changes: object) -> Bus:
    grants = tuple(dataclasses.replace(g, **changes) if g.key == key else g  # type: ignore[arg-type]
                   for g in bus.grants)
    return dataclasses.replace(bus, grants=grants)


def _without(bus: Bus, key: str) -> Bus:
    return dataclasses.replace(bus, grants=tuple(g for g in bus.grants if g.key != key))


def _change(old: Bus, new: Bus, old_at: datetime = NOW, new_at: datetime = NOW) -> dict:
    return {(c.subscriber, c.resource): c.kinds
            for c in entitlement_changes(old, new, old_at, new_at)}


def _resync(old: Bus, new: Bus, subscriber: str, resend: bool = False,
            old_at: datetime = NOW, new_at: datetime = NOW) -> Resync:
    return Resync(subscriber, RES, RoutingTable(old), RoutingTable(new), old_at, new_at, resend)


def test_no_change_no_resync(bus: Bus) -> None:
    assert entitlement_changes(bus, bus, NOW, NOW) == []


def test_approving_wuxi_sends_its_residents_only(bus: Bus) -> None:
    new = _with(bus, f"city.wuxi/{RES}", state="approved", approved_by="js-gaj")
    assert _change(bus, new) == {("city.wuxi", RES): ("approved",)}
    resync = _resync(bus, new, "city.wuxi")
    assert resync.decide("CREATE", WUXI) == "SNAPSHOT"
    assert resync.decide("UPDATE", WUXI) == "SNAPSHOT"
    assert resync.decide("CREATE", NANJING) is None
    assert resync.decide("DELETE", WUXI) is None  # a deleted key is in no share


def test_revoked_and_removed_and_expired(bus: Bus) -> None:
    revoked = _without(bus, f"city.suzhou/{RES}")
    assert _change(bus, revoked) == {("city.suzhou", RES): ("revoked",)}
    assert _resync(bus, revoked, "city.suzhou").decide("CREATE", GUSU) == "DELETE"
    subscribers = {k: v for k, v in bus.subscribers.items() if k != "district.xuanwu"}
    gone = dataclasses.replace(_without(bus, f"district.xuanwu/{RES}"), subscribers=subscribers)
    assert _change(bus, gone)[("district.xuanwu", RES)] == ("subscriber removed",)
    gusu = next(g for g in bus.grants if g.key == f"district.gusu/{RES}")
    assert gusu.expires is not None
    before, after = gusu.expires - timedelta(seconds=1), gusu.expires + timedelta(seconds=1)
    assert ("district.gusu", RES) in {
        (c.subscriber, c.resource) for c in expiries_between(bus, before, after)}
    assert _change(bus, bus, before, after)[("district.gusu", RES)] == ("expired",)
    expired = _resync(bus, bus, "district.gusu", old_at=before, new_at=after)
    assert expired.decide("CREATE", GUSU) == "DELETE"
    assert expiries_between(bus, NOW, NOW + timedelta(days=1)) == []


def test_scope_narrowed_and_widened(bus: Bus) -> None:
    narrowed = _with(bus, f"city.suzhou/{RES}", regions=(GUSU,))
    assert _change(bus, narrowed) == {("city.suzhou", RES): ("scope narrowed",)}
    resync = _resync(bus, narrowed, "city.suzhou")
    assert resync.decide("CREATE", "320506") == "DELETE"  # Wuzhong: outside Gusu
    assert resync.decide("CREATE", GUSU) is None  # kept, same view
    widened = _resync(narrowed, bus, "city.suzhou")
    assert _change(narrowed, bus) == {("city.suzhou", RES): ("scope widened",)}
    assert widened.decide("CREATE", "320506") == "SNAPSHOT"
    assert widened.decide("CREATE", GUSU) is None


def test_what_live_routing_passed_under_the_new_grant_is_retracted(bus: Bus) -> None:
    """A key held under the old grant whose latest record (a DELETE, or a move out of a
    region the subscriber loses) live routing passed under the new grant: nobody told
    the subscriber, so the resync does (found by the sink property test)."""
    narrowed = _with(bus, f"city.suzhou/{RES}", regions=(GUSU,))
    resync = _resync(bus, narrowed, "city.suzhou")
    assert resync.decide("DELETE", "320506") == "DELETE"  # deleted in Wuzhong
    assert resync.decide("UPDATE", WUXI, before_region="320506") == "DELETE"  # moved away
    assert resync.decide("UPDATE", GUSU, before_region="320506") is None  # moved into Gusu
    assert resync.decide("DELETE", NANJING) is None  # never Suzhou's
    assert resync.decide("UPDATE", WUXI, before_region=NANJING) is None


def test_clearance_and_masks_resend_the_view(bus: Bus) -> None:
    lowered = _with(bus, f"city.nanjing/{RES}", clearance="L1")
    changes = entitlement_changes(bus, lowered, NOW, NOW)
    assert [c.kinds for c in changes] == [("clearance lowered",)]
    assert changes[0].resends_view
    resync = _resync(bus, lowered, "city.nanjing", resend=changes[0].resends_view)
    assert resync.decide("CREATE", NANJING) == "SNAPSHOT"
    assert resync.decide("CREATE", GUSU) is None
    masked = _with(bus, f"city.nanjing/{RES}", masks=MappingProxyType({"phone": "drop"}))
    assert _change(bus, masked) == {("city.nanjing", RES): ("masks changed",)}
    raised = _with(bus, f"city.nanjing/{RES}", clearance="L3")
    assert _change(bus, raised) == {("city.nanjing", RES): ("clearance raised",)}


def test_a_record_without_region_is_refused(bus: Bus) -> None:
    with pytest.raises(UnroutableEvent, match="no region"):
        _resync(bus, bus, "city.nanjing").decide("CREATE", None)


def test_one_grant_bus_keeps_only_that_grant(bus: Bus) -> None:
    grant = next(g for g in bus.grants if g.key == f"city.nanjing/{RES}")
    assert one_grant_bus(bus, grant).grants == (grant,)
    assert one_grant_bus(bus, None).grants == ()


REGIONS = ("320102", "320104", "320205", "320211", "320506", "320508", "320582", "321002")
SCOPES = ((), ("320500",), ("320508",), ("320200", "320500"), ("320000",), ("320100",))


def _random_grant(rng: random.Random, subscriber: str) -> Grant | None:
    if rng.random() < 0.2:
        return None
    return Grant(
        subscriber, RES, rng.choice(("L1", "L2", "L3", "L4")),
        MappingProxyType({"phone": "drop"} if rng.random() < 0.3 else {}),
        rng.choice(SCOPES), "js-gaj" if rng.random() < 0.8 else None,
        NOW + timedelta(hours=rng.choice((-1, 1, 5))) if rng.random() < 0.3 else None,
        "", "approved" if rng.random() < 0.85 else "pending",
    )


def _share(bus: Bus, subscriber: str, records: dict[str, str], at: datetime) -> set[str]:
    """Keys routed to ``subscriber``: asked of the live routing table, the oracle."""
    table = RoutingTable(bus)
    return {k for k, region in records.items()
            if any(d.grant.subscriber == subscriber
                   for d in table.route(RES, "CREATE", region, None, at))}


def _views(bus: Bus, subscriber: str, at: datetime) -> tuple[str, dict[str, str]] | None:
    grant = next((g for g in RoutingTable(bus).effective(RES, at) if g.subscriber == subscriber),
                 None)
    return None if grant is None else (grant.clearance, dict(grant.masks))


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    SEEDS = st.integers(min_value=0, max_value=2**32)
except ImportError:  # hypothesis is a test extra; fall back to seeded random cases
    given = None


def _check_one(seed: int, bus: Bus) -> None:
    rng = random.Random(seed)
    subscribers = ("city.suzhou", "city.wuxi", "city.nanjing")
    old_grants = {s: _random_grant(rng, s) for s in subscribers}
    new_grants = {s: (old_grants[s] if rng.random() < 0.3 else _random_grant(rng, s))
                  for s in subscribers}
    base = dataclasses.replace(bus, grants=tuple(g for g in bus.grants if g.resource != RES))
    old = dataclasses.replace(base, grants=base.grants + tuple(
        g for g in old_grants.values() if g is not None))
    new = dataclasses.replace(base, grants=base.grants + tuple(
        g for g in new_grants.values() if g is not None))
    old_at = NOW
    new_at = NOW + timedelta(hours=rng.choice((0, 2, 10)))
    records = {f"k{i}": rng.choice(REGIONS) for i in range(30)}
    changes = {c.subscriber: c for c in entitlement_changes(old, new, old_at, new_at)}
    for subscriber in subscribers:
        held = _share(old, subscriber, records, old_at)
        wanted = _share(new, subscriber, records, new_at)
        view_changed = (_views(old, subscriber, old_at) != _views(new, subscriber, new_at)
                        and held and wanted)
        change = changes.get(subscriber)
        if change is None:  # no change reported: the share and its view are the same
            assert held == wanted and not view_changed, (seed, subscriber)
            continue
        assert set(change.kinds) <= set(CHANGE_KINDS)
        resync = Resync(subscriber, RES, RoutingTable(old), RoutingTable(new), old_at, new_at,
                        change.resends_view)
        sent: set[str] = set()
        copy = set(held)
        for key, region in records.items():
            decision = resync.decide("CREATE", region)
            if decision == "SNAPSHOT":
                copy.add(key)
                sent.add(key)
            elif decision == "DELETE":
                copy.discard(key)
        assert copy == wanted, (seed, subscriber, change.kinds)
        assert wanted - held <= sent  # every newly entitled key arrives
        if change.resends_view:
            assert sent == wanted  # a new view: every key of the share again


if given is not None:

    @settings(max_examples=300, deadline=None)
    @given(seed=SEEDS)
    def test_decisions_turn_the_old_share_into_the_new(seed: int) -> None:
        from tests.unit.conftest import SCHEMAS, STREAMS

        from syncbus.core.catalog import load_bus

        global _BUS
        if _BUS is None:
            _BUS = load_bus(STREAMS, SCHEMAS)
        _check_one(seed, _BUS)

else:

    def test_decisions_turn_the_old_share_into_the_new(bus: Bus) -> None:
        for seed in range(300):
            _check_one(seed, bus)


_BUS: Bus | None = None
