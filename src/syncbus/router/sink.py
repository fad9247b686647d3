"""Writing a batch's output with librdkafka, confirmed before the batch may be acked.

Records are handed to a confluent-kafka Producer (idempotent, ``acks=all``) in one
burst, batched in C; the caller then awaits ``confirmed()``, which polls the
producer without blocking the event loop until every record is acknowledged. A
record the broker refused is produced again; only when the producer reports a
fatal error does the process stop, before any offset of the batch is committed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer

from syncbus.connection import Connection
from syncbus.router.engine import BatchOutput, OutMessage

PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 1000000,
    "queue.buffering.max.kbytes": 1048576,
    "compression.type": "lz4",
}


class BatchSink:
    def __init__(self, connection: Connection, schemas_topic: str, **overrides: Any) -> None:
        self.producer = Producer(connection.confluent(**{**PRODUCER_DEFAULTS, **overrides}))
        self._schemas_topic = schemas_topic
        self._failed: list[OutMessage] = []

    def _on_delivery(self, error: KafkaError | None, msg: Any) -> None:
        """One callback for every record (no closure per record): refused ones are kept."""
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            self._failed.append((msg.topic(), msg.key(), msg.value(), msg.headers() or []))

    def _produce(self, message: OutMessage) -> None:
        topic, key, value, headers = message
        while True:
            try:
                self.producer.produce(
                    topic, value, key, headers=cast(Any, headers), on_delivery=self._on_delivery
                )
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self.producer.poll(0.05)

    def write(self, output: BatchOutput) -> None:
        """Hand everything to librdkafka; view schemas are confirmed before any delivery."""
        if output.schemas:
            for fp_hex, schema in output.schemas:
                self.producer.produce(self._schemas_topic, schema, fp_hex.encode())
            if self.producer.flush(60) > 0:
                raise RuntimeError(f"view schemas not confirmed by {self._schemas_topic}")
        produce, callback = self.producer.produce, self._on_delivery
        for group in (output.deliveries, output.audit, output.dead):
            for topic, key, value, headers in group:
                try:
                    produce(topic, value, key, headers=cast(Any, headers), on_delivery=callback)
                except BufferError:  # local queue full: the slow path waits for room
                    self._produce((topic, key, value, headers))

    async def confirmed(self, poll_interval: float = 0.001) -> None:
        """Wait until every record written so far is acknowledged, re-sending refused ones."""
        while True:
            remaining = self.producer.flush(0)
            if remaining == 0 and not self._failed:
                return
            if self._failed:
                retry, self._failed = self._failed, []
                for message in retry:
                    self._produce(message)
            await asyncio.sleep(poll_interval)

    def confirmed_blocking(self, timeout: float = 300.0) -> None:
        """The same without an event loop (shutdown, the benchmark baseline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            remaining = self.producer.flush(1.0)
            if remaining == 0 and not self._failed:
                return
            retry, self._failed = self._failed, []
            for message in retry:
                self._produce(message)
        raise TimeoutError(f"records not confirmed by the broker within {timeout} s")
