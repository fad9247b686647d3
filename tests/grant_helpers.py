"""The scene of the grant-lifecycle tests (#17): a copy of streams/ that tests edit and
apply, and one long-running ``syncbus sink`` per subscriber whose rows they read."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from syncbus.subscriber import SqlStore
from tests.router_helpers import wait_for
from tests.subscriber_helpers import REPO

RES = "population.resident"
CHANGES = 120  # seconds a grant change may take to reach a sink


class GrantScene:
    """A copy of streams/ to edit and apply, and a long-running ``syncbus sink`` per
    subscriber whose SQLite rows tests read."""

    def __init__(self, bootstrap: str, root: Path) -> None:
        self.bootstrap, self.root = bootstrap, root
        self.streams = root / "streams"
        shutil.copytree(REPO / "streams", self.streams)
        self.sinks: dict[str, subprocess.Popen[bytes]] = {}
        self.published: dict[str, list[dict[str, Any]]] = {}

    def grants(self) -> list[dict[str, Any]]:
        return list(yaml.safe_load((self.streams / "grants.yaml").read_text())["grants"])

    def edit_grant(self, subscriber: str, **changes: Any) -> None:
        """Change one population.resident grant (a None value removes the field), apply."""
        grants = self.grants()
        (grant,) = [g for g in grants if g["subscriber"] == subscriber and g["resource"] == RES]
        for name, value in changes.items():
            if value is None:
                grant.pop(name, None)
            else:
                grant[name] = value
        text = yaml.safe_dump({"grants": grants}, allow_unicode=True, sort_keys=False)
        (self.streams / "grants.yaml").write_text(text)
        self.apply()

    def apply(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "syncbus", "apply", "--bootstrap", self.bootstrap,
             "--streams", str(self.streams), "--partitions", "3"],
            cwd=REPO, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stderr

    def start_sink(self, subscriber: str) -> None:
        log = open(self.root / f"sink-{subscriber}.log", "ab")  # noqa: SIM115
        self.sinks[subscriber] = subprocess.Popen(
            [sys.executable, "-m", "syncbus", "sink", "--as", subscriber, "--to",
             f"sqlite:///{self.database(subscriber)}", "--resource", RES,
             "--bootstrap", self.bootstrap],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
        )

    def database(self, subscriber: str) -> Path:
        return self.root / f"{subscriber}.db"

    def rows(self, subscriber: str) -> list[dict[str, Any]]:
        """The sink's rows of population.resident (none before its table exists)."""
        sink = self.sinks[subscriber]
        assert sink.poll() is None, f"the sink of {subscriber} exited {sink.returncode}"
        if not self.database(subscriber).exists():
            return []
        store = SqlStore.open(f"sqlite:///{self.database(subscriber)}")
        try:
            cursor = store.execute("SELECT * FROM population_resident")
            names = [c[0] for c in cursor.description]
            found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            store.commit()
            return found
        except Exception as exc:  # no table yet
            if "no such table" in str(exc):
                return []
            raise
        finally:
            store.close()

    def regions(self, subscriber: str) -> list[str]:
        return sorted(r["region"] for r in self.rows(subscriber))

    def wait_regions(self, subscriber: str, expected: list[str], what: str) -> None:
        wait_for(lambda: self.regions(subscriber) == sorted(expected), CHANGES, what)

    def stop(self) -> None:
        for sink in self.sinks.values():
            if sink.poll() is None:
                sink.send_signal(signal.SIGTERM)
        for sink in self.sinks.values():
            try:
                sink.wait(30)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait(10)


