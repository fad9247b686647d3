"""Fixtures shared by every tier of tests.

Integration tests run against a real Apache Kafka that this session fixture starts
with ``syncbus.localkafka`` (jars from Maven Central, cached per user) on a free port
in a temporary directory, and stops at the end. Never a mock broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncbus import settings
from syncbus.localkafka import broker

# postgres_server, postgres and database (SQLite, then PostgreSQL), for every test
pytest_plugins = ["tests.postgres_fixture"]

REPO = Path(__file__).resolve().parents[1]


@dataclass
class LocalKafka:
    """The session's broker: its address, and its directory (to stop and restart it)."""

    dir: Path
    bootstrap: str

    def stop(self) -> None:
        broker.stop(self.dir)

    def start(self) -> None:
        info, _ = broker.start(self.dir, None, Path(settings.get("kafka_cache")))
        assert info.address == self.bootstrap, "a restart must keep the broker's address"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/integration need the broker: mark them so `-m` can pick tiers."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


def _own_broker(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[LocalKafka]:
    """A broker on a free port in a fresh directory, stopped at the end (or by a
    watcher if this session is killed)."""
    directory = tmp_path_factory.mktemp(name)
    info, _ = broker.start(directory, 0, Path(settings.get("kafka_cache")))
    broker.stop_when_gone(os.getpid(), directory)
    try:
        yield LocalKafka(directory, info.address)
    finally:
        broker.stop(directory)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    yield from _own_broker(tmp_path_factory, "kafka")


@pytest.fixture(scope="module")
def bus_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of the test module's own, for tests that use the bus's fixed topic
    names (``raw.population.resident``, ``share.city.nanjing...``) and must not see
    another module's events."""
    yield from _own_broker(tmp_path_factory, "bus-kafka")


@pytest.fixture
def create_topic(kafka: LocalKafka) -> Callable[..., str]:
    """Create a fresh uuid-named topic and return its name."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})

    def create(prefix: str = "t", partitions: int = 1, name: str | None = None) -> str:
        topic = name or f"{prefix}.{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics([NewTopic(topic, partitions, 1)])
        futures[topic].result(timeout=30)
        return topic

    return create


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _no_user_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's SYNCBUS_BOOTSTRAP must not leak into tests."""
    if "SYNCBUS_BOOTSTRAP" in os.environ:
        monkeypatch.delenv("SYNCBUS_BOOTSTRAP")
