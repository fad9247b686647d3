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
from syncbus.localkafka import broker, cluster
from tests.router_helpers import REPO, RouterProcess, ShareReader, resident, wait_for

RES = "population.resident"


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
    from syncbus.publisher import Publisher

    bootstrap = three_nodes.bootstrap
    names = TopicNames(f"k{uuid.uuid4().hex[:6]}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(bootstrap), 3, names)
    router = RouterProcess(bootstrap, tmp_path / "router", prefix=names.prefix).start()
    accepted: list[str] = []
    refused: list[Exception] = []
    stop = threading.Event()

    def publish() -> None:
        with Publisher("js-gaj", bus, bootstrap, spool_path=tmp_path / "spool.db",
                       registry=CollectorRegistry(), topic_of=names.raw) as publisher:
            seed = 0
            while not stop.is_set():
                batch = [{"op": "CREATE", "after": resident("320102", seed + i)}
                         for i in range(20)]
                seed += 20
                try:
                    accepted.extend(publisher.publish_many(RES, batch))
                except Exception as exc:  # the test's point: this must never happen
                    refused.append(exc)
                time.sleep(0.1)
            assert publisher.flush(120) == 0

    writer = threading.Thread(target=publish, daemon=True)
    writer.start()
    try:
        time.sleep(6)
        victim = three_nodes.nodes[1]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = len(accepted)
        time.sleep(10)  # the bus works on two nodes meanwhile
        during = len(accepted) - killed_at
        cluster.start_node(three_nodes.dir, 2)
        time.sleep(4)
    finally:
        stop.set()
        writer.join(150)
    try:
        assert not writer.is_alive(), "the publisher did not flush within 150 s"
        assert refused == [] and during > 0
        reader = ShareReader(bootstrap, names)
        want = set(accepted)
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
