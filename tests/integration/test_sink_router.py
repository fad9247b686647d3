"""The Gusu -> Xuanwu move through the real bus: ``syncbus apply`` and ``syncbus router``
processes, the Publisher SDK, and ``syncbus sink`` processes for four subscribers.
Afterwards Nanjing's and Xuanwu's databases hold the resident and Suzhou's and Gusu's
do not, on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.fake import make_record
from syncbus.publisher import Publisher
from syncbus.subscriber import SqlStore
from tests.router_helpers import RouterProcess
from tests.subscriber_helpers import REPO

pytestmark = pytest.mark.slow
RES = "population.resident"
# events each subscriber receives: the mover's arrival or (CREATE, DELETE), plus a
# resident who stays in Gusu for the Suzhou side
EXPECTED = {"city.nanjing": 1, "district.xuanwu": 1, "city.suzhou": 3, "district.gusu": 3}


def syncbus(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncbus", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def moved(bus_kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Apply the bus, start a router, publish the move; yields the mover's records."""
    done = syncbus("apply", "--bootstrap", bus_kafka.bootstrap, "--partitions", "3")
    assert done.returncode == 0, done.stderr
    router = RouterProcess(bus_kafka.bootstrap, tmp_path_factory.mktemp("router")).start()
    bus = load_bus(REPO / "streams", REPO / "schemas")
    before = make_record(RES, region="320508", seed=31)
    after = dict(before, region="320102", address="南京市玄武区中山路1号")
    stays = make_record(RES, region="320508", seed=32)
    spool = tmp_path_factory.mktemp("spool") / "gaj.db"
    with Publisher("js-gaj", bus, Connection(bus_kafka.bootstrap), spool_path=spool) as pub:
        pub.publish(RES, "CREATE", after=before)
        pub.publish(RES, "CREATE", after=stays)
        pub.publish(RES, "UPDATE", before=before, after=after)
        assert pub.flush(60) == 0
    try:
        yield {"before": before, "after": after, "stays": stays}
    finally:
        router.stop()


def sink_all(bootstrap: str, urls: dict[str, str], kind: str, idle: bool = False) -> None:
    """One ``syncbus sink`` process per subscriber, all at once; Xuanwu's takes its
    resources from the live policy. ``idle``: run again until 5 s without events and
    expect nothing more (no stray delivery after the expected ones)."""
    procs = {}
    for sub, url in urls.items():
        resource = [] if sub == "district.xuanwu" else ["--resource", RES]
        limits = ["--timeout", "5"] if idle else ["--max", str(EXPECTED[sub]), "--timeout", "90"]
        command = ["sink", "--as", sub, "--to", url, *resource, *limits]
        command += ["--group", f"{sub}.sink-{kind}", "--bootstrap", bootstrap]
        procs[sub] = subprocess.Popen(
            [sys.executable, "-m", "syncbus", *command],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for sub, proc in procs.items():
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{sub}: {err[-2000:]}"
        applied = 0 if idle else EXPECTED[sub]
        assert f"applied {applied} events" in err, f"{sub}: {err[-2000:]}"


def regions(url: str) -> list[str]:
    store = SqlStore.open(url)
    try:
        found = [r[0] for r in store.execute("SELECT region FROM population_resident")]
        store.commit()
        return sorted(found)
    finally:
        store.close()


def check(urls: dict[str, str]) -> None:
    assert regions(urls["city.nanjing"]) == ["320102"]
    assert regions(urls["district.xuanwu"]) == ["320102"]
    assert regions(urls["city.suzhou"]) == ["320508"]  # only the one who stayed
    assert regions(urls["district.gusu"]) == ["320508"]


def test_after_the_move_only_nanjing_and_xuanwu_hold_the_resident_on_sqlite(
    bus_kafka: Any, moved: dict[str, Any], tmp_path: Path
) -> None:
    urls = {sub: f"sqlite:///{tmp_path / (sub + '.db')}" for sub in EXPECTED}
    sink_all(bus_kafka.bootstrap, urls, "sqlite")
    check(urls)
    sink_all(bus_kafka.bootstrap, urls, "sqlite", idle=True)
    check(urls)


def test_after_the_move_only_nanjing_and_xuanwu_hold_the_resident_on_postgresql(
    bus_kafka: Any,
    moved: dict[str, Any],
    postgres_server: Any,
) -> None:
    import psycopg

    urls = {}
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        for sub in EXPECTED:
            name = "move_" + sub.replace(".", "_")
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
            urls[sub] = postgres_server.url(name)
    sink_all(bus_kafka.bootstrap, urls, "postgresql")
    check(urls)
