"""``syncbus apply`` on a secure broker: SCRAM users and ACLs as ``streams/`` says.

The rights themselves are derived by the pure ``syncbus.core.access``; this module
only reads what the broker has and changes it: users missing on the broker are
created with the password of the secrets file (generated and written there, mode
0600, when it has none), users of principals gone from ``streams/`` are deleted,
ACLs are added and removed until the broker's set equals the derived one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding as KafkaAcl,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from syncbus.core.access import ADMIN, AclBinding, AclChanges, acl_bindings, acl_changes, principals
from syncbus.core.model import Bus
from syncbus.credentials import generate_password, read_secrets, write_secrets

ITERATIONS = 8192
TIMEOUT_S = 30.0
_TYPES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
          "transactional_id": ResourceType.TRANSACTIONAL_ID}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS = {"read": AclOperation.READ, "write": AclOperation.WRITE,
               "describe": AclOperation.DESCRIBE, "create": AclOperation.CREATE,
               "describe_configs": AclOperation.DESCRIBE_CONFIGS}


@dataclass
class SecurityReport:
    users_created: list[str] = field(default_factory=list)
    users_deleted: list[str] = field(default_factory=list)
    passwords_rotated: list[str] = field(default_factory=list)
    unknown_passwords: list[str] = field(default_factory=list)
    acls: AclChanges = field(default_factory=lambda: AclChanges((), ()))

    def lines(self, dry_run: bool = False) -> list[str]:
        verb = "would" if dry_run else "did"
        out = [
            f"users: {verb} create {len(self.users_created)}, delete {len(self.users_deleted)}, "
            f"rotate {len(self.passwords_rotated)}",
            *(f"  + user {u}" for u in self.users_created),
            *(f"  - user {u}" for u in self.users_deleted),
            *(f"  ~ password of {u}" for u in self.passwords_rotated),
            *(f"  WARNING user {u} exists but the secrets file has no password for it; "
              f"issue one with --rotate {u}" for u in self.unknown_passwords),
            f"acls: {verb} add {len(self.acls.add)}, remove {len(self.acls.remove)}",
            *self.acls.lines(),
        ]
        return out


def _to_kafka(binding: AclBinding) -> KafkaAcl:
    return KafkaAcl(_TYPES[binding.resource_type], binding.name, _PATTERNS[binding.pattern],
                    f"User:{binding.principal}", "*", _OPERATIONS[binding.operation],
                    AclPermissionType.ALLOW)


def _from_kafka(acl: KafkaAcl) -> AclBinding | None:
    """Ours when it is an ALLOW for a user, on any host, of a kind we derive; else None."""
    kinds = {v: k for k, v in _TYPES.items()}
    patterns = {v: k for k, v in _PATTERNS.items()}
    operations = {v: k for k, v in _OPERATIONS.items()}
    if (acl.permission_type != AclPermissionType.ALLOW or acl.host != "*"
            or not acl.principal.startswith("User:") or acl.restype not in kinds
            or acl.resource_pattern_type not in patterns or acl.operation not in operations):
        return None
    return AclBinding(acl.principal[len("User:"):], kinds[acl.restype], acl.name,  # type: ignore[arg-type]
                      patterns[acl.resource_pattern_type], operations[acl.operation])  # type: ignore[arg-type]


def current_acls(admin: AdminClient) -> frozenset[AclBinding]:
    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
        AclOperation.ANY, AclPermissionType.ANY,
    )
    found = admin.describe_acls(everything, request_timeout=TIMEOUT_S).result(TIMEOUT_S)
    return frozenset(b for b in map(_from_kafka, found) if b is not None)


def current_users(admin: AdminClient) -> set[str]:
    described = admin.describe_user_scram_credentials(request_timeout=TIMEOUT_S)
    return set(described.result(TIMEOUT_S))  # type: ignore[union-attr]


def _upsert(admin: AdminClient, passwords: dict[str, str]) -> None:
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS)
    alterations: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(u, info, p.encode()) for u, p in passwords.items()
    ]
    for user, future in admin.alter_user_scram_credentials(alterations).items():
        try:
            future.result(TIMEOUT_S)
        except Exception as exc:  # the message of librdkafka never holds the password
            raise RuntimeError(f"cannot set the SCRAM credential of {user}: {exc}") from None


def apply_security(
    admin: AdminClient, bus: Bus, secrets_path: Path, prefix: str = "",
    rotate: tuple[str, ...] = (), dry_run: bool = False, now: datetime | None = None,
) -> SecurityReport:
    """Make users and ACLs follow ``bus``; with ``dry_run`` only report what would change."""
    report = SecurityReport()
    wanted_users = principals(bus)
    unknown = sorted(set(rotate) - set(wanted_users))
    if unknown:
        raise ValueError(f"--rotate {', '.join(unknown)}: not a principal of this bus "
                         f"(principals: {', '.join(sorted(wanted_users))})")
    have_users = current_users(admin)
    passwords = read_secrets(secrets_path)
    report.users_created = sorted(set(wanted_users) - have_users)
    report.users_deleted = sorted(have_users - set(wanted_users) - {ADMIN})
    report.passwords_rotated = sorted(set(rotate) & have_users)
    report.unknown_passwords = sorted(
        u for u in (set(wanted_users) & have_users) - set(rotate) if u not in passwords)
    report.acls = acl_changes(current_acls(admin), acl_bindings(bus, prefix, now))
    if dry_run:
        return report
    issue = {u: passwords.get(u) or generate_password() for u in report.users_created}
    issue.update({u: generate_password() for u in report.passwords_rotated})
    kept = {u: p for u, p in {**passwords, **issue}.items() if u not in report.users_deleted}
    if kept != passwords:
        write_secrets(secrets_path, kept)  # written before the broker has them: never lost
    if issue:
        _upsert(admin, issue)
    if report.users_deleted:
        deletions: list[UserScramCredentialAlteration] = [
            UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512)
            for u in report.users_deleted
        ]
        for future in admin.alter_user_scram_credentials(deletions).values():
            future.result(TIMEOUT_S)
    if report.acls.remove:
        for future in admin.delete_acls(
            [_filter(b) for b in report.acls.remove], request_timeout=TIMEOUT_S
        ).values():
            future.result(TIMEOUT_S)
    if report.acls.add:
        for future in admin.create_acls(
            [_to_kafka(b) for b in report.acls.add], request_timeout=TIMEOUT_S
        ).values():
            future.result(TIMEOUT_S)
    if report.acls.remove or report.acls.add:
        _until_in_force(admin, report.acls.remove, report.acls.add)
    return report


def _until_in_force(admin: AdminClient, removed: Iterable[AclBinding],
                    added: Iterable[AclBinding], timeout: float = TIMEOUT_S) -> None:
    """Return once the broker's authorizer answers with the new ACLs: the controller
    has them when ``delete_acls`` returns, a broker's metadata a moment later, and
    ``apply`` promises that a removed grant is unreadable when it returns."""
    gone, there = set(removed), set(added)
    deadline = time.monotonic() + timeout
    while True:
        now = current_acls(admin)
        if not (gone & now) and there <= now:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker still shows old ACLs after {timeout:.0f} s")
        time.sleep(0.05)


def _filter(binding: AclBinding) -> AclBindingFilter:
    acl = _to_kafka(binding)
    return AclBindingFilter(acl.restype, acl.name, acl.resource_pattern_type, acl.principal,
                            acl.host, acl.operation, acl.permission_type)
