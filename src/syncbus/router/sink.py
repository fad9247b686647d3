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
per-partition order holds across batches.

A record the broker refused for a passing reason (a leader moving, a timeout) is
produced again after a pause, with its headers, behind whatever the batch wrote
after it, until the broker takes it. A record it refuses for good (too large, not
authorized, a topic that still does not exist after librdkafka's metadata wait;
``PERMANENT``), whether in a delivery report or synchronously from ``produce``,
is replaced by a dead letter naming its topic, event and the refusal, without its
body, and the batch goes on. Only what cannot even be dead-lettered (the dead
letter topic itself refuses), a fatal producer error or a failing schema write
stops the process, before any offset of the batch is committed: that is a broken
router, not bad input.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict, deque
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer

from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.core.codec import HEADER_LEN
from syncbus.router.engine import BatchOutput, OutMessage

log = logging.getLogger("syncbus.router")
RETRY_BACKOFF = 0.5  # seconds before refused records are sent again

PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 1,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 1000000,
    "queue.buffering.max.kbytes": 1048576,
    "compression.type": "lz4",
    "delivery.report.only.error": True,
    # above the broker's per-topic limit (1 MiB by default), so an oversized record is
    # refused by the broker for its topic, and a raw event that fitted its raw topic
    # fits ``syncbus.quarantine`` (``apply`` gives it this limit)
    "message.max.bytes": 4 * 1024 * 1024 + 4096,
}
# refusals that no retry changes; a missing topic is one once librdkafka waited
# ``topic.metadata.propagation.max.ms`` for it to appear
PERMANENT = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
})


_Content = tuple[str, bytes | None, bytes | None]  # topic, key, value: what a report names


class Delivery:
    """The records of one batch that the broker may not have acknowledged yet.

    A delivery report carries no headers (confluent-kafka drops them), so a refused
    record is found as written in the batch's output, by topic, key and value, and
    sent again with its headers.
    """

    __slots__ = ("_by_content", "_output", "_retry_at", "_sent_alone", "_sink", "alone", "done",
                 "refused", "replaced")

    def __init__(self, sink: BatchSink, output: BatchOutput) -> None:
        self._sink, self._output = sink, output
        self._by_content: dict[_Content, list[OutMessage]] | None = None
        self._retry_at = 0.0
        self.refused: list[OutMessage] = []  # refused for now: sent again after a pause
        self.replaced: list[OutMessage] = []  # dead letters of records refused for good
        self.alone: list[OutMessage] = []  # in a batch refused as too large: try each alone
        self._sent_alone: set[int] = set()  # ids of the records that were
        self.done = False  # confirmed: every record acknowledged by the broker

    def take(self, topic: str, key: bytes | None, value: bytes | None) -> OutMessage | None:
        """The record of this batch written as (topic, key, value), or None."""
        if self._by_content is None:  # built on the first refusal only
            self._by_content = defaultdict(list)
            output = self._output
            for message in (*output.deliveries, *output.audit, *output.dead, *output.quarantine):
                self._by_content[message[0], message[1], message[2]].append(message)
        same = self._by_content.get((topic, key, value))
        return same.pop() if same else None

    def refuse(self, message: OutMessage, error: KafkaError, alone: bool = False) -> None:
        """Decide what becomes of a refused record: sent again later, sent again alone,
        or replaced by its dead letter. ``alone``: the refusal was about this record
        only (``produce`` refused it, or it was the only record of its request)."""
        if error.code() not in PERMANENT:
            self.refused.append(message)
            self._refusal(error)
            return
        alone = alone or id(message) in self._sent_alone
        if error.code() == KafkaError.MSG_SIZE_TOO_LARGE and not alone:
            # the broker refuses a whole batch for one record above the limit: each of
            # its records is tried again alone, and only one refused alone is too large
            self.alone.append(message)
            return
        letter = refused_letter(message, error, self._sink.dlq_topic)
        if letter is None:  # the dead letter topic refuses even bodiless records
            raise RuntimeError(
                f"the broker refused a dead letter for good ({error.name()}: {error.str()}); "
                f"the router cannot dead-letter and stops: check {message[0]} exists and "
                f"the router may write it"
            )
        log.warning("the broker refused a record to %s for good (%s: %s); it is "
                    "dead-lettered without its body", message[0], error.name(), error.str())
        self.replaced.append(letter)

    def _refusal(self, error: KafkaError) -> None:
        if time.monotonic() >= self._retry_at:  # one line per round of retries
            log.warning("the broker refused records (%s: %s); they are sent again in %.1f s "
                        "and their batch stays unacked until then", error.name(), error.str(),
                        RETRY_BACKOFF)
        self._retry_at = time.monotonic() + RETRY_BACKOFF

    def _settled(self) -> bool:
        """True once every record is acknowledged; dead letters of records refused for
        good are sent first, refused ones again after ``RETRY_BACKOFF``, and again and
        again until the broker takes them."""
        while self.alone:  # rare (oversized input): the loop waits for each round trip
            message = self.alone.pop(0)
            self._sink.producer.flush(60)  # nothing else in flight: it travels alone
            self._sent_alone.add(id(message))
            if self._send(message):
                self._sink.producer.flush(60)  # a refusal now replaces it (``refuse``)
        while self.replaced:
            letters, self.replaced = self.replaced, []
            for message in letters:
                self._send(message)
        if self.refused and time.monotonic() >= self._retry_at:
            retry, self.refused = self.refused, []
            for i, message in enumerate(retry):
                if not self._send(message):  # it is in ``refused`` again, or replaced
                    self.refused += retry[i + 1 :]  # in their order, behind it
                    break
        return not (self.refused or self.replaced or self.alone) and self._sink.idle()

    def _send(self, message: OutMessage) -> bool:
        """Produce a record again; False when it was refused before queuing (then it is
        in ``refused`` or replaced by its dead letter, as ``refuse`` decides)."""
        self.take(message[0], message[1], message[2])  # builds the index on first use
        assert self._by_content is not None
        try:
            self._sink.produce(message)
        except KafkaException as exc:  # refused before queuing, e.g. unknown topic
            if exc.args[0].fatal():
                raise
            self.refuse(message, exc.args[0], alone=True)
            return False
        self._by_content[message[0], message[1], message[2]].append(message)
        return True

    async def confirmed(self, poll_interval: float = 0.001) -> None:
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
    def __init__(
        self, connection: Connection, schemas_topic: str, dlq_topic: str = t.DLQ_TOPIC,
        **overrides: Any,
    ) -> None:
        config = {**PRODUCER_DEFAULTS, **overrides, "on_delivery": self._report}
        self.producer = Producer(connection.confluent(**config))
        self._schemas_topic = schemas_topic
        self.dlq_topic = dlq_topic
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
        for group in (output.deliveries, output.audit, output.dead, output.quarantine):
            for topic, key, value, headers in group:
                try:
                    produce(topic, value, key, headers=cast(Any, headers))
                except BufferError:  # local queue full: the slow path waits for room
                    self._produce_refusable(delivery, (topic, key, value, headers))
                except KafkaException as exc:  # refused before queuing (size, topic)
                    if exc.args[0].fatal():
                        raise
                    delivery.refuse((topic, key, value, headers), exc.args[0], alone=True)
        return delivery

    def _produce_refusable(self, delivery: Delivery, message: OutMessage) -> None:
        try:
            self.produce(message)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            delivery.refuse(message, exc.args[0], alone=True)


ChangelogRecord = tuple[int, bytes, bytes]  # partition, key, value: as Faust's table writes them

CHANGELOG_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 0,  # a handful of records per batch, and every delivery waits for them
}


class ChangelogWriter:
    """Writes the sequence table's changelog records ahead of a batch's deliveries.

    The records go through librdkafka (idempotent, ``acks=all``), and a thread of
    this writer serves the delivery reports as they come, waking the event loop
    at once: measured at 2,000 ev/s, awaiting the same records through Faust's
    producer (a buffer task, then aiokafka on the router's busy event loop) was
    the largest wait of the router's own latency. ``write`` returns a future that
    is done when the broker acknowledged every record, and fails with the first
    refusal: nothing of a batch whose numbers are not recorded may be written.
    """

    def __init__(self, connection: Connection, topic: str, **overrides: Any) -> None:
        self.topic = topic
        self.producer = Producer(connection.confluent(**{**CHANGELOG_DEFAULTS, **overrides}))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, name="syncbus-router-changelog", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def write(self, records: list[ChangelogRecord]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not records:
            done.set_result(None)
            return done
        report = _Countdown(loop, done, len(records))
        for partition, key, value in records:
            self.producer.produce(self.topic, value, key, partition=partition,
                                  on_delivery=report)
        return done

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join()
        self.producer.flush(timeout)


class _Countdown:
    """The delivery report of a batch's changelog records, called in the writer's thread."""

    __slots__ = ("_done", "_left", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None],
                 left: int) -> None:
        self._loop, self._done, self._left = loop, done, left

    def __call__(self, error: KafkaError | None, _msg: Any) -> None:
        if self._left <= 0:
            return  # failed already
        if error is not None:
            self._left = 0
            self._loop.call_soon_threadsafe(_settle, self._done, KafkaException(error))
            return
        self._left -= 1
        if self._left == 0:
            self._loop.call_soon_threadsafe(_settle, self._done, None)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def refused_letter(message: OutMessage, error: KafkaError, dlq_topic: str) -> OutMessage | None:
    """The dead letter of a record the broker refused for good: its topic, its event
    (when the record is a delivery or an audit record) and the refusal, with no body;
    None when the record is already a bodiless dead letter, which nothing replaces.

    A refused dead letter keeps its own metadata; a refused quarantine record keeps
    its metadata but not the raw key it carried (only the quarantine may hold that).
    """
    topic, _key, value, headers = message
    reason = f"refused by the broker for good, body left out: {error.name()}: {error.str()}"
    if topic == dlq_topic and value is None:
        return None
    kept = [h for h in headers if h[0].startswith(_DLQ_PREFIX) and h[0] != t.H_DLQ_KEY]
    if kept:  # a dead letter or its quarantine record: the event's origin is known
        letter = [h for h in kept if h[0] != t.H_DLQ_ERROR]
        before = dict(kept).get(t.H_DLQ_ERROR, b"").decode(errors="replace")
        letter.append((t.H_DLQ_ERROR, f"{before}; {reason} ({topic})".encode()[:2000]))
        return (dlq_topic, None, None, letter)
    letter = [
        (t.H_DLQ_TOPIC, topic.encode()),
        (t.H_DLQ_ERROR_CLASS, error.name().encode()),
        (t.H_DLQ_ERROR, reason.encode()[:2000]),
        (t.H_DLQ_TIME, str(int(time.time() * 1_000_000)).encode()),
    ]
    event_id = _event_id_of(value)
    if event_id is not None:
        letter.append((t.H_DLQ_EVENT_ID, event_id))
    return (dlq_topic, None, None, letter)


_DLQ_PREFIX = "syncbus-dlq-"
_AUDIT_HEAD = b'{"event_id": "'


def _event_id_of(value: bytes | None) -> bytes | None:
    """The event id of a delivery (the envelope's first field, 36 characters after its
    length byte) or of an audit record (its JSON's first value); None otherwise."""
    if not value:
        return None
    if value.startswith(_AUDIT_HEAD):
        found = value[len(_AUDIT_HEAD) : len(_AUDIT_HEAD) + 36]
    elif value[HEADER_LEN : HEADER_LEN + 1] == b"\x48":  # zig-zag 36
        found = value[HEADER_LEN + 1 : HEADER_LEN + 37]
    else:
        return None
    return found if len(found) == 36 and found.isascii() else None
