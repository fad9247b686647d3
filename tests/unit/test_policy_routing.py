"""Routing decisions on the shipped bus: scope, backflow, region moves, approval, expiry."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from syncbus.core.catalog import Bus
from syncbus.core.policy import RoutingTable, UnroutableEvent

NOW = datetime(2026, 6, 1, tzinfo=UTC)
RESIDENT = "population.resident"


def receivers(
    table: RoutingTable,
    op: str,
    region: str | None,
    old: str | None = None,
    resource: str = RESIDENT,
    now: datetime = NOW,
) -> dict[str, str]:
    return {d.grant.subscriber: d.op for d in table.route(resource, op, region, old, now)}


def test_each_city_and_district_receives_only_its_own_residents(bus: Bus) -> None:
    table = RoutingTable(bus)
    assert receivers(table, "CREATE", "320508") == {
        "province.jiangsu": "CREATE",
        "city.suzhou": "CREATE",
        "district.gusu": "CREATE",
    }
    assert receivers(table, "CREATE", "320102") == {
        "province.jiangsu": "CREATE",
        "city.nanjing": "CREATE",
        "district.xuanwu": "CREATE",
    }
    # Wuxi's grant is pending: its residents reach only the province
    assert receivers(table, "UPDATE", "320205") == {"province.jiangsu": "UPDATE"}


def test_a_move_is_a_delete_for_the_old_region_and_a_create_for_the_new(bus: Bus) -> None:
    got = receivers(RoutingTable(bus), "UPDATE", "320102", old="320508")
    assert got == {
        "province.jiangsu": "UPDATE",
        "city.suzhou": "DELETE",
        "district.gusu": "DELETE",
        "city.nanjing": "CREATE",
        "district.xuanwu": "CREATE",
    }


def test_a_move_within_one_scope_stays_an_update(bus: Bus) -> None:
    got = receivers(RoutingTable(bus), "UPDATE", "320505", old="320508")
    assert got == {"province.jiangsu": "UPDATE", "city.suzhou": "UPDATE", "district.gusu": "DELETE"}


def test_not_shared_never_leaves_its_owner(bus: Bus) -> None:
    table = RoutingTable(bus)
    assert receivers(table, "CREATE", "320508", resource="health.diagnosis") == {}
    assert receivers(table, "HEARTBEAT", None, resource="health.diagnosis") == {}


def test_national_vertical_flows_back_to_covered_cities(bus: Bus) -> None:
    got = receivers(RoutingTable(bus), "CREATE", "320205", resource="population.marriage")
    assert got == {"province.jiangsu": "CREATE", "city.wuxi": "CREATE"}


def test_grant_regions_widen_the_scope(bus: Bus) -> None:
    got = receivers(RoutingTable(bus), "CREATE", "320205", resource="spatial.parcel")
    assert got == {"province.jiangsu": "CREATE", "city.suzhou": "CREATE"}


def test_an_expired_grant_stops_without_a_new_policy(bus: Bus) -> None:
    table = RoutingTable(bus)
    later = datetime(2027, 7, 2, tzinfo=UTC)  # gusu and xuanwu expire 2027-06-30
    assert "district.gusu" in receivers(table, "CREATE", "320508", now=NOW)
    assert "district.gusu" not in receivers(table, "CREATE", "320508", now=later)
    assert "city.suzhou" in receivers(table, "CREATE", "320508", now=later)


def test_approval_by_the_owner_makes_a_pending_grant_flow(bus: Bus) -> None:
    grants = tuple(
        dataclasses.replace(g, state="approved", approved_by="js-gaj")
        if g.key == "city.wuxi/population.resident"
        else g
        for g in bus.grants
    )
    table = RoutingTable(dataclasses.replace(bus, grants=grants))
    assert receivers(table, "CREATE", "320205") == {
        "province.jiangsu": "CREATE",
        "city.wuxi": "CREATE",
    }


def test_approval_by_anyone_but_the_owner_does_not(bus: Bus) -> None:
    grants = tuple(
        dataclasses.replace(g, state="approved", approved_by="js-xyb")
        if g.key == "city.wuxi/population.resident"
        else g
        for g in bus.grants
    )
    table = RoutingTable(dataclasses.replace(bus, grants=grants))
    assert "city.wuxi" not in receivers(table, "CREATE", "320205")


def test_heartbeats_reach_every_effective_grant(bus: Bus) -> None:
    got = receivers(RoutingTable(bus), "HEARTBEAT", None)
    assert set(got) == {
        "province.jiangsu",
        "city.nanjing",
        "city.suzhou",
        "district.gusu",
        "district.xuanwu",
    }
    later = NOW + timedelta(days=3650)
    assert receivers(RoutingTable(bus), "HEARTBEAT", None, now=later) == {}


def test_unknown_resource_and_missing_region_are_unroutable(bus: Bus) -> None:
    table = RoutingTable(bus)
    with pytest.raises(UnroutableEvent, match=r"population\.nobody"):
        table.route("population.nobody", "CREATE", "320508", None, NOW)
    with pytest.raises(UnroutableEvent, match="no region"):
        table.route(RESIDENT, "CREATE", None, None, NOW)


def test_a_remembered_decision_never_outlives_a_grant_or_runs_backwards(bus: Bus) -> None:
    table = RoutingTable(bus)
    before_expiry = datetime(2027, 6, 29, tzinfo=UTC)  # gusu and xuanwu expire 2027-06-30
    after_expiry = datetime(2027, 7, 2, tzinfo=UTC)
    assert "district.gusu" not in receivers(table, "CREATE", "320508", now=after_expiry)
    assert "district.gusu" in receivers(table, "CREATE", "320508", now=before_expiry)
    assert "district.gusu" in receivers(table, "CREATE", "320508", now=before_expiry)
    assert "district.gusu" not in receivers(table, "CREATE", "320508", now=after_expiry)
