"""The session broker is a real Kafka: both client libraries we use talk to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Producer

from tests.conftest import LocalKafka

N = 500


def test_confluent_kafka_produce_and_consume(
    kafka: LocalKafka, create_topic: Callable[..., str]
) -> None:
    topic = create_topic("ck", partitions=3)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    sent = {f"id-{i}".encode() for i in range(N)}
    for value in sent:
        producer.produce(topic, value=value, key=value[-1:])
    assert producer.flush(30) == 0

    consumer = Consumer({
        "bootstrap.servers": kafka.bootstrap,
        "group.id": f"g-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    received: list[bytes] = []
    try:
        for _ in range(60):
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                assert message.error() is None, message.error()
                received.append(message.value())
            if len(received) >= N:
                break
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)


def test_aiokafka_produce_and_consume(
    kafka: LocalKafka, create_topic: Callable[..., str]
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = create_topic("aio", partitions=2)
    sent = [f"aio-{i}".encode() for i in range(N)]

    async def roundtrip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        try:
            batch = [await producer.send(topic, value) for value in sent]
            await asyncio.gather(*batch)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka.bootstrap, group_id=f"g-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        received: list[bytes] = []
        try:
            while len(received) < N:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                for records in batches.values():
                    received.extend(record.value for record in records)
        finally:
            await consumer.stop()
        return received

    assert sorted(asyncio.run(roundtrip())) == sorted(sent)
