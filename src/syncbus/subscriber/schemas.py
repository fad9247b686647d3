"""Writer schemas by fingerprint, read from the compacted ``syncbus.schemas`` topic.

A subscriber is built against some version of a view schema (its reader schema)
while the router writes with whatever the latest view is. Every message names its
writer by fingerprint; when the codec does not know one yet, the whole topic is read
once from the beginning to its end (it is small and compacted) and every schema in
it kept, so a batch with new writers costs one scan, not one per message.

What a subscriber's first event waits for is kept short (``bench latency``: that
first read took 50-75 ms, and everything behind the event waited too):
- schemas are kept as read, by their key (the fingerprint in hex, as the wire
  contract says), and only those asked for are parsed; parsing all 19 of the
  shipped bus took ~50 ms. A schema keyed otherwise is still found: when what was
  asked for is not under its key, every schema kept is parsed.
- the reading consumer is made once and kept: a new librdkafka client took ~50 ms
  to answer its first metadata request, and ``open`` makes it ahead of need.
"""

from __future__ import annotations

import contextlib
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
from syncbus.subscriber.polling import take_ready

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
        self._consumer: Consumer | None = None
        self._kept: dict[bytes, bytes] = {}  # schemas read, not registered yet, by key

    def open(self) -> None:
        """Make the reading consumer now (it connects in the background)."""
        if self._consumer is None:
            self._consumer = Consumer(
                self.connection.confluent(
                    **{
                        "group.id": self.connection.own_group(f"schemas-{uuid.uuid4().hex}"),
                        "enable.auto.commit": False,
                    }
                )
            )

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def ensure(self, fingerprints: Iterable[bytes]) -> set[bytes]:
        """Register what ``syncbus.schemas`` holds for every fingerprint not known yet,
        reading the topic again only when what an earlier read kept does not have it;
        returns the fingerprints still unknown (their messages are dead-lettered)."""
        missing = {fp for fp in fingerprints if not self.codec.known(fp)}
        if missing and self._register_kept(missing):
            self.load()
            self._register_kept(missing)
        return {fp for fp in missing if not self.codec.known(fp)}

    def load(self) -> int:
        """Read the schemas topic from its beginning to its current end and keep every
        schema of it not registered yet (parsed when asked for), instead of what the
        last read kept; returns how many that is."""
        self.scans += 1
        self.open()
        assert self._consumer is not None
        self._kept.clear()  # all of it that is still in the topic is read again
        try:
            self._read_all(self._consumer)
        finally:
            self._consumer.unassign()
        return len(self._kept)

    def _read_all(self, consumer: Consumer) -> None:
        metadata = consumer.list_topics(self.topic, timeout=10)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return
        ends: dict[int, int] = {}
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10
            )
            if high > low:
                ends[partition] = high
        if not ends:
            return
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while ends and time.monotonic() < deadline:
            for message in take_ready(consumer, 500, timeout=0.05):
                if message.error() is not None:
                    raise KafkaException(message.error())
                partition, offset = message.partition() or 0, message.offset() or 0
                if partition not in ends:
                    continue
                key, value = message.key() or b"", message.value()
                if not value:  # a tombstone: the schema is gone
                    self._kept.pop(key, None)
                elif not self._registered(key):
                    self._kept[key] = value
                if offset + 1 >= ends[partition]:
                    del ends[partition]

    def _registered(self, key: bytes) -> bool:
        """True when ``key`` is the fingerprint (in hex) of a schema the codec knows."""
        try:
            return self.codec.known(bytes.fromhex(key.decode("ascii")))
        except ValueError:  # not a fingerprint in hex (UnicodeDecodeError is one too)
            return False

    def _register_kept(self, missing: set[bytes]) -> bool:
        """Register the kept schemas of ``missing``, by key, else every kept schema;
        True when some fingerprint of ``missing`` is still unknown."""
        for fp in missing:
            value = self._kept.pop(fp.hex().encode(), None)
            if value is not None:
                self._register(value)
        if all(self.codec.known(fp) for fp in missing):
            return False
        while self._kept:  # keyed otherwise than by its fingerprint: look at them all
            self._register(self._kept.popitem()[1])
        return not all(self.codec.known(fp) for fp in missing)

    def _register(self, value: bytes) -> None:
        # not a schema: skipped, and readers of its fingerprint dead-letter their messages
        with contextlib.suppress(ValueError, TypeError, KeyError):
            self.codec.register(json.loads(value))
