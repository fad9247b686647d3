"""``syncbus kafka start --nodes 3 --tls``: the replicated cluster, secure like one broker.

One admin and one CA for the whole cluster, kept where the single broker keeps them,
so a client that trusts ``<dir>/tls/ca.pem`` reaches every node (a department's
writes go to partitions led by all three); ``apply`` as that admin sets up the
shipped bus with replication 3; ACLs hold on every node.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from syncbus import settings
from syncbus.admin.apply import AccessPlan, apply_bus
from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.core.access import ADMIN
from syncbus.core.catalog import load_bus
from syncbus.credentials import read_secrets
from syncbus.localkafka import broker, cluster
from syncbus.localkafka.secure import admin_password, admin_password_file, ca_file
from tests.integration.conftest import REPO

pytestmark = pytest.mark.slow
RAW = t.raw_topic("population.resident")


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    directory = tmp_path_factory.mktemp("secure-cluster")
    command = [sys.executable, "-m", "syncbus", "kafka", "start", "--dir", str(directory),
               "--nodes", "3", "--tls", "--cache", settings.get("kafka_cache")]
    started = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    watchers = [broker.stop_when_gone(os.getpid(), cluster.node_dir(directory, n))
                for n in (1, 2, 3)]
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        # the command says where the admin's login is, the same place as one broker's
        assert f"--password-file {admin_password_file(directory)}" in started.stderr
        assert f"CA: {ca_file(directory)}" in started.stderr
        yield directory, started.stdout.strip().splitlines()[-1]
    finally:
        cluster.stop(directory)
        for watcher in watchers:
            watcher.kill()


def test_one_ca_and_one_admin_reach_every_node_and_acls_hold(
    secure_cluster: tuple[Path, str], tmp_path: Path
) -> None:
    directory, bootstrap = secure_cluster
    assert (os.stat(admin_password_file(directory)).st_mode & 0o077) == 0
    admin = Connection(bootstrap, ADMIN, admin_password(directory), str(ca_file(directory)))
    assert admin.protocol == "SASL_SSL"
    metadata = AdminClient(admin.confluent()).list_topics(timeout=30)
    assert len(metadata.brokers) == 3

    secrets = tmp_path / "credentials.json"
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, admin, partitions=3, access=AccessPlan(secrets))
    raw = AdminClient(admin.confluent()).list_topics(RAW, timeout=30).topics[RAW]
    leaders = {p.leader for p in raw.partitions.values()}
    assert all(len(p.replicas) == 3 for p in raw.partitions.values())
    assert len(leaders) == 3, f"partitions of {RAW} led by nodes {leaders}; want all three"

    department = admin.as_user("js-gaj", read_secrets(secrets)["js-gaj"])
    producer = Producer(department.confluent(acks="all"))
    failed: list[str] = []
    for partition in raw.partitions:
        producer.produce(RAW, b"probe", key=b"probe", partition=partition,  # compacted
                         on_delivery=lambda err, _m: err and failed.append(str(err)))
    assert producer.flush(60) == 0 and failed == [], failed

    city = admin.as_user("city.nanjing", read_secrets(secrets)["city.nanjing"])
    reader = Consumer(city.confluent(**{"group.id": "city.nanjing", "log_level": 0}))
    try:
        reader.subscribe([RAW])
        denied, deadline = None, time.monotonic() + 30
        while denied is None and time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is not None:
                assert message.error() is not None, "a city read a raw topic on the cluster"
                denied = message.error().name()
        assert denied == "TOPIC_AUTHORIZATION_FAILED"
    finally:
        reader.close()

    no_tls = Connection(bootstrap, ADMIN, admin_password(directory))
    with pytest.raises(KafkaException):
        AdminClient(no_tls.confluent(log_level=0)).list_topics(timeout=5)
