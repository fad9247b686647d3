"""``syncbus apply`` as the admin of a secure broker: users, passwords and ACLs follow streams/.

Removing a grant from streams/ and running ``apply`` takes the read right away within
that command; a dry run lists the change and makes none; a rotated password stops the
old one from logging in; the secrets file is the owner's alone.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from syncbus.connection import Connection
from syncbus.credentials import read_secrets
from tests.integration.conftest import REPO, SecureKafka

SHARE = "share.city.nanjing.legal.company"
GRANT_LINE = "  - {subscriber: city.nanjing, resource: legal.company,"


def visible(connection: Connection) -> set[str]:
    admin = AdminClient(connection.confluent(log_level=0))
    return set(admin.list_topics(timeout=10).topics)


def logs_in(connection: Connection, within: float = 10.0) -> bool:
    errors: list[object] = []
    admin = AdminClient(connection.confluent(error_cb=errors.append, log_level=0))
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1)
            return True
        except Exception:
            admin.poll(0.1)
            if errors:
                return False
    return False


def apply_cli(secure: SecureKafka, streams: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncbus", "apply", "--bootstrap", secure.bootstrap,
         "--streams", str(streams), "--user", "syncbus-admin",
         "--password-file", str(secure.admin_password_file), "--secrets", str(secure.secrets),
         *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def without_grant(tmp_path: Path) -> Path:
    """streams/ without Nanjing's grant for legal.company."""
    streams = tmp_path / "streams"
    shutil.copytree(REPO / "streams", streams)
    grants = streams / "grants.yaml"
    lines = grants.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(GRANT_LINE)]
    assert len(kept) == len(lines) - 1
    grants.write_text("".join(kept), encoding="utf-8")
    return streams


def test_secrets_file_is_private_and_holds_every_principal(secure_kafka: SecureKafka) -> None:
    mode = stat.S_IMODE(secure_kafka.secrets.stat().st_mode)
    assert mode == 0o600
    issued = set(read_secrets(secure_kafka.secrets))
    assert {"syncbus-router", "js-gaj", "city.nanjing", "mca"} <= issued


def test_removing_a_grant_removes_the_read_right_within_apply(
    secure_kafka: SecureKafka, without_grant: Path
) -> None:
    nanjing = secure_kafka.login("city.nanjing")
    assert SHARE in visible(nanjing)
    dry = apply_cli(secure_kafka, without_grant, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"  - city.nanjing read topic {SHARE}" in dry.stdout.splitlines()
    assert SHARE in visible(nanjing), "a dry run changes nothing"
    done = apply_cli(secure_kafka, without_grant)
    assert done.returncode == 0, done.stderr
    assert SHARE not in visible(nanjing)  # at once: no wait, no retry
    assert "share.city.nanjing.credit.penalty" in visible(nanjing)  # its other grants stay
    again = apply_cli(secure_kafka, REPO / "streams")
    assert again.returncode == 0, again.stderr
    assert SHARE in visible(nanjing)


def test_rotating_a_password_retires_the_old_one(secure_kafka: SecureKafka) -> None:
    old = secure_kafka.login("city.wuxi")
    assert logs_in(old)
    done = apply_cli(secure_kafka, REPO / "streams", "--rotate", "city.wuxi")
    assert done.returncode == 0, done.stderr
    assert "~ password of city.wuxi" in done.stdout
    new = secure_kafka.login("city.wuxi")
    assert new.password != old.password
    assert logs_in(new)
    assert not logs_in(old)
    assert (old.password or "?") not in done.stdout + done.stderr
