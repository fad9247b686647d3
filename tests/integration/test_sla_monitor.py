"""The SLAs measured live, on the shipped bus with a real router, monitor and Prometheus.

The test's bus is the shipped one with one change: legal.company must show life every
2 s and is fresh for 4 s, so that a silent publisher and a stopped subscriber breach
within the test. Every other resource keeps its shipped SLA.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import Bus, load_bus
from syncbus.core.fake import make_record
from syncbus.core.sla import bus_routes
from syncbus.core.sla_rules import rule_files
from syncbus.subscriber import Subscriber
from tests.router_helpers import REPO, RawWriter, RouterProcess, ShareReader, wait_for
from tests.sla_helpers import MonitorProcess, PrometheusServer, dom_rows, free_port, wait_until

FAST = "legal.company"  # fresh for 4 s in this test's bus
FRESHNESS_S = 4
# one region per subscriber's scope, so every route of the shipped bus gets events
REGIONS = ("320102", "320508", "320205", "320115", "320583")
ARTIFACTS = Path(os.environ.get("SYNCBUS_TEST_ARTIFACTS", REPO / "var" / "test-artifacts"))


@pytest.fixture(scope="module")
def bus_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sla-bus")
    shutil.copytree(REPO / "streams", root / "streams")
    resources = root / "streams" / "resources.yaml"
    text = resources.read_text(encoding="utf-8")
    shipped = "update_cycle: 5m\n    sla: {latency_p99: 2s, completeness: 0.9999, freshness: 10m}"
    head, tail = text.split(f"id: {FAST}\n", 1)
    assert shipped in tail
    fast = shipped.replace("5m", "2s").replace("10m", f"{FRESHNESS_S}s")
    resources.write_text(f"{head}id: {FAST}\n{tail.replace(shipped, fast, 1)}", encoding="utf-8")
    return root / "streams", REPO / "schemas"


@pytest.fixture(scope="module")
def bus(bus_dirs: tuple[Path, Path]) -> Bus:
    return load_bus(*bus_dirs)


class Scene:
    def __init__(
        self,
        bootstrap: str,
        bus: Bus,
        prefix: str,
        router: RouterProcess,
        monitor: MonitorProcess,
        router_port: int,
        workdir: Path,
    ) -> None:
        self.bootstrap, self.bus, self.prefix = bootstrap, bus, prefix
        self.router, self.monitor, self.router_port = router, monitor, router_port
        self.names = TopicNames(prefix)
        self.writer = RawWriter(bus, bootstrap, self.names)
        self.workdir = workdir
        self.seed = 0

    def publish(self, resources: list[str], regions: tuple[str, ...] = REGIONS) -> None:
        for resource_id in resources:
            schema = self.bus.resource(resource_id).schema
            for region in regions:
                self.seed += 1
                self.writer.send(resource_id, "CREATE", make_record(schema, region, seed=self.seed))
        self.writer.flush()

    def routes(self) -> set[str]:
        return {f"{r.resource}/{r.subscriber}" for r in bus_routes(self.bus, datetime.now(UTC))}


@pytest.fixture(scope="module")
def scene(kafka: Any, bus: Bus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    workdir = tmp_path_factory.mktemp("sla")
    prefix = f"sla{uuid.uuid4().hex[:6]}."
    apply_bus(bus, Connection(kafka.bootstrap), partitions=2, names=TopicNames(prefix))
    router_port = free_port()
    router = RouterProcess(
        kafka.bootstrap,
        workdir / "router",
        prefix=prefix,
        extra=["--metrics-port", str(router_port)],
    ).start()
    with ExitStack() as cleanup:
        cleanup.callback(router.stop)
        monitor = MonitorProcess(kafka.bootstrap, prefix, router.app_id, workdir)
        cleanup.callback(monitor.stop)
        s = Scene(kafka.bootstrap, bus, prefix, router, monitor, router_port, workdir)
        # a probe first, so that no event waits for the router to start (late by design)
        s.publish([FAST], regions=("320102",))
        reader = ShareReader(kafka.bootstrap, s.names)
        wait_for(lambda: reader.events("province.jiangsu", FAST, 0.5), 120, "a first delivery")
        s.publish([r.id for r in bus.resources.values() if r.sharing != "not_shared"])
        yield s


def _by_route(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['resource']}/{r['subscriber']}": r for r in rows}


def test_every_route_has_counters_and_latency(scene: Scene) -> None:
    expected = scene.routes()
    assert len(expected) >= 20

    def all_measured() -> dict[str, dict[str, Any]] | None:
        rows = _by_route(scene.monitor.routes())
        ready = {k for k, r in rows.items() if r["routed"] > 0 and r["latency_samples"] > 0}
        return rows if ready >= expected else None

    rows = wait_until(all_measured, 90, "every route routed and measured")
    assert set(rows) == expected
    for route, row in rows.items():
        assert row["p99_seconds"] is not None and 0 <= row["p99_seconds"] < 30, route
    metrics = _metrics(scene)
    for route in expected:
        resource, subscriber = route.split("/")
        labels = f'resource="{resource}",subscriber="{subscriber}"'
        assert _value(metrics, f"syncbus_route_events_routed_total{{{labels}}}") > 0
        assert _value(metrics, f"syncbus_route_delivery_latency_seconds_count{{{labels}}}") > 0
        for sla in ("latency", "completeness", "freshness"):
            assert (
                f'syncbus_sla_ok{{resource="{resource}",sla="{sla}",subscriber="{subscriber}"}}'
                in metrics
            )


def _metrics(scene: Scene) -> str:
    from tests.sla_helpers import get_text

    return get_text(scene.monitor.url + "/metrics")


def _value(metrics: str, series: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not exported")


def test_unknown_topics_and_groups_do_not_stop_the_monitor(scene: Scene) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    strangers = [f"{scene.prefix}share.nobody.nothing", f"{scene.prefix}share.city.nanjing.x"]
    admin = AdminClient({"bootstrap.servers": scene.bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in strangers]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": scene.bootstrap})
    for topic in strangers:
        producer.produce(topic, b"\x00not avro", headers=[("syncbus-occurred-at", b"junk")])
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": scene.bootstrap, "group.id": "city.nanjing"})
    consumer.commit(offsets=[TopicPartition(t, 0, 1) for t in strangers], asynchronous=False)
    consumer.close()
    before = scene.monitor.summary()["cycles"]
    wait_until(lambda: scene.monitor.summary()["cycles"] >= before + 4, 30, "more cycles")
    assert scene.monitor.alive()
    assert set(_by_route(scene.monitor.routes())) == scene.routes()


def test_a_sink_group_counts_as_the_subscriber(scene: Scene) -> None:
    """``syncbus sink`` commits as ``<subscriber>.sink``: what it took is taken."""
    from confluent_kafka import Consumer, TopicPartition

    topic = scene.names.share("city.suzhou", "population.marriage")
    sink = Consumer({"bootstrap.servers": scene.bootstrap, "group.id": "city.suzhou.sink"})
    try:
        ends = [sink.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in (0, 1)]
        assert sum(ends) > 0
        sink.commit(
            offsets=[TopicPartition(topic, p, end) for p, end in enumerate(ends)],
            asynchronous=False,
        )
    finally:
        sink.close()

    def taken() -> dict[str, Any] | None:
        row = _by_route(scene.monitor.routes())["population.marriage/city.suzhou"]
        return row if row["committed"] == row["routed"] == sum(ends) else None

    row = wait_until(taken, 30, "the sink's commits to count")
    assert row["lag_events"] == 0 and row["lag_seconds"] == 0


def test_status_page_shows_every_route_with_its_state(scene: Scene) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: apt-get install chromium (.ci/run does)"
    wait_until(lambda: all(r["latency_samples"] for r in scene.monitor.routes()), 90, "latency")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    base = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={scene.workdir / 'chromium'}",
        "--window-size=1400,1000",
        "--virtual-time-budget=4000",
    ]
    dom = subprocess.run(
        [*base, "--dump-dom", scene.monitor.url + "/"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    subprocess.run(
        [*base, f"--screenshot={shot}", scene.monitor.url + "/"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    rows = dom_rows(dom)
    assert set(rows) == scene.routes()
    assert set(rows.values()) <= {"OK", "BREACHED"}
    assert shot.stat().st_size > 10_000


def _report(args: list[str]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "syncbus", "sla", "report", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode in (0, 2), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_report_marks_a_silent_publisher_breached(scene: Scene) -> None:
    # every resource but FAST stays within its freshness target (minutes) during the test
    wait_until(
        lambda: all(
            r["sla"].get("freshness") == "breached"
            for r in scene.monitor.routes()
            if r["resource"] == FAST
        ),
        60,
        f"{FAST} to go silent past {FRESHNESS_S}s",
    )
    rows = _by_route(_report(["--monitor", scene.monitor.url]))
    assert set(rows) == scene.routes()
    for row in rows.values():
        if row["resource"] == FAST:
            assert row["state"] == "BREACHED" and row["freshness_breaches"] >= 1, row
        else:
            assert row["state"] == "OK" and row["volume"] > 0, row


@pytest.fixture(scope="module")
def prometheus(scene: Scene) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the monitor and the router, with the rules generated
    from this test's bus."""
    rules_dir = scene.workdir / "rules"
    rules_dir.mkdir()
    for name, text in rule_files(scene.bus).items():
        (rules_dir / name).write_text(text, encoding="utf-8")
    server = PrometheusServer(
        scene.workdir,
        {
            "syncbus-monitor": f"127.0.0.1:{scene.monitor.port}",
            "syncbus-router": f"127.0.0.1:{scene.router_port}",
        },
        sorted(rules_dir.iterdir()),
    )
    try:
        wait_until(server.ready, 60, "Prometheus to be ready")
        yield server
    finally:
        server.stop()


def test_prometheus_fires_freshness_and_lag_alerts(
    scene: Scene, prometheus: PrometheusServer, bus_dirs: tuple[Path, Path]
) -> None:
    # Nanjing's subscriber takes its share of FAST, then stops; more events come
    subscriber = Subscriber(
        "city.nanjing",
        [FAST],
        bootstrap=scene.bootstrap,
        topic_prefix=scene.prefix,
        store=scene.workdir / "nanjing.db",
    )
    assert subscriber.run(lambda event: None, idle_timeout=3) > 0
    nanjing_lag = f'syncbus_route_lag_events{{resource="{FAST}",subscriber="city.nanjing"}} == 0'

    def lagging() -> set[tuple[str, str]]:
        return {
            (a["resource"], a["subscriber"])
            for a in prometheus.firing()
            if a.get("alertname") == "SyncbusSubscriberLagging"
        }

    # caught up: Prometheus sees no lag and the alert is not firing for Nanjing...
    wait_until(lambda: prometheus.query(nanjing_lag), 60, "Nanjing caught up in Prometheus")
    wait_until(lambda: (FAST, "city.nanjing") not in lagging(), 30, "no lag alert for Nanjing")
    # ...then the subscriber stays stopped while new events arrive: it fires
    scene.publish([FAST], regions=("320102",))
    wait_until(lambda: (FAST, "city.nanjing") in lagging(), 90, "the lag alert")
    firing = wait_until(
        lambda: [
            a for a in prometheus.firing() if a.get("alertname") == "SyncbusFreshnessBreached"
        ],
        60,
        "the freshness alert",
    )
    assert {a["resource"] for a in firing} == {FAST}
    assert {resource for resource, _s in lagging()} == {FAST}  # the others are minutes fresh
    assert prometheus.query('up{job="syncbus-router"} == 1'), "the router is not scraped"
    # the bus itself is healthy: a router in its group, the published policy applied
    assert prometheus.query(f'syncbus_router_group_members{{group="{scene.router.app_id}"}} >= 1')
    assert prometheus.query("syncbus_policy_published_timestamp_seconds")
    assert prometheus.query("syncbus_router_policy_loaded_timestamp_seconds")
    bus_alerts = {"SyncbusRouterDown", "SyncbusPolicyNotApplied", "SyncbusMonitorDown"}
    assert not [a for a in prometheus.firing() if a.get("alertname") in bus_alerts]
    report = _by_route(
        _report(["--prometheus", prometheus.url, "--since", "5m", "--streams", str(bus_dirs[0])])
    )
    assert set(report) == scene.routes()
    nanjing = report[f"{FAST}/city.nanjing"]
    assert nanjing["state"] == "BREACHED" and nanjing["volume"] > 0, nanjing


def test_every_dashboard_query_returns_data(scene: Scene, prometheus: PrometheusServer) -> None:
    dashboard = json.loads((REPO / "compose/grafana/dashboards/syncbus-sla.json").read_text())
    queries = [
        (panel["title"], target["expr"].replace("$__rate_interval", "5m"))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    assert len(queries) == len(dashboard["panels"]) >= 8
    wait_until(lambda: prometheus.query("syncbus_route:latency_error_ratio:rate1h"), 60, "rules")
    for title, expr in queries:
        result = wait_until(lambda e=expr: prometheus.query(e), 30, f"data for {title!r}")
        routes = {(r["metric"].get("resource"), r["metric"].get("subscriber")) for r in result}
        assert routes, title
