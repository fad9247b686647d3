"""The router's sink on a real broker: a record the broker refuses for good is
dead-lettered with its reason, and the batch (and the stream) goes on.

Refused for good: a topic that does not exist once librdkafka waited for it, a
record above its topic's size limit (refused by the broker), a record above the
producer's own limit (refused synchronously by ``produce``, a ``KafkaException``).
Each becomes a bodiless dead letter naming the topic, the event and the refusal;
the other records of the batch are written; the batch is confirmed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.router.engine import BatchOutput, OutMessage
from syncbus.router.sink import BatchSink, ChangelogWriter
from tests.router_helpers import read_topic


def _delivery(topic: str, size: int) -> tuple[OutMessage, bytes]:
    """A delivery whose value starts as an envelope does: magic, fingerprint, event id."""
    event_id = str(uuid.uuid4()).encode()
    value = b"\xc3\x01" + b"\x00" * 8 + b"\x48" + event_id
    value += os.urandom(max(0, size - len(value)))  # random: compression does not shrink it
    return (topic, event_id[:8], value, [(t.H_SOURCE_PARTITION, b"0")]), event_id


def test_records_refused_for_good_are_dead_lettered_and_the_batch_goes_on(kafka) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    small, audit, dlq = f"sink.{run}.small", f"sink.{run}.audit", f"sink.{run}.dlq"
    missing, fine = f"sink.{run}.missing", f"sink.{run}.fine"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    topics = [NewTopic(n, 1, 1) for n in (audit, dlq, fine)]
    topics.append(NewTopic(small, 1, 1, config={"max.message.bytes": "2000"}))
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    too_big, big_id = _delivery(small, 5000)  # refused by the broker: over its topic's limit
    huge, huge_id = _delivery(fine, 5 * 1024 * 1024)  # refused by produce: over the producer's
    lost, lost_id = _delivery(missing, 100)  # refused once librdkafka waited for the topic
    kept = [_delivery(fine, 100)[0], _delivery(small, 100)[0]]
    output = BatchOutput(deliveries=[too_big, kept[0], huge, lost, kept[1]],
                         audit=[(audit, b"a", b"{}", [])])
    sink = BatchSink(Connection(kafka.bootstrap), f"sink.{run}.schemas", dlq,
                     **{"topic.metadata.propagation.max.ms": 300})
    delivery = sink.write(output)  # a synchronous refusal does not raise
    confirmed = threading.Event()
    failed: list[BaseException] = []

    def confirm() -> None:
        try:
            delivery.confirmed_blocking(60)
            confirmed.set()
        except BaseException as exc:
            failed.append(exc)

    threading.Thread(target=confirm, daemon=True).start()
    assert confirmed.wait(45), f"the batch was not confirmed: {failed}"
    letters = read_topic(kafka.bootstrap, dlq, 2.0)
    by_event = {dict(m.headers())[t.H_DLQ_EVENT_ID]: m for m in letters}
    assert set(by_event) == {big_id, huge_id, lost_id} and len(letters) == 3
    for event_id, topic, reason in ((big_id, small, b"MSG_SIZE_TOO_LARGE"),
                                    (huge_id, fine, b"MSG_SIZE_TOO_LARGE"),
                                    (lost_id, missing, b"UNKNOWN_TOPIC")):
        headers = dict(by_event[event_id].headers())
        assert by_event[event_id].value() is None
        assert headers[t.H_DLQ_TOPIC] == topic.encode()
        assert reason in headers[t.H_DLQ_ERROR_CLASS] and headers[t.H_DLQ_ERROR]
    written = {m.value() for m in read_topic(kafka.bootstrap, fine, 1.0)}
    written |= {m.value() for m in read_topic(kafka.bootstrap, small, 1.0)}
    assert written == {m[2] for m in kept}
    assert len(read_topic(kafka.bootstrap, audit, 1.0)) == 1


def test_changelog_writer_confirms_a_batch_of_records_or_fails_it(kafka) -> None:  # type: ignore[no-untyped-def]
    """The sequence table's records, written ahead of a batch: the future is done once
    the broker holds all of them (as written, in their partitions), and fails when it
    refuses one, so that nothing of the batch is written."""
    topic = f"sink.{uuid.uuid4().hex[:8]}.changelog"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    writer = ChangelogWriter(Connection(kafka.bootstrap), topic,
                             **{"topic.metadata.propagation.max.ms": 300})
    records = [(0, b'"a/r/0"', b"3"), (1, b'"b/r/1"', b"7"), (0, b'"a/r/0"', b"4")]

    async def write(batch: list[tuple[int, bytes, bytes]]) -> None:
        await asyncio.wait_for(writer.write(batch), 30)

    try:
        asyncio.run(write(records))
        asyncio.run(write([]))  # a batch that numbers nothing is recorded at once
        held = read_topic(kafka.bootstrap, topic, 1.0)
        assert sorted((m.partition(), m.key(), m.value()) for m in held) == sorted(records)
        with pytest.raises(KafkaException):  # partition 5 of a topic of 2: refused
            asyncio.run(write([(1, b'"c/r/1"', b"1"), (5, b'"c/r/5"', b"1")]))
    finally:
        writer.close()
