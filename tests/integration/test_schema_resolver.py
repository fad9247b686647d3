"""Writer schemas are found in a schemas topic with one read, and parsed only when asked for.

A subscriber's first event waits for its writer schema; parsing every schema of the
topic to find one cost the shipped bus's 19 schemas ~50 ms there
(``subscriber.schemas``). This checks, on a real broker and a topic of its own, that
one read serves every later question about what it read, that only the schemas
asked for are parsed, that a schema keyed otherwise than by its fingerprint is
still found, and that a deleted (tombstoned) schema is not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from syncbus.connection import Connection
from syncbus.core.codec import Codec, fingerprint
from syncbus.subscriber.schemas import SchemaResolver
from tests.conftest import LocalKafka

pytestmark = pytest.mark.integration


def _schema(name: str) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": [{"name": "a", "type": "long"}]}


def test_one_read_serves_every_schema_it_read_and_parses_only_those_asked_for(
    kafka: LocalKafka, create_topic: Callable[..., str]
) -> None:
    topic = create_topic("schemas")
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    a, b, odd, gone, later = (_schema(n) for n in ("A", "B", "Odd", "Gone", "Later"))
    for schema in (a, b, gone):
        producer.produce(topic, json.dumps(schema).encode(), fingerprint(schema).hex().encode())
    producer.produce(topic, json.dumps(odd).encode(), b"not-a-fingerprint")
    producer.produce(topic, None, fingerprint(gone).hex().encode())  # deleted
    assert producer.flush(30) == 0

    codec = Codec()
    resolver = SchemaResolver(Connection(kafka.bootstrap), codec, topic)
    try:
        assert resolver.ensure([fingerprint(a)]) == set()
        assert codec.known(fingerprint(a)) and resolver.scans == 1
        assert not codec.known(fingerprint(b))  # read, kept, not parsed: nobody asked
        assert resolver.ensure([fingerprint(b)]) == set()
        assert resolver.scans == 1  # from what the first read kept
        assert resolver.ensure([fingerprint(odd)]) == set()  # found among all kept
        assert resolver.scans == 1
        assert resolver.ensure([fingerprint(gone)]) == {fingerprint(gone)}
        assert resolver.scans == 2  # not kept: the topic was read again, to no avail

        producer.produce(topic, json.dumps(later).encode(), fingerprint(later).hex().encode())
        assert producer.flush(30) == 0
        assert resolver.ensure([fingerprint(later), fingerprint(a)]) == set()
        assert resolver.scans == 3  # the same consumer reads the topic from its start again
        # what the codec knows is not kept again; the oddly keyed one cannot be told apart
        assert resolver.load() == 1
    finally:
        resolver.close()
