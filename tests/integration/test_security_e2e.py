"""The bus end to end on a secure broker, each part logged in as its own principal.

``apply`` ran as the admin (fixture); the router runs as ``syncbus-router``; residents
are published as ``js-gaj`` through the Publisher SDK and through ``syncbus publish``;
Nanjing reads through the Subscriber SDK and ``syncbus consume``; Suzhou keeps its
share with ``syncbus sink``. Then the refusals: a department publishing what it does
not own, a subscriber reading another's share, a wrong password, each one line and
exit 2, and no password anywhere in what the commands print.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncbus.core.catalog import load_bus
from syncbus.core.fake import make_record
from syncbus.credentials import read_secrets
from syncbus.publisher import Publisher
from syncbus.sink import table_name
from syncbus.subscriber import Event, Subscriber
from tests.integration.conftest import REPO, SecureKafka
from tests.router_helpers import RouterProcess

pytestmark = pytest.mark.slow
RES = "population.resident"
TIMEOUT_S = 120.0


def syncbus(secure: SecureKafka, user: str, *args: str,
            env: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncbus", *args, "--bootstrap", secure.bootstrap],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, input=stdin,
        env=env or secure.env(user),
    )


@pytest.fixture(scope="module")
def routed(secure_kafka: SecureKafka, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """A router as its principal, and residents published as js-gaj (SDK and CLI): two in
    Xuanwu (Nanjing), one who stays in Gusu (Suzhou), one who moves from Gusu to Xuanwu."""
    workdir = tmp_path_factory.mktemp("router")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in secure_kafka.env("syncbus-router").items():
            patch.setenv(name, value)
        router = RouterProcess(secure_kafka.bootstrap, workdir,
                               app_id=f"syncbus-router-{uuid.uuid4().hex[:8]}").start()
    bus = load_bus(REPO / "streams", REPO / "schemas")
    xuanwu = make_record(RES, region="320102", seed=71)
    gusu = make_record(RES, region="320508", seed=72)
    moved = dict(gusu, region="320102", address="南京市玄武区中山路1号")
    stays = make_record(RES, region="320508", seed=74)
    by_cli = make_record(RES, region="320102", seed=73)
    spool = tmp_path_factory.mktemp("spool")
    try:
        with Publisher("js-gaj", bus, secure_kafka.login("js-gaj"),
                       spool_path=spool / "sdk.db") as publisher:
            publisher.publish(RES, "CREATE", after=xuanwu)
            publisher.publish(RES, "CREATE", after=gusu)
            publisher.publish(RES, "CREATE", after=stays)
            publisher.publish(RES, "UPDATE", before=gusu, after=moved)
            assert publisher.flush(60) == 0
        done = syncbus(secure_kafka, "js-gaj", "publish", "--as", "js-gaj", "--resource", RES,
                       "--spool", str(spool / "cli.db"),
                       stdin=json.dumps({"op": "CREATE", "after": by_cli}, default=str) + "\n")
        assert done.returncode == 0, done.stderr
        yield {"xuanwu": xuanwu, "gusu": gusu, "by_cli": by_cli, "router": router,
               "log": workdir}
    finally:
        router.stop()


def test_subscriber_sdk_receives_its_residents_masked(secure_kafka: SecureKafka,
                                                      routed: dict[str, Any]) -> None:
    received: list[Event] = []
    subscriber = Subscriber("city.nanjing", [RES], connection=secure_kafka.login("city.nanjing"),
                            group_id="city.nanjing.e2e", store=":memory:")
    try:
        subscriber.run(received.append, max_events=3, idle_timeout=TIMEOUT_S)
    finally:
        subscriber.close()
    names = sorted(e.after["name"] for e in received if e.after)
    originals = sorted(routed[r]["name"] for r in ("xuanwu", "by_cli", "gusu"))
    assert len(names) == 3  # the mover arrives in Nanjing
    assert names != originals, "Nanjing's clearance is L2: names arrive masked"
    assert sorted(n[0] for n in names) == sorted(n[0] for n in originals)
    assert {e.region for e in received} == {"320102"}


def test_consume_and_sink_commands_log_in_as_their_subscriber(
    secure_kafka: SecureKafka, routed: dict[str, Any], tmp_path: Path
) -> None:
    shown = syncbus(secure_kafka, "city.nanjing", "consume", "--as", "city.nanjing",
                    "--resource", RES, "--from-beginning", "--max", "3", "--json",
                    "--timeout", "60")
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout.splitlines()) == 3
    database = tmp_path / "suzhou.db"
    sunk = syncbus(secure_kafka, "city.suzhou", "sink", "--as", "city.suzhou",
                   "--to", f"sqlite:///{database}", "--resource", RES, "--max", "3",
                   "--timeout", "60")
    assert sunk.returncode == 0, sunk.stderr
    with sqlite3.connect(database) as db:
        rows = db.execute(f'SELECT count(*) FROM "{table_name(RES)}"').fetchone()
    # the mover arrived, then left as a removal; the one who stays is Suzhou's only row
    assert rows == (1,)


def test_refusals_are_one_line_and_exit_2(secure_kafka: SecureKafka,
                                          routed: dict[str, Any], tmp_path: Path) -> None:
    company = make_record("legal.company", region="320102", seed=5)
    not_owned = syncbus(secure_kafka, "js-gaj", "publish", "--as", "js-gaj",
                        "--resource", "legal.company", "--spool", str(tmp_path / "s.db"),
                        stdin=json.dumps({"op": "CREATE", "after": company}, default=str))
    other_share = syncbus(secure_kafka, "city.nanjing", "consume", "--as", "city.suzhou",
                          "--resource", RES, "--max", "1", "--timeout", "5")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    bad_login = syncbus(secure_kafka, "city.nanjing", "consume", "--as", "city.nanjing",
                        "--resource", RES, "--max", "1", "--timeout", "5",
                        "--user", "city.nanjing", "--password-file", str(wrong))
    expected = {
        "may not write topic raw.legal.company": not_owned,
        "may not read topic share.city.suzhou.population.resident": other_share,
        "authentication failed": bad_login,
    }
    for words, done in expected.items():
        assert done.returncode == 2, (words, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and words in errors[0], done.stderr
        assert secure_kafka.bootstrap in errors[0]


def test_no_password_in_output_or_router_log(secure_kafka: SecureKafka,
                                             routed: dict[str, Any]) -> None:
    passwords = list(read_secrets(secure_kafka.secrets).values())
    passwords.append(secure_kafka.admin.password or "")
    logs = "".join(p.read_text(errors="replace") for p in routed["log"].glob("router-*.log"))
    shown = syncbus(secure_kafka, "syncbus-admin", "apply", "--user", "syncbus-admin",
                    "--password-file", str(secure_kafka.admin_password_file),
                    "--secrets", str(secure_kafka.secrets), "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert routed["router"].alive(), logs[-2000:]
    for password in passwords:
        assert password and password not in logs + shown.stdout + shown.stderr
