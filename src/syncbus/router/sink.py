"""Writing a batch's output with librdkafka, confirmed batch by batch before it may be acked.

Records are handed to a confluent-kafka Producer (idempotent, ``acks=all``) in one
burst, batched in C. ``write`` returns the batch's ``Delivery``: every record of
that batch reports to it, so when the router writes the next batch before the
broker has confirmed this one (pipelining), each batch is still confirmed on its
own, and a later batch's acknowledgements never stand in for an earlier one's.
Batches go through the one producer in the order written, so per-partition order
holds across batches. A record the broker refused is produced again; only when the
producer reports a fatal error does the process stop, before any offset of the
batch is committed.
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


class Delivery:
    """The records of one batch that the broker has not acknowledged yet.

    One bound ``on_delivery`` per batch instead of a closure per record: the count
    is all a batch needs. A refused record stays counted until it is produced again
    and acknowledged.
    """

    __slots__ = ("_sink", "pending", "refused")

    def __init__(self, sink: BatchSink) -> None:
        self._sink = sink
        self.pending = 0
        self.refused: list[OutMessage] = []

    def on_delivery(self, error: KafkaError | None, msg: Any) -> None:
        if error is None:
            self.pending -= 1
        elif error.fatal():
            raise KafkaException(error)
        else:
            self.refused.append((msg.topic(), msg.key(), msg.value(), msg.headers() or []))

    def _settled(self) -> bool:
        """True once every record is acknowledged; refused ones are sent again first."""
        if self.refused:
            retry, self.refused = self.refused, []
            for message in retry:
                self._sink.produce(message, self.on_delivery)
        return self.pending == 0

    async def confirmed(self, poll_interval: float = 0.001) -> None:
        """Wait, without blocking the event loop, until the broker acknowledged it all."""
        poll = self._sink.producer.poll
        while True:
            poll(0)
            if self._settled():
                return
            await asyncio.sleep(poll_interval)

    def confirmed_blocking(self, timeout: float = 300.0) -> None:
        """The same without an event loop (shutdown, the benchmark baseline)."""
        poll = self._sink.producer.poll
        deadline = time.monotonic() + timeout
        while not self._settled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"records not confirmed by the broker within {timeout} s")
            poll(0.05)


class BatchSink:
    def __init__(self, connection: Connection, schemas_topic: str, **overrides: Any) -> None:
        self.producer = Producer(connection.confluent(**{**PRODUCER_DEFAULTS, **overrides}))
        self._schemas_topic = schemas_topic

    def produce(self, message: OutMessage, on_delivery: Any) -> None:
        """One record, waiting for room when librdkafka's local queue is full."""
        topic, key, value, headers = message
        while True:
            try:
                self.producer.produce(
                    topic, value, key, headers=cast(Any, headers), on_delivery=on_delivery
                )
                return
            except BufferError:  # local queue full: let librdkafka drain it
                self.producer.poll(0.05)

    def write(self, output: BatchOutput) -> Delivery:
        """Hand everything to librdkafka; view schemas are confirmed before any delivery."""
        if output.schemas:
            for fp_hex, schema in output.schemas:
                self.producer.produce(self._schemas_topic, schema, fp_hex.encode())
            if self.producer.flush(60) > 0:
                raise RuntimeError(f"view schemas not confirmed by {self._schemas_topic}")
        delivery = Delivery(self)
        # counted before producing: a report served while waiting for room must find it
        delivery.pending = len(output.deliveries) + len(output.audit) + len(output.dead)
        produce, callback = self.producer.produce, delivery.on_delivery
        for group in (output.deliveries, output.audit, output.dead):
            for topic, key, value, headers in group:
                try:
                    produce(topic, value, key, headers=cast(Any, headers), on_delivery=callback)
                except BufferError:  # local queue full: the slow path waits for room
                    self.produce((topic, key, value, headers), callback)
        return delivery
