"""``syncbus bench router --monitor`` runs the router with the SLA monitor watching and
scraped, beside a run without, and reports both (toy size: the figures mean nothing,
the check is that every part ran and left no topic behind)."""

from __future__ import annotations

import json
import subprocess
import sys

from confluent_kafka.admin import AdminClient

from tests.conftest import REPO, LocalKafka


def test_bench_router_reports_the_monitored_run(kafka: LocalKafka) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncbus",
            "bench",
            "router",
            "--events",
            "600",
            "--batch",
            "200",
            "--runs",
            "1",
            "--monitor",
            "--json",
            "--bootstrap",
            kafka.bootstrap,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["syncbus_eps"] > 0 and result["monitored_eps"] > 0
    assert len(result["monitored_runs"]) == 1
    ratio = result["monitored_eps"] / result["syncbus_eps"]  # of the rounded figures
    assert abs(result["monitored_ratio"] - ratio) < 0.01
    assert 0 < result["monitor_cpu_share"] < 2
    topics = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=30).topics
    assert [t for t in topics if t.startswith("bench")] == []
