"""The shipped benchmarks run end to end on a real broker, at toy sizes.

``syncbus bench publish|router`` are how this project measures performance, and
nothing else runs them: a change that broke one (the router's floor modes, a
baseline loop, the cleanup of a run's topics) would only show when someone next
measured. The figures of these tiny runs mean nothing and are not compared with
anything; the checks are that every part ran, reported a figure, and left no
topic behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from confluent_kafka.admin import AdminClient

from tests.conftest import REPO, LocalKafka


def _bench(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    done = subprocess.run([sys.executable, "-m", "syncbus", "bench", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    lines = done.stdout.strip().splitlines()
    return done, json.loads(lines[-1]) if done.returncode == 0 and lines else None


def _bench_topics(kafka: LocalKafka) -> list[str]:
    topics = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=30).topics
    return [t for t in topics if t.startswith("bench")]


def test_bench_router_with_its_floors_reports_every_figure(kafka: LocalKafka) -> None:
    done, result = _bench("router", "--events", "600", "--batch", "200", "--runs", "1",
                          "--floor", "--workers", "2", "--junk", "100", "--json",
                          "--bootstrap", kafka.bootstrap)
    assert result is not None, done.stderr[-3000:]
    assert result["benchmark"] == "router" and result["events"] == 600
    assert result["deliveries_per_run"] > 600  # residents fan out to city and province
    for figure in ("syncbus_eps", "baseline_eps", "ratio", "router_rss_mb",
                   "faust_take_events_eps", "faust_batches_eps", "faust_io_eps", "engine_eps"):
        assert result[figure] > 0, figure
    assert set(result["workers_eps"]) == {"1", "2"} and result["workers_eps"]["2"] > 0
    assert result["junk"] == 100 and result["junk_eps"] > 0
    assert _bench_topics(kafka) == []


def test_bench_publish_reports_both_sides(kafka: LocalKafka) -> None:
    done, result = _bench("publish", "--events", "2000", "--runs", "1", "--json",
                          "--bootstrap", kafka.bootstrap)
    assert result is not None, done.stderr[-3000:]
    assert result["benchmark"] == "publish" and result["events"] == 2000
    assert result["syncbus_eps"] > 0 and result["baseline_eps"] > 0 and result["ratio"] > 0
    assert _bench_topics(kafka) == []


def test_the_router_floors_need_more_events_than_a_batch() -> None:
    done, _ = _bench("router", "--events", "100", "--batch", "200", "--floor")
    assert done.returncode == 2
    assert "--floor" in done.stderr and "raise --events or lower --batch" in done.stderr


def test_bench_latency_counts_every_event_and_reports_each_stage(kafka: LocalKafka) -> None:
    done, result = _bench("latency", "--rate", "200", "--duration", "3", "--warmup", "1",
                          "--json", "--bootstrap", kafka.bootstrap)
    assert result is not None, done.stderr[-3000:]
    assert result["benchmark"] == "latency" and result["rate"] == 200
    assert result["published"] == 600 and result["delivered"] == 600 and result["missing"] == 0
    for figure in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
        assert result[figure] > 0, figure
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    for stage in ("publisher", "router", "share_to_handler"):
        assert result["stages"][stage]["count"] == 600, stage
    assert result["first_seconds"]["count"] + result["steady"]["count"] == 600
    assert _bench_topics(kafka) == []
