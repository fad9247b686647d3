"""The router's consumer goes back to the committed offsets, or to the beginning without one.

Faust drops records it fetched and must not hand on (flow stopped for a rebalance,
partitions paused during recovery) and relies on a seek to the committed offsets to
read them again. aiokafka's ``seek_to_committed`` leaves a partition without a commit
where it is, so on such a partition those records were skipped for good: in the
two-routers kill -9 test, the surviving worker sat at the end of two uncommitted raw
partitions without routing them (``router.batching.rewind_to_committed``). This checks
the rule on a real broker with the real aiokafka consumer Faust runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from confluent_kafka import Producer

from syncbus.router.batching import rewind_to_committed
from tests.conftest import LocalKafka

pytestmark = pytest.mark.integration


def _fill(bootstrap: str, topic: str, partitions: int, per_partition: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, f"{partition}-{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


async def _read_to_end_then_rewind(bootstrap: str, topic: str) -> dict[str, dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"g-{uuid.uuid4()}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(parts)
        await consumer.commit({parts[1]: OffsetAndMetadata(4, ""),
                               parts[2]: OffsetAndMetadata(0, "")})
        await consumer.seek_to_beginning(*parts)
        # every record fetched and handed out: what Faust drops in a rebalance
        deadline = time.monotonic() + 30
        while any([await consumer.position(tp) < 10 for tp in parts]):
            assert time.monotonic() < deadline, "the records were not read within 30 s"
            await consumer.getmany(timeout_ms=500)
        at_end = {tp.partition: await consumer.position(tp) for tp in parts}
        plain = await consumer.seek_to_committed()
        after_plain = {tp.partition: await consumer.position(tp) for tp in parts}
        committed = await rewind_to_committed(consumer, {topic, "other-topic"})
        rewound = {tp.partition: await consumer.position(tp) for tp in parts}
        return {
            "at_end": at_end,
            "plain": {tp.partition: offset for tp, offset in plain.items()},
            "after_plain": after_plain,
            "committed": {tp.partition: offset for tp, offset in committed.items()},
            "rewound": rewound,
        }
    finally:
        await consumer.stop()


def test_partitions_without_a_commit_go_back_to_the_beginning(
    kafka: LocalKafka, create_topic: Callable[..., str]
) -> None:
    topic = create_topic("rewind", partitions=3)
    _fill(kafka.bootstrap, topic, 3, 10)
    seen = asyncio.run(_read_to_end_then_rewind(kafka.bootstrap, topic))
    assert seen["at_end"] == {0: 10, 1: 10, 2: 10}
    # what aiokafka alone does (why the rule exists): only the commit above 0 moves
    assert seen["after_plain"] == {0: 10, 1: 4, 2: 10}
    assert seen["committed"] == {0: None, 1: 4, 2: 0}
    # the router's rewind: every dropped record is read again
    assert seen["rewound"] == {0: 0, 1: 4, 2: 0}
