"""A ``syncbus monitor`` watching a benchmark's bus, scraped like Prometheus would:
what ``bench router --monitor`` runs beside the router to show what monitoring costs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.localkafka.broker import free_port

SCRAPE_EVERY_S = 1.0


@dataclass
class MonitorCost:
    """What the monitor took while it watched: CPU seconds, and for how long."""

    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def monitored(
    conn: Connection, names: TopicNames, router_id: str, workdir: Path
) -> Iterator[MonitorCost]:
    """The monitor (1 s cycles) and a 1 s scraper of its /metrics, for the block's time."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncbus",
            "monitor",
            "--bootstrap",
            conn.bootstrap,
            "--port",
            str(port),
            "--topic-prefix",
            names.prefix,
            "--router-group",
            router_id,
            "--interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / f"{names.prefix}monitor.log", "wb"),  # noqa: SIM115
    )
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(SCRAPE_EVERY_S):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    r.read()
            except OSError:
                continue  # not serving yet

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    cost, started = MonitorCost(), time.monotonic()
    try:
        yield cost
    finally:
        cost.cpu_seconds = _cpu_seconds(proc.pid)
        cost.wall_seconds = time.monotonic() - started
        stop.set()
        scraper.join(10)
        proc.terminate()
        proc.wait(60)
