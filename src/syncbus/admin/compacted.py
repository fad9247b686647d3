"""Reading a compacted topic to its end: the state it holds, latest value per key.

``syncbus apply`` diffs against it and the router loads the live policy from it.
Assignment is manual (no consumer group), so every reader sees every partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from syncbus.connection import Connection

# A topic created a moment ago (``syncbus apply`` on a broker that just started) can
# be missing from the broker's metadata for a while after CreateTopics returned.
APPEAR_WITHIN = 10.0


def assign_from_beginning(consumer: Consumer, topic: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + min(timeout, APPEAR_WITHIN)
    while True:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is None and metadata.partitions:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic!r} does not exist: run `syncbus apply` first")
        time.sleep(0.2)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """Watermarks, waiting out a just-created partition that has no leader yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            return int(low), int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_to_end(
    consumer: Consumer,
    topic: str,
    on_record: Callable[[str, bytes | None], None],
    timeout: float = 30.0,
) -> None:
    """Feed every record up to the current end of ``topic`` (already assigned) to ``on_record``."""
    ends: dict[int, int] = {}
    for tp in consumer.assignment():
        low, high = watermarks(consumer, tp, timeout)
        position = consumer.position([tp])[0].offset
        start = low if position < 0 else max(position, low)
        if high > start:
            ends[tp.partition] = high
    while ends:
        message = consumer.poll(timeout)
        if message is None:
            raise TimeoutError(f"reading {topic} stalled with partitions {sorted(ends)} unread")
        error = message.error()
        partition = int(message.partition() or 0)
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                ends.pop(partition, None)
                continue
            raise RuntimeError(f"reading {topic}: {error}")
        key = message.key()
        on_record(key.decode("utf-8") if key else "", message.value())
        if int(message.offset() or 0) + 1 >= ends.get(partition, 0):
            ends.pop(partition, None)


def read_compacted(connection: Connection, topic: str, timeout: float = 30.0) -> dict[str, bytes]:
    """Latest value per key of ``topic``; tombstoned keys are absent."""
    consumer = Consumer(
        connection.confluent(
            **{"group.id": connection.own_group("reader"), "enable.auto.commit": False}
        )
    )
    state: dict[str, bytes] = {}

    def keep(key: str, value: bytes | None) -> None:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value

    try:
        assign_from_beginning(consumer, topic, timeout)
        read_to_end(consumer, topic, keep, timeout)
    finally:
        consumer.close()
    return state
