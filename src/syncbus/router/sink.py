"""Writing a batch's output with librdkafka, confirmed batch by batch before it may be acked.

Records are handed to a confluent-kafka Producer (idempotent, ``acks=all``) in one
burst, batched in C. ``write`` returns the batch's ``Delivery``: every record of
that batch reports to it, so when the router writes the next batch before the
broker has confirmed this one (pipelining), each batch is still confirmed on its
own, and a later batch's acknowledgements never stand in for an earlier one's.
Batches go through the one producer in the order written, so per-partition order
holds across batches. A record the broker refused (or librdkafka refused to queue,
e.g. for a topic that does not exist) is produced again after a pause, with its
headers, behind whatever the batch wrote after it, until the broker takes it; only
when the producer reports a fatal error does the process stop, before any offset of
the batch is committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer

from syncbus.connection import Connection
from syncbus.router.engine import BatchOutput, OutMessage

log = logging.getLogger("syncbus.router")
RETRY_BACKOFF = 0.5  # seconds before refused records are sent again

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
    and acknowledged. A delivery report carries no headers (confluent-kafka drops
    them), so a refused record is found as written in the batch's output, by topic,
    key and value, and sent again with its headers.
    """

    __slots__ = ("_by_content", "_output", "_retry_at", "_sink", "pending", "refused")

    def __init__(self, sink: BatchSink, output: BatchOutput) -> None:
        self._sink, self._output = sink, output
        self._by_content: dict[tuple[str, bytes | None, bytes], list[OutMessage]] | None = None
        self._retry_at = 0.0
        self.pending = 0
        self.refused: list[OutMessage] = []

    def on_delivery(self, error: KafkaError | None, msg: Any) -> None:
        if error is None:
            self.pending -= 1
        elif error.fatal():
            raise KafkaException(error)
        else:
            self.refused.append(self._as_written(msg.topic(), msg.key(), msg.value()))
            self._refusal(error)

    def _refusal(self, error: KafkaError) -> None:
        if time.monotonic() >= self._retry_at:  # one line per round of retries
            log.warning("the broker refused records (%s: %s); they are sent again in %.1f s "
                        "and their batch stays unacked until then", error.name(), error.str(),
                        RETRY_BACKOFF)
        self._retry_at = time.monotonic() + RETRY_BACKOFF

    def _as_written(self, topic: str, key: bytes | None, value: bytes) -> OutMessage:
        if self._by_content is None:  # built on the first refusal only
            self._by_content = defaultdict(list)
            output = self._output
            for message in (*output.deliveries, *output.audit, *output.dead):
                self._by_content[message[0], message[1], message[2]].append(message)
        same = self._by_content.get((topic, key, value))
        return same.pop() if same else (topic, key, value, [])

    def _settled(self) -> bool:
        """True once every record is acknowledged; refused ones are sent again first,
        after ``RETRY_BACKOFF``, and again and again until the broker takes them."""
        if self.refused and time.monotonic() >= self._retry_at:
            assert self._by_content is not None  # built by the first refusal
            retry, self.refused = self.refused, []
            for i, message in enumerate(retry):
                try:
                    self._sink.produce(message, self.on_delivery)
                except KafkaException as exc:  # refused before queuing, e.g. unknown topic
                    if exc.args[0].fatal():
                        raise
                    self.refused[:0] = retry[i:]
                    self._refusal(exc.args[0])
                    break
                self._by_content[message[0], message[1], message[2]].append(message)
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
        delivery = Delivery(self, output)
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
