"""Writing a batch's output with librdkafka, confirmed batch by batch before it may be acked.

Records are handed to a confluent-kafka Producer (idempotent, ``acks=all``) in one
burst, batched in C. ``write`` returns the batch's ``Delivery``, which is confirmed
once the producer holds nothing unacknowledged (``len(producer) == 0``) and none
of the batch's refused records awaits its retry. The producer reports failed
records only (``delivery.report.only.error``): a report per successful record cost
the router's one thread a Python call and a message object for each of about
four records per event, a fifth of its time. When the router writes the next batch
before the broker has confirmed this one (pipelining), both are confirmed when
both are written, so a later batch's acknowledgements never stand in for an
earlier one's. Batches go through the one producer in the order written, so
per-partition order holds across batches. A record the broker refused (or
librdkafka refused to queue, e.g. for a topic that does not exist) is produced
again after a pause, with its headers, behind whatever the batch wrote after it,
until the broker takes it; only when the producer reports a fatal error does the
process stop, before any offset of the batch is committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
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
    "delivery.report.only.error": True,
}


class Delivery:
    """The records of one batch that the broker may not have acknowledged yet.

    A delivery report carries no headers (confluent-kafka drops them), so a refused
    record is found as written in the batch's output, by topic, key and value, and
    sent again with its headers.
    """

    __slots__ = ("_by_content", "_output", "_retry_at", "_sink", "done", "refused")

    def __init__(self, sink: BatchSink, output: BatchOutput) -> None:
        self._sink, self._output = sink, output
        self._by_content: dict[tuple[str, bytes | None, bytes], list[OutMessage]] | None = None
        self._retry_at = 0.0
        self.refused: list[OutMessage] = []
        self.done = False  # confirmed: every record acknowledged by the broker

    def take(self, topic: str, key: bytes | None, value: bytes) -> OutMessage | None:
        """The record of this batch written as (topic, key, value), or None."""
        if self._by_content is None:  # built on the first refusal only
            self._by_content = defaultdict(list)
            output = self._output
            for message in (*output.deliveries, *output.audit, *output.dead):
                self._by_content[message[0], message[1], message[2]].append(message)
        same = self._by_content.get((topic, key, value))
        return same.pop() if same else None

    def refuse(self, message: OutMessage, error: KafkaError) -> None:
        self.refused.append(message)
        self._refusal(error)

    def _refusal(self, error: KafkaError) -> None:
        if time.monotonic() >= self._retry_at:  # one line per round of retries
            log.warning("the broker refused records (%s: %s); they are sent again in %.1f s "
                        "and their batch stays unacked until then", error.name(), error.str(),
                        RETRY_BACKOFF)
        self._retry_at = time.monotonic() + RETRY_BACKOFF

    def _settled(self) -> bool:
        """True once every record is acknowledged; refused ones are sent again first,
        after ``RETRY_BACKOFF``, and again and again until the broker takes them."""
        if self.refused and time.monotonic() >= self._retry_at:
            assert self._by_content is not None  # built by the first refusal
            retry, self.refused = self.refused, []
            for i, message in enumerate(retry):
                try:
                    self._sink.produce(message)
                except KafkaException as exc:  # refused before queuing, e.g. unknown topic
                    if exc.args[0].fatal():
                        raise
                    self.refused[:0] = retry[i:]
                    self._refusal(exc.args[0])
                    break
                self._by_content[message[0], message[1], message[2]].append(message)
        return not self.refused and self._sink.idle()

    async def confirmed(self, poll_interval: float = 0.004) -> None:
        """Wait, without blocking the event loop, until the broker acknowledged it all.

        ``poll`` (which serves refusal reports) hands the interpreter lock to the
        consumer thread and back, so it runs every few ms, not on every turn; a
        refusal report keeps ``len(producer)`` above 0 until it is served."""
        poll = self._sink.producer.poll
        while True:
            if self._settled():
                self._confirm()
                return
            poll(0)
            await asyncio.sleep(poll_interval)

    def confirmed_blocking(self, timeout: float = 300.0) -> None:
        """The same without an event loop (shutdown, the benchmark baseline)."""
        poll = self._sink.producer.poll
        deadline = time.monotonic() + timeout
        poll(0)
        while not self._settled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"records not confirmed by the broker within {timeout} s")
            poll(0.05)
        self._confirm()

    def _confirm(self) -> None:
        self.done = True
        self._sink.forget(self)


class BatchSink:
    def __init__(self, connection: Connection, schemas_topic: str, **overrides: Any) -> None:
        config = {**PRODUCER_DEFAULTS, **overrides, "on_delivery": self._report}
        self.producer = Producer(connection.confluent(**config))
        self._schemas_topic = schemas_topic
        self._unconfirmed: deque[Delivery] = deque()  # written, oldest first

    def _report(self, error: KafkaError | None, msg: Any) -> None:
        """librdkafka's report of a record it could not deliver (only those are reported,
        unless ``overrides`` asked for every report)."""
        if error is None:
            return
        if error.fatal():
            raise KafkaException(error)
        topic, key, value = msg.topic(), msg.key(), msg.value()
        for delivery in self._unconfirmed:
            message = delivery.take(topic, key, value)
            if message is not None:
                delivery.refuse(message, error)
                return
        raise RuntimeError(  # every record written belongs to a batch not yet confirmed
            f"the broker refused a record to {topic} that no unconfirmed batch wrote ({error})"
        )

    def idle(self) -> bool:
        """True when every record written so far was acknowledged or reported refused."""
        return len(self.producer) == 0

    def forget(self, delivery: Delivery) -> None:
        if delivery in self._unconfirmed:
            self._unconfirmed.remove(delivery)

    def produce(self, message: OutMessage) -> None:
        """One record, waiting for room when librdkafka's local queue is full."""
        topic, key, value, headers = message
        while True:
            try:
                self.producer.produce(topic, value, key, headers=cast(Any, headers))
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
        self._unconfirmed.append(delivery)  # before producing: a report may come meanwhile
        produce = self.producer.produce
        for group in (output.deliveries, output.audit, output.dead):
            for topic, key, value, headers in group:
                try:
                    produce(topic, value, key, headers=cast(Any, headers))
                except BufferError:  # local queue full: the slow path waits for room
                    self.produce((topic, key, value, headers))
        return delivery
