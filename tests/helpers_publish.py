"""Shared by the publisher tests: the shipped bus, raw topics, and reading a topic back."""

from __future__ import annotations

import pickle
import random
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from syncbus.core.catalog import load_bus
from syncbus.core.model import Bus
from syncbus.core.topics import raw_topic

REPO = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def shipped_bus() -> Bus:
    return load_bus(REPO / "streams", REPO / "schemas")


@lru_cache(maxsize=8)
def _records(schema: str, n: int, seed: int) -> bytes:
    from syncbus.core.fake import make_record

    rng = random.Random(seed)
    regions = ("320102", "320205", "320508", "320583")
    return pickle.dumps([make_record(schema, regions[i % 4], rng=rng) for i in range(n)])


def records(schema: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` valid records (fresh copies; faker is slow, so generated once per process)."""
    return list(pickle.loads(_records(schema, n, seed)))


def create_raw_topics(bootstrap: str, resources: list[str], partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(raw_topic(r), partitions, 1) for r in resources])
    for future in futures.values():
        future.result(timeout=30)


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: dict[str, str]

    @property
    def event_id(self) -> str:
        return self.headers["syncbus-event-id"]


def read_topic(bootstrap: str, topic: str, min_count: int, timeout: float = 60.0) -> list[Read]:
    """Every message of ``topic`` from the start, once at least ``min_count`` are read and
    the topic has been quiet for a moment (so that duplicates would show too).

    The partitions are assigned, not subscribed: a group rebalance on a loaded broker
    restarted a subscribed reader from the beginning (it commits nothing), which read
    every event twice and looked like duplicates on the topic."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
    })
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Read] = []
    quiet = 0
    import time

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=5000, timeout=0.5)
            for m in batch:
                assert m.error() is None, m.error()
                headers = {k: v.decode() for k, v in (m.headers() or [])}
                out.append(Read(m.partition(), m.offset(), m.key(), m.value(), headers))
            quiet = quiet + 1 if not batch else 0
            if len(out) >= min_count and quiet >= 2:
                break
    finally:
        consumer.close()
    return out
