"""Who may do what on the broker: the ACLs that follow from ``streams/``, as pure data.

The ACLs are never written by hand. ``acl_bindings`` derives them from the bus (its
departments, subscribers, resources and grants); ``syncbus apply`` makes the broker's
ACLs equal to them, adding what is missing and removing what no longer follows. The
admin principal that ``apply`` itself uses is a Kafka super user and has no ACLs.

Principals (SASL/SCRAM user names, ``User:<name>`` on the broker):
- one per department (its id): writes only the raw topics of the resources it owns,
  reads ``syncbus.schemas``;
- one per subscriber (its id): reads only ``share.<itself>.<resource>`` of its
  grants in force, writes only ``share.<itself>.dlq``, uses only the consumer group
  named ``<itself>`` or starting ``<itself>.``, reads ``syncbus.schemas`` and the
  policy (the sink finds its resources there: the catalog, never data);
- ``syncbus-router``: reads raw topics and the policy, writes share topics and the
  side topics, reads and writes ``syncbus.resync`` (its resync jobs), owns the
  topics, groups and transactional ids starting ``syncbus-router`` (its Faust app
  id, changelog and assignor topics).
Nobody but the router writes ``syncbus.audit``; nobody but the admin writes
``syncbus.policy``; only the admin reads ``syncbus.quarantine`` and the raw side of
``syncbus.dlq``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from syncbus.core import topics
from syncbus.core.model import Bus

ADMIN = "syncbus-admin"
ROUTER = "syncbus-router"

ResourceType = Literal["topic", "group", "transactional_id"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "describe", "create", "describe_configs"]


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW rule: ``principal`` may ``operation`` on the resource named (prefixed) ``name``."""

    principal: str  # the user name, without "User:"
    resource_type: ResourceType
    name: str
    pattern: Pattern
    operation: Operation

    def describe(self) -> str:
        """A readable line, e.g. ``city.nanjing read topic share.city.nanjing.legal.company``."""
        star = "*" if self.pattern == "prefixed" else ""
        return f"{self.principal} {self.operation} {self.resource_type} {self.name}{star}"


def principals(bus: Bus) -> dict[str, str]:
    """Every principal the bus needs except the admin, with its role."""
    found = {ROUTER: "router"}
    found.update({d: "department" for d in bus.departments})
    found.update({s: "subscriber" for s in bus.subscribers})
    return found


def _topic(
    principal: str, name: str, *ops: Operation, pattern: Pattern = "literal"
) -> set[AclBinding]:
    return {AclBinding(principal, "topic", name, pattern, op) for op in ops}


def _department(bus: Bus, department: str, prefix: str) -> set[AclBinding]:
    rights = _topic(department, prefix + topics.SCHEMAS_TOPIC, "read", "describe")
    for resource in bus.resources.values():
        if resource.owner == department:
            raw = prefix + topics.raw_topic(resource.id)
            rights |= _topic(department, raw, "write", "describe")
    return rights


def _subscriber(bus: Bus, subscriber: str, prefix: str, now: datetime | None) -> set[AclBinding]:
    dlq = prefix + topics.subscriber_dlq_topic(subscriber)
    rights = _topic(subscriber, dlq, "write", "describe")
    rights |= _topic(subscriber, prefix + topics.SCHEMAS_TOPIC, "read", "describe")
    rights |= _topic(subscriber, prefix + topics.POLICY_TOPIC, "read", "describe")
    for grant in bus.grants:
        if grant.subscriber == subscriber and grant.effective(bus.resource(grant.resource), now):
            share = prefix + topics.share_topic(subscriber, grant.resource)
            rights |= _topic(subscriber, share, "read", "describe")
    for name, pattern in ((subscriber, "literal"), (subscriber + ".", "prefixed")):
        rights |= {
            AclBinding(subscriber, "group", name, pattern, op)  # type: ignore[arg-type]
            for op in ("read", "describe")
        }
    return rights


def _router(prefix: str) -> set[AclBinding]:
    rights = _topic(ROUTER, prefix + topics.RAW_PREFIX, "read", "describe", pattern="prefixed")
    rights |= _topic(ROUTER, prefix + topics.SHARE_PREFIX, "write", "describe", pattern="prefixed")
    for side in (topics.DLQ_TOPIC, topics.AUDIT_TOPIC, topics.QUARANTINE_TOPIC):
        rights |= _topic(ROUTER, prefix + side, "write", "describe")
    rights |= _topic(ROUTER, prefix + topics.POLICY_TOPIC, "read", "describe")
    rights |= _topic(ROUTER, prefix + topics.SCHEMAS_TOPIC, "read", "write", "describe")
    # its resync jobs and their progress: written and read back after a restart
    rights |= _topic(ROUTER, prefix + topics.RESYNC_TOPIC, "read", "write", "describe")
    # its own Faust topics (changelog, assignor), groups and transactional ids
    rights |= _topic(ROUTER, ROUTER, "read", "write", "describe", "create", "describe_configs",
                     pattern="prefixed")
    rights |= {AclBinding(ROUTER, "group", ROUTER, "prefixed", op) for op in ("read", "describe")}
    rights |= {
        AclBinding(ROUTER, "transactional_id", ROUTER, "prefixed", op)
        for op in ("write", "describe")
    }
    return rights


def acl_bindings(bus: Bus, prefix: str = "", now: datetime | None = None) -> frozenset[AclBinding]:
    """Every ACL the bus needs, for topic names under ``prefix`` (tests, benchmarks).

    A subscriber may read a share topic only while its grant is in force at ``now``
    (approved by the owner when the resource is conditional, not expired).
    """
    rights = _router(prefix)
    for department in bus.departments:
        rights |= _department(bus, department, prefix)
    for subscriber in bus.subscribers:
        rights |= _subscriber(bus, subscriber, prefix, now)
    return frozenset(rights)


@dataclass(frozen=True)
class AclChanges:
    """What ``apply`` does to the broker's ACLs: add the missing, remove what no longer follows."""

    add: tuple[AclBinding, ...]
    remove: tuple[AclBinding, ...]

    def lines(self) -> list[str]:
        return [*(f"  + {b.describe()}" for b in self.add),
                *(f"  - {b.describe()}" for b in self.remove)]


def acl_changes(current: frozenset[AclBinding], wanted: frozenset[AclBinding]) -> AclChanges:
    """The difference; every ACL of the cluster is apply's (they are never written by hand),
    except any of the admin, which needs none."""
    stale = {b for b in current - wanted if b.principal != ADMIN}
    return AclChanges(tuple(sorted(wanted - current)), tuple(sorted(stale)))
