"""Writer schemas by fingerprint, read from the compacted ``syncbus.schemas`` topic.

A subscriber is built against some version of a view schema (its reader schema)
while the router writes with whatever the latest view is. Every message names its
writer by fingerprint; when the codec does not know one yet, the whole topic is read
once from the beginning to its end (it is small and compacted) and every schema in
it registered, so a batch with new writers costs one scan, not one per message.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from syncbus.connection import Connection
from syncbus.core.codec import Codec
from syncbus.core.schemas import event_schema
from syncbus.core.topics import SCHEMAS_TOPIC

ENVELOPE_NAME = "ChangeEvent"
READ_TIMEOUT_S = 30.0


def reader_event_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A reader schema as given by the user: a full event schema, or a domain record
    (then wrapped in the change-event envelope)."""
    if schema.get("name") == ENVELOPE_NAME:
        return dict(schema)
    return event_schema(schema)


class SchemaResolver:
    """Makes sure the codec knows every writer fingerprint it is asked about."""

    def __init__(self, connection: Connection, codec: Codec, topic: str = SCHEMAS_TOPIC) -> None:
        self.connection = connection
        self.codec = codec
        self.topic = topic
        self.scans = 0

    def ensure(self, fingerprints: Iterable[bytes]) -> set[bytes]:
        """Register what ``syncbus.schemas`` holds if any fingerprint is unknown; returns
        the fingerprints still unknown afterwards (their messages are dead-lettered)."""
        missing = {fp for fp in fingerprints if not self.codec.known(fp)}
        if missing:
            self.load()
        return {fp for fp in missing if not self.codec.known(fp)}

    def load(self) -> int:
        """Read the schemas topic from its beginning to its current end; returns how many
        schemas were registered."""
        self.scans += 1
        consumer = Consumer(
            self.connection.confluent(
                **{
                    "group.id": self.connection.own_group(f"schemas-{uuid.uuid4().hex}"),
                    "enable.auto.commit": False,
                }
            )
        )
        try:
            return self._read_all(consumer)
        finally:
            consumer.close()

    def _read_all(self, consumer: Consumer) -> int:
        metadata = consumer.list_topics(self.topic, timeout=10)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return 0
        ends: dict[int, int] = {}
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10
            )
            if high > low:
                ends[partition] = high
        if not ends:
            return 0
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
        registered = 0
        deadline = time.monotonic() + READ_TIMEOUT_S
        while ends and time.monotonic() < deadline:
            # a short wait: consume() returns when 500 arrive or the wait ends, and the
            # topic holds far fewer, so a long wait held a subscriber's first event
            # (and everything behind it) that long
            for message in consumer.consume(500, timeout=0.05):
                if message.error() is not None:
                    raise KafkaException(message.error())
                partition, offset = message.partition() or 0, message.offset() or 0
                if partition not in ends:
                    continue
                registered += self._register(message.value())
                if offset + 1 >= ends[partition]:
                    del ends[partition]
        return registered

    def _register(self, value: bytes | None) -> int:
        if not value:
            return 0  # a tombstone: nothing to learn
        try:
            self.codec.register(json.loads(value))
        except (ValueError, TypeError, KeyError):
            return 0  # not a schema; readers of this fingerprint will dead-letter
        return 1
