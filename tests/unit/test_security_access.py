"""The ACLs derived from the shipped streams/: the rules of the security model, checked as data."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncbus.core.access import ADMIN, ROUTER, AclBinding, acl_bindings, acl_changes, principals
from syncbus.core.catalog import load_bus
from syncbus.core.model import Bus

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def bus() -> Bus:
    return load_bus(REPO / "streams", REPO / "schemas")


def rights(bindings: frozenset[AclBinding], principal: str, operation: str) -> set[str]:
    return {f"{b.resource_type}:{b.name}{'*' if b.pattern == 'prefixed' else ''}"
            for b in bindings if b.principal == principal and b.operation == operation}


def test_every_department_subscriber_and_the_router_is_a_principal(bus: Bus) -> None:
    assert set(principals(bus)) == {ROUTER, *bus.departments, *bus.subscribers}
    assert ADMIN not in principals(bus)


def test_a_department_writes_only_its_own_raw_topics(bus: Bus) -> None:
    bindings = acl_bindings(bus, now=NOW)
    assert rights(bindings, "js-scjgj", "write") == {"topic:raw.legal.company",
                                                     "topic:raw.licence.business"}
    assert rights(bindings, "js-gaj", "read") == {"topic:syncbus.schemas"}


def test_a_subscriber_reads_only_its_grants_in_force(bus: Bus) -> None:
    bindings = acl_bindings(bus, now=NOW)
    wuxi = rights(bindings, "city.wuxi", "read")
    assert "topic:share.city.wuxi.population.resident" not in wuxi  # pending grant
    assert {t for t in wuxi if t.startswith("topic:share.")} == {
        "topic:share.city.wuxi.population.marriage", "topic:share.city.wuxi.legal.company",
        "topic:share.city.wuxi.credit.penalty"}
    assert {"group:city.wuxi", "group:city.wuxi.*"} <= wuxi
    assert rights(bindings, "city.wuxi", "write") == {"topic:share.city.wuxi.dlq"}


def test_an_expired_grant_gives_no_read_right(bus: Bus) -> None:
    later = datetime(2027, 7, 1, tzinfo=UTC)  # Gusu's resident grant expired on 2027-06-30
    assert "topic:share.district.gusu.population.resident" not in rights(
        acl_bindings(bus, now=later), "district.gusu", "read")


def test_only_the_router_writes_audit_and_nobody_writes_the_policy(bus: Bus) -> None:
    bindings = acl_bindings(bus, now=NOW)
    writers = {b.principal for b in bindings if b.operation == "write"
               and b.name in ("syncbus.audit", "syncbus.policy")}
    assert writers == {ROUTER}
    assert "topic:syncbus.policy" not in rights(bindings, ROUTER, "write")
    quarantine_readers = {b.principal for b in bindings if b.name == "syncbus.quarantine"
                          and b.operation == "read"}
    assert quarantine_readers == set()


def test_only_the_router_reads_and_writes_its_resync_jobs(bus: Bus) -> None:
    bindings = acl_bindings(bus, now=NOW)
    users = {b.principal for b in bindings if b.name == "syncbus.resync"}
    assert users == {ROUTER}
    assert "topic:syncbus.resync" in rights(bindings, ROUTER, "read")
    assert "topic:syncbus.resync" in rights(bindings, ROUTER, "write")


def test_changes_add_missing_and_remove_what_no_longer_follows(bus: Bus) -> None:
    before = acl_bindings(bus, now=NOW)
    grants = tuple(g for g in bus.grants
                   if not (g.subscriber == "city.nanjing" and g.resource == "legal.company"))
    after = acl_bindings(replace(bus, grants=grants), now=NOW)
    changes = acl_changes(before, after)
    assert changes.add == ()
    assert {b.describe() for b in changes.remove} == {
        "city.nanjing read topic share.city.nanjing.legal.company",
        "city.nanjing describe topic share.city.nanjing.legal.company"}
    admin_acl = AclBinding(ADMIN, "topic", "x", "literal", "read")
    assert acl_changes(after | {admin_acl}, after).remove == ()


def test_a_topic_prefix_prefixes_every_topic_but_no_group(bus: Bus) -> None:
    bindings = acl_bindings(bus, prefix="t1.", now=NOW)
    topics = {b.name for b in bindings if b.resource_type == "topic"}
    assert all(name.startswith(("t1.", ROUTER)) for name in topics)
