"""The secure broker of the security tests: SASL/SCRAM, ACLs, the shipped bus applied.

One secure broker per test module (``kafka start --secure`` on a free port in a
temp directory: the modules write probes and events to the bus's fixed topic
names); ``syncbus apply`` runs once as the admin and writes every principal's
password into the module's secrets file. Tests log in as any principal with
``secure_kafka.login(name)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncbus import settings
from syncbus.admin.apply import AccessPlan, ApplyReport, apply_bus
from syncbus.connection import Connection
from syncbus.core.access import ADMIN
from syncbus.core.catalog import load_bus
from syncbus.credentials import read_secrets
from syncbus.localkafka import broker
from syncbus.localkafka.secure import admin_password, admin_password_file

REPO = Path(__file__).resolve().parents[2]
LOGIN_ENV = ("SYNCBUS_USER", "SYNCBUS_PASSWORD", "SYNCBUS_PASSWORD_FILE", "SYNCBUS_CONFIG",
             "SYNCBUS_CA_FILE", "SYNCBUS_CREDENTIALS")


@dataclass
class SecureKafka:
    """The session's secure broker, its admin login and the secrets file of its principals."""

    dir: Path
    bootstrap: str
    secrets: Path

    @property
    def admin(self) -> Connection:
        return Connection(self.bootstrap, ADMIN, admin_password(self.dir))

    @property
    def admin_password_file(self) -> Path:
        return admin_password_file(self.dir)

    def login(self, principal: str, password: str | None = None) -> Connection:
        """A connection as ``principal`` (its issued password unless one is given)."""
        issued = read_secrets(self.secrets).get(principal, "")
        return self.admin.as_user(principal, password if password is not None else issued)

    def env(self, principal: str) -> dict[str, str]:
        """The environment a child process logs in with as ``principal``."""
        return {**os.environ, "SYNCBUS_USER": principal,
                "SYNCBUS_CREDENTIALS": str(self.secrets)}

    def apply(self, streams: Path = REPO / "streams", dry_run: bool = False) -> ApplyReport:
        bus = load_bus(streams, REPO / "schemas")
        return apply_bus(bus, self.admin, access=AccessPlan(self.secrets, dry_run=dry_run))


@pytest.fixture(autouse=True)
def _no_user_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's login must not leak into tests."""
    for name in LOGIN_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    directory = tmp_path_factory.mktemp("secure-kafka")
    info, _ = broker.start(directory, 0, Path(settings.get("kafka_cache")), secure_mode=True)
    broker.stop_when_gone(os.getpid(), directory)
    try:
        secure = SecureKafka(directory, info.address, directory / "credentials.json")
        secure.apply()
        yield secure
    finally:
        broker.stop(directory)
