"""``syncbus apply``: make the cluster match the bus, like ``kubectl apply``.

Creates the raw, share and side topics, then publishes the policy (the bus and
one record per grant) and every raw event schema. Raw topics are compacted: the
latest record per entity key is that entity's current state, which a resync after
a grant change reads (README, "State and resync"); an existing topic whose
configuration differs from the plan (a raw topic created before compaction) is
switched with an incremental config change and reported. Running it again changes
nothing that already matches: existing topics are reported, unchanged policy and
schema records are not written again, grants removed from ``streams/`` are
tombstoned so the router stops them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from syncbus import settings
from syncbus.admin.compacted import read_compacted
from syncbus.admin.names import TopicNames
from syncbus.admin.security import SecurityReport, apply_security
from syncbus.connection import Connection
from syncbus.core.codec import fingerprint
from syncbus.core.model import Bus
from syncbus.core.policy import GRANT_KEY_PREFIX, policy_records

COMPACTED = {"cleanup.policy": "compact"}


@dataclass(frozen=True)
class AccessPlan:
    """How ``apply`` treats users on a secure broker."""

    secrets_path: Path = field(default_factory=lambda: Path(settings.get("credentials")))
    rotate: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    reconfigured: list[str] = field(default_factory=list)  # "topic: key=value (was ...)"
    policy_written: list[str] = field(default_factory=list)
    schemas_written: list[str] = field(default_factory=list)
    security: SecurityReport | None = None

    def lines(self, dry_run: bool = False) -> list[str]:
        access = (self.security.lines(dry_run) if self.security
                  else ["users and acls: not managed (no login: an open broker)"])
        if dry_run:
            return access
        return [
            f"topics: {len(self.created)} created, {len(self.existing)} existing",
            *(f"  created {name}" for name in self.created),
            *(f"  reconfigured {line}" for line in self.reconfigured),
            *(f"  WARNING {line}" for line in self.mismatched),
            f"policy: {len(self.policy_written)} records written",
            f"schemas: {len(self.schemas_written)} written",
            *access,
        ]


def topic_plan(bus: Bus, names: TopicNames, partitions: int) -> list[TopicSpec]:
    """Every topic the bus needs; share topics exist for pending grants too, ready for approval."""
    # compacted: the latest record per entity key is the entity's state (a DELETE stays
    # as its key's last record), read by resyncs; offsets, the versions, survive it
    specs = [TopicSpec(names.raw(r), partitions, dict(COMPACTED)) for r in sorted(bus.resources)]
    for grant in bus.grants:
        resource = bus.resources.get(grant.resource)
        if resource is not None and resource.sharing != "not_shared":
            specs.append(TopicSpec(names.share(grant.subscriber, grant.resource), partitions))
    # each subscriber's own dead letters: one partition, they are rare
    specs += [TopicSpec(names.subscriber_dlq(s), 1) for s in sorted(bus.subscribers)]
    specs += [
        TopicSpec(names.dlq, partitions),
        # raw dead letters for ``syncbus dlq redrive``: only the admin reads it (ACLs);
        # compacted by origin, with room for any raw event plus its metadata
        TopicSpec(names.quarantine, partitions, {**COMPACTED, "max.message.bytes": "4194304"}),
        TopicSpec(names.audit, partitions),
        TopicSpec(names.policy, 1, COMPACTED),
        TopicSpec(names.schemas, 1, COMPACTED),
        # the router's resync jobs and their progress per raw partition (router.resync)
        TopicSpec(names.resync, 1, COMPACTED),
    ]
    return specs


def schema_records(bus: Bus) -> dict[str, bytes]:
    """Every version's raw event schema by fingerprint (16 hex), as the wire contract says."""
    records = {}
    for name in bus.schemas.names():
        for version in bus.schemas.versions(name):
            schema = bus.schemas.event_schema(name, version)
            records[fingerprint(schema).hex()] = json.dumps(schema, ensure_ascii=False).encode()
    return records


def ensure_topics(
    admin: AdminClient, specs: list[TopicSpec], replication: int, report: ApplyReport
) -> None:
    existing = admin.list_topics(timeout=30).topics
    wanted = []
    for spec in specs:
        have = existing.get(spec.name)
        if have is None:
            wanted.append(spec)
            continue
        report.existing.append(spec.name)
        if len(have.partitions) != spec.partitions:
            report.mismatched.append(
                f"{spec.name} has {len(have.partitions)} partitions, the plan says "
                f"{spec.partitions}; partitions are never changed by apply"
            )
    reconfigure(admin, [s for s in specs if s.config and s.name in existing], report)
    if not wanted:
        return
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, replication, config=s.config) for s in wanted]
    )
    for name, future in futures.items():
        try:
            future.result(timeout=60)
            report.created.append(name)
        except TimeoutError:
            raise RuntimeError(f"cannot create topic {name}: the cluster did not answer "
                               "within 60 s (_TIMED_OUT)") from None
        except Exception as exc:  # created concurrently by another apply is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"cannot create topic {name}: {exc}") from exc
            report.existing.append(name)


def reconfigure(admin: AdminClient, specs: list[TopicSpec], report: ApplyReport) -> None:
    """Set on existing topics the configuration values of the plan that differ, one
    incremental change per topic (other settings an operator made are kept)."""
    if not specs:
        return
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    described = admin.describe_configs(resources)
    changes = []
    for spec, resource in zip(specs, resources, strict=True):
        try:
            have = described[resource].result(60)
        except Exception as exc:
            raise RuntimeError(f"cannot describe the configuration of topic {spec.name}: "
                               f"{exc}") from exc
        entries = []
        for key, value in sorted(spec.config.items()):
            old = have[key].value if key in have else None
            if old != value:
                entries.append(ConfigEntry(key, value,
                                           incremental_operation=AlterConfigOpType.SET))
                report.reconfigured.append(f"{spec.name}: {key}={value} (was {old})")
        if entries:
            changes.append(ConfigResource(ConfigResource.Type.TOPIC, spec.name,
                                          incremental_configs=entries))
    if not changes:
        return
    for resource, future in admin.incremental_alter_configs(changes).items():
        try:
            future.result(60)
        except Exception as exc:
            raise RuntimeError(f"cannot change the configuration of topic {resource.name}: "
                               f"{exc}") from exc


def _publish_changes(
    producer: Producer, topic: str, current: dict[str, bytes], wanted: dict[str, bytes | None]
) -> list[str]:
    written = []
    for key, value in wanted.items():
        if value is None and key not in current:
            continue
        if value is not None and current.get(key) == value:
            continue
        producer.produce(topic, key=key.encode(), value=value)
        written.append(key)
    if producer.flush(60) > 0:
        raise RuntimeError(f"records to {topic} not confirmed by the broker within 60 s")
    return written


def cluster_replication(admin: AdminClient) -> int:
    """Copies a new topic keeps: the cluster's own ``default.replication.factor`` (3 on
    ``syncbus kafka start --nodes 3``, 1 on a single node), else one per live broker, at
    most three. Never fewer because a node is down: creating a topic then fails,
    naming the replication, rather than leaving it under-replicated for good."""
    brokers = admin.list_topics(timeout=30).brokers
    if not brokers:
        raise RuntimeError("the cluster lists no live broker")
    resource = ConfigResource(ConfigResource.Type.BROKER, str(next(iter(brokers))))
    try:
        configs = admin.describe_configs([resource])[resource].result(30)
        return max(1, int(configs["default.replication.factor"].value))
    except (KafkaException, KeyError, ValueError, TypeError):  # not allowed to describe it
        return max(1, min(3, len(brokers)))


def apply_bus(
    bus: Bus,
    connection: Connection,
    partitions: int = 3,
    names: TopicNames | None = None,
    replication: int | None = None,
    access: AccessPlan | None = None,
) -> ApplyReport:
    """Create what is missing and publish policy and schemas; safe to run any number of times.

    Logged in (a secure broker), users and ACLs follow the bus too (``access``: where
    the passwords go, which to rotate); a dry run changes nothing and reports only them.
    ``replication`` None: the cluster's (``cluster_replication``).
    """
    names = names or TopicNames()
    report = ApplyReport()
    admin = AdminClient(connection.confluent())
    access = access or AccessPlan()
    if connection.username:
        report.security = apply_security(admin, bus, access.secrets_path, names.prefix,
                                         access.rotate, access.dry_run)
    if access.dry_run:
        return report
    if replication is None:
        replication = cluster_replication(admin)
    ensure_topics(admin, topic_plan(bus, names, partitions), replication, report)
    producer = Producer(connection.confluent(**{"enable.idempotence": True, "acks": "all"}))
    schemas_now = read_compacted(connection, names.schemas)
    report.schemas_written = _publish_changes(
        producer, names.schemas, schemas_now, dict(schema_records(bus))
    )
    policy_now = read_compacted(connection, names.policy)
    wanted: dict[str, bytes | None] = dict(policy_records(bus))
    for key in policy_now:
        if key.startswith(GRANT_KEY_PREFIX) and key not in wanted:
            wanted[key] = None  # a grant removed from streams/: tombstone it
    report.policy_written = _publish_changes(producer, names.policy, policy_now, wanted)
    return report
