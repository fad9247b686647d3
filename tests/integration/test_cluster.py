"""A replicated three-node local Kafka, and what the bus survives on it.

One cluster for the module (three JVMs, ``syncbus.localkafka.cluster``), every
topic replicated three times with ``min.insync.replicas=2``. The fault test kills
one node with SIGKILL while a real publisher and a real router work, and counts
event ids: every event the publisher accepted reaches the province's share, the
publisher never refused one, and the node comes back and catches up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from prometheus_client import CollectorRegistry

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.model import Bus
from syncbus.localkafka import broker, cluster
from tests.router_helpers import REPO, RouterProcess, ShareReader, resident, wait_for

RES = "population.resident"


class Department:
    """js-gaj publishing residents through the real Publisher SDK in a thread, 10 batches
    a second, until ``stop``; then it flushes. ``accepted`` holds the event ids the SDK
    accepted, ``refused`` whatever it raised (a test's point: nothing)."""

    def __init__(self, bus: Bus, bootstrap: str, names: TopicNames, spool: Path,
                 regions: tuple[str, ...], per_batch: int = 20, flush_s: float = 120) -> None:
        self.accepted: list[str] = []
        self.refused: list[Exception] = []
        self.flushed: int | None = None
        self._stop = threading.Event()
        self._args = (bus, bootstrap, names, spool, regions, per_batch, flush_s)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from syncbus.publisher import Publisher

        bus, bootstrap, names, spool, regions, per_batch, flush_s = self._args
        with Publisher("js-gaj", bus, bootstrap, spool_path=spool,
                       registry=CollectorRegistry(), topic_of=names.raw) as publisher:
            seed = 0
            while not self._stop.is_set():
                batch = [{"op": "CREATE", "after": resident(regions[i % len(regions)], seed + i)}
                         for i in range(per_batch)]
                seed += per_batch
                try:
                    self.accepted.extend(publisher.publish_many(RES, batch))
                except Exception as exc:  # the tests' point: this must never happen
                    self.refused.append(exc)
                time.sleep(0.1)
            self.flushed = publisher.flush(flush_s)

    def halt(self) -> None:
        """Stop publishing (a test's clean-up: no waiting)."""
        self._stop.set()

    def stop(self, timeout: float) -> None:
        """Stop publishing; wait for the spool to drain (``flushed`` 0: all confirmed)."""
        self._stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the publisher did not drain within {timeout} s"
        assert self.flushed == 0


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.ClusterInfo]:
    directory = tmp_path_factory.mktemp("cluster")
    info, _ = cluster.start(directory, 3)
    for node in info.nodes:
        broker.stop_when_gone(os.getpid(), node.dir)
    try:
        yield info
    finally:
        cluster.stop(directory)


def test_an_even_node_count_is_refused_naming_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "syncbus", "kafka", "start", "--nodes", "2",
         "--dir", "/nonexistent"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "--nodes 2" in done.stderr and "odd number" in done.stderr


def test_apply_replicates_every_topic_three_times(three_nodes: cluster.ClusterInfo) -> None:
    names = TopicNames(f"c{uuid.uuid4().hex[:6]}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(three_nodes.bootstrap), 3, names)  # replication: the cluster's
    admin = AdminClient({"bootstrap.servers": three_nodes.bootstrap})
    topics = admin.list_topics(timeout=30).topics
    raw = topics[names.raw(RES)]
    assert all(len(p.replicas) == 3 for p in raw.partitions.values())
    resource = ConfigResource(ConfigResource.Type.TOPIC, names.raw(RES))
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["min.insync.replicas"].value == "2"
    status = subprocess.run(
        [sys.executable, "-m", "syncbus", "kafka", "status", "--dir", str(three_nodes.dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert status.returncode == 0 and status.stdout.count(": running") == 3
    assert status.stdout.strip().splitlines()[-1] == three_nodes.bootstrap


@pytest.mark.slow
def test_kill_9_of_one_node_under_load_loses_nothing_acknowledged(
    three_nodes: cluster.ClusterInfo, tmp_path: Path
) -> None:
    bootstrap = three_nodes.bootstrap
    names = TopicNames(f"k{uuid.uuid4().hex[:6]}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(bootstrap), 3, names)
    router = RouterProcess(bootstrap, tmp_path / "router", prefix=names.prefix).start()
    department = Department(bus, bootstrap, names, tmp_path / "spool.db", ("320102",))
    try:
        time.sleep(6)
        current = cluster.status(three_nodes.dir)
        assert current is not None
        victim = current.nodes[1]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = len(department.accepted)
        time.sleep(10)  # the bus works on two nodes meanwhile
        during = len(department.accepted) - killed_at
        cluster.start_node(three_nodes.dir, 2)
        time.sleep(4)
    finally:
        department.stop(150)
    try:
        assert department.refused == [] and during > 0
        reader = ShareReader(bootstrap, names)
        want = set(department.accepted)
        got: set[str] = set()

        def everything_routed() -> bool:
            got.update(str(e["event_id"]) for e in reader.events("province.jiangsu", RES, 1.0))
            return want <= got

        wait_for(everything_routed, 120, "every accepted event on the province's share")
        assert router.alive()
    finally:
        router.stop()
    back = cluster.status(three_nodes.dir)
    assert back is not None and back.running == [1, 2, 3]


@pytest.mark.slow
def test_the_whole_cluster_away_for_30_s_loses_and_repeats_nothing(
    three_nodes: cluster.ClusterInfo, tmp_path: Path
) -> None:
    """The publisher keeps accepting into its spool while no node runs, then drains;
    the subscriber's handler sees every accepted event exactly once."""
    from syncbus.subscriber import Subscriber

    bootstrap = three_nodes.bootstrap
    names = TopicNames(f"o{uuid.uuid4().hex[:6]}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(bootstrap), 3, names)
    router = RouterProcess(bootstrap, tmp_path / "router", prefix=names.prefix).start()
    handled: list[str] = []
    stop_handling = threading.Event()
    subscriber = Subscriber("province.jiangsu", [RES], bootstrap=bootstrap,
                            group_id=f"{names.prefix}province", store=tmp_path / "store.db",
                            registry=CollectorRegistry(), topic_prefix=names.prefix)

    def handle() -> None:
        while not stop_handling.is_set():
            subscriber.run(lambda e: handled.append(e.event_id), idle_timeout=1.0)

    reader = threading.Thread(target=handle, daemon=True)
    department = Department(bus, bootstrap, names, tmp_path / "spool.db", ("320508",),
                            per_batch=10, flush_s=180)
    reader.start()
    try:
        time.sleep(5)
        cluster.stop(three_nodes.dir)
        before_outage = len(department.accepted)
        time.sleep(30)
        during = len(department.accepted) - before_outage
        cluster.start(three_nodes.dir, 3)
        if not router.alive():  # as a supervisor (systemd, compose) would
            router.start()
        time.sleep(3)
        department.stop(200)
        assert department.refused == [] and during > 0
        wait_for(lambda: set(department.accepted) <= set(handled), 180,
                 "the subscriber to handle every accepted event")
    finally:
        department.halt()
        stop_handling.set()
        subscriber.stop()
        reader.join(30)
        subscriber.close()
        router.stop()
    assert len(handled) == len(set(handled)), "an event reached the handler twice"


@pytest.mark.slow
def test_two_routers_one_killed_three_times_deliver_everything_once(
    three_nodes: cluster.ClusterInfo, tmp_path: Path
) -> None:
    """Two workers of one router id share the raw partitions; one is killed with
    SIGKILL three times under load and restarted. Every event reaches the province,
    no delivery number is reused for another event, and the subscriber's handler
    sees each event once."""
    from syncbus.subscriber import Subscriber

    bootstrap = three_nodes.bootstrap
    names = TopicNames(f"r{uuid.uuid4().hex[:6]}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(bootstrap), 3, names)
    app_id = f"{names.prefix}router"
    steady = RouterProcess(bootstrap, tmp_path / "a", app_id, names.prefix).start()
    victim = RouterProcess(bootstrap, tmp_path / "b", app_id, names.prefix).start()
    department = Department(bus, bootstrap, names, tmp_path / "spool.db",
                            ("320102", "320508"))
    try:
        for _ in range(3):
            time.sleep(6)
            victim.kill9()
            time.sleep(2)
            victim.start()
        time.sleep(4)
    finally:
        department.stop(150)
    accepted = department.accepted
    assert department.refused == []
    handled: list[str] = []
    subscriber = Subscriber("province.jiangsu", [RES], bootstrap=bootstrap,
                            group_id=f"{names.prefix}province", store=tmp_path / "store.db",
                            registry=CollectorRegistry(), topic_prefix=names.prefix)
    try:
        deadline = time.monotonic() + 180
        while not set(accepted) <= set(handled) and time.monotonic() < deadline:
            subscriber.run(lambda e: handled.append(e.event_id), idle_timeout=2.0)
        assert set(accepted) <= set(handled), "an accepted event never reached the province"
        assert len(handled) == len(set(handled)), "an event reached the handler twice"
        assert steady.alive() and victim.alive()
    finally:
        subscriber.close()
        steady.stop()
        victim.stop()
    owner: dict[tuple[int, int], str] = {}
    for event in ShareReader(bootstrap, names).events("province.jiangsu", RES, 2.0):
        slot = (int(event["_headers"].get("syncbus-source-partition", b"-1")),
                int(event["delivery_sequence"]))
        assert owner.setdefault(slot, str(event["event_id"])) == str(event["event_id"]), (
            f"delivery number {slot} was used for two events")


@pytest.mark.slow
def test_10000_hostile_events_on_the_cluster_leak_nothing_and_stop_nothing(
    three_nodes: cluster.ClusterInfo, tmp_path: Path
) -> None:
    """The router's fuzz scenario (test_router_hostile) on three replicated nodes: every
    undecodable event dead-lettered once with its reason and quarantined, every good
    one delivered, nothing masked leaks, the router never stops. (Its throughput is a
    benchmark's matter: ``syncbus bench router --junk 10000``.)"""
    from tests.integration.test_router_hostile import run_hostile_scenario

    run_hostile_scenario(three_nodes.bootstrap, tmp_path)


@pytest.mark.slow
def test_a_cluster_without_its_quorum_fails_commands_clearly_not_forever(
    three_nodes: cluster.ClusterInfo,
) -> None:
    """Two of three nodes gone: ``apply`` ends (within its request timeout) with one
    line naming the cause, and ``kafka status`` names the nodes down. (Last in the
    module: it takes the quorum away, and gives it back.)"""
    current = cluster.status(three_nodes.dir)  # earlier tests restarted nodes: new pids
    assert current is not None and current.running == [1, 2, 3]
    for node in current.nodes[1:]:
        assert node.pid is not None
        os.kill(node.pid, signal.SIGKILL)
    try:
        status = subprocess.run(
            [sys.executable, "-m", "syncbus", "kafka", "status", "--dir", str(three_nodes.dir)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        assert status.returncode == 1 and status.stdout.count(": DOWN") == 2
        done = subprocess.run(
            [sys.executable, "-m", "syncbus", "apply", "--bootstrap", three_nodes.bootstrap,
             "--topic-prefix", f"q{uuid.uuid4().hex[:6]}."],
            cwd=REPO, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 1, done.stdout
        # librdkafka writes its own lines to stderr ("%6|...|BGQUEUE| Purging 1 unserved
        # events" as the admin client closes, after our error): the last of ours counts
        ours = [line for line in done.stderr.strip().splitlines() if not line.startswith("%")]
        last = ours[-1]
        assert last.startswith("Error: apply stopped at") and "majority of its nodes" in last
        assert "Traceback" not in done.stderr
    finally:
        for n in (2, 3):
            cluster.start_node(three_nodes.dir, n)
