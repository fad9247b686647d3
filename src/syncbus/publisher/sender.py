"""Moving spooled events to Kafka in acceptance order, and forgetting them on ack.

One background thread (the pump) serves librdkafka's delivery reports with
``poll``, deletes acknowledged events from the spool in batches, and feeds the
producer from the spool whenever there is a backlog: after a restart, after a
failed delivery, or when more events are in flight than the window allows. A
fresh batch goes straight from ``publish`` to librdkafka only when nothing older
is waiting, so the send order is always the acceptance (spool id) order, and per
partition librdkafka's idempotent producer keeps that order through retries.

``message.timeout.ms=0``: librdkafka retries a message until the broker takes
it, however long the broker is away; the spool bound, not a timeout, is what
finally pushes back on the caller. A failed delivery report leaves the event
spooled; once everything in flight has reported, sending rewinds to the oldest
failed event after ``retry_backoff``. An event refused for good (too large, not
authorized, no such topic: ``refused.PERMANENT_ERRORS``), by a delivery report or
by ``produce`` itself, is taken off the queue into the spool's ``refused`` table
instead, so it never holds back the events after it (``syncbus.publisher.refused``).
The broker's size refusal is for a whole record batch, so it can hit small events
batched with a big one: it first makes the pump resend what is unconfirmed one
event per batch (a producer with ``batch.num.messages=1``), where an event still
refused for size is refused for good, and then go back to normal batches.
A fatal idempotence error replaces the producer and resends the whole spool;
resends carry the event ids of the first send, so readers can drop duplicates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from syncbus.connection import Connection
from syncbus.core.topics import raw_topic
from syncbus.publisher.changes import Prepared, make_headers
from syncbus.publisher.metrics import PublisherMetrics, observe_many
from syncbus.publisher.refused import RefusedEvent, is_permanent
from syncbus.publisher.spool import Spool

log = logging.getLogger("syncbus.publisher")

Acked = list[int]
Failed = list[tuple[int, str, str]]  # spool id, error name, error text


def _report_into(acked: Acked, failed: Failed, spool_id: int, err: KafkaError | None,
                 msg: Message) -> None:
    if err is None:
        acked.append(spool_id)
    else:
        failed.append((spool_id, err.name(), err.str()))


def _python_report(
    acked: Acked, failed: Failed, spool_id: int
) -> Callable[[KafkaError | None, Message], None]:
    return partial(_report_into, acked, failed, spool_id)


def _send_py(produce: Callable[..., None], topic: str, rows: list[Prepared], first_id: int,
             acked: Acked, failed: Failed, stop_on: tuple[type[BaseException], ...]) -> int:
    for i, (key, value, _, headers) in enumerate(rows):
        try:
            produce(topic, value, key, headers=headers,
                    on_delivery=_python_report(acked, failed, first_id + i))
        except stop_on:
            return i
    return len(rows)


delivery_report: Callable[[Acked, Failed, int], Callable[[KafkaError | None, Message], None]]
send: Callable[..., int]
try:  # the same two in C, compiled from Cython at install time (setup.py)
    from syncbus.publisher._rows import DeliveryReport as delivery_report
    from syncbus.publisher._rows import send
except ImportError:  # no C compiler where this was installed
    delivery_report, send = _python_report, _send_py

FEED_BATCH = 5000
ISOLATING = {"batch.num.messages": 1, "linger.ms": 0}  # one event per record batch
BATCH_TOO_LARGE = "MSG_SIZE_TOO_LARGE"  # the broker's refusal of a record batch
ACK_GATHER = 0.01  # seconds the pump lets delivery reports gather once they arrive
IDLE_POLL = 0.02  # seconds the pump waits for a report when idle: also how long close waits


def producer_config(connection: Connection, window: int, **overrides: Any) -> dict[str, Any]:
    """The librdkafka settings the delivery guarantee depends on (see the module doc)."""
    return connection.confluent(**{
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "message.timeout.ms": 0,
        "linger.ms": 1,
        "queue.buffering.max.messages": window + FEED_BATCH,
        **overrides,
    })


class Sender:
    """Owns the producer and the pump thread; thread-safe ``offer`` for fresh batches."""

    def __init__(
        self,
        spool: Spool,
        connection: Connection,
        source: str,
        metrics: PublisherMetrics,
        window: int = 100_000,
        retry_backoff: float = 1.0,
        on_tick: Callable[[], None] | None = None,
        config: dict[str, Any] | None = None,
        topic_of: Callable[[str], str] = raw_topic,
        on_refused: Callable[[list[RefusedEvent]], None] | None = None,
    ) -> None:
        self._spool = spool
        self._on_refused = on_refused
        self._to_notify: list[list[RefusedEvent]] = []  # filled and read by the pump only
        self._topic_of = topic_of
        self._source = source
        self._metrics = metrics
        self._window = window
        self._backoff = retry_backoff
        self._on_tick = on_tick
        self._config = {
            **producer_config(connection, window, **(config or {})),
            "error_cb": self._on_error,
            "logger": logging.getLogger("syncbus.publisher.librdkafka"),
        }
        self._producer = Producer(self._config)
        self._fatal = False
        self._renew = False  # replace the producer before the next feed
        self._isolate = False  # a batch was too large: resend one event per batch
        self._isolating_upto: int | None = None  # ... until every id up to this settled
        self._lock = threading.Lock()  # guards _sent_upto, _inflight, producing
        self._sent_upto = 0  # every spool id <= this has been handed to librdkafka
        self._inflight = 0
        # filled by the delivery reports of the current producer; a replaced producer's
        # reports go to the lists it was given, which nobody reads any more
        self._acked: Acked = []
        self._failed: Failed = []
        self._rewind_to: int | None = None
        self._rewind_at = 0.0
        self._settled = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syncbus-publisher", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- hot path

    def offer(self, first_id: int, resource: str, rows: list[Prepared]) -> None:
        """Send a just-spooled batch now if nothing older waits and the window has room."""
        with self._lock:
            if (
                self._sent_upto != first_id - 1
                or self._rewind_to is not None
                or self._inflight + len(rows) > self._window
            ):
                return  # the pump sends it, in order, from the spool
            # stops at a full queue or e.g. an unknown topic: the pump sends the rest
            sent = send(self._producer.produce, self._topic_of(resource), rows, first_id,
                        self._acked, self._failed, (BufferError, KafkaException))
            self._inflight += sent
            self._sent_upto = first_id - 1 + sent

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal producer error, replacing the producer: %s", err)
            self._fatal = True
        else:
            log.debug("producer error (librdkafka retries): %s", err)

    # ---------------------------------------------------------------- the pump

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the pump must outlive any one bad turn; events stay spooled
                log.exception("publisher pump failed a turn; retrying in %.1f s", self._backoff)
                self._stop.wait(self._backoff)

    def _step(self) -> None:
        backlog = (  # only then is there anything to do before the next report
            self._sent_upto < self._spool.last_id
            and self._rewind_to is None
            and self._inflight < self._window
        )
        if self._producer.poll(0 if backlog else IDLE_POLL) and not backlog:
            # more reports are on their way: take them in one round, one spool commit
            self._stop.wait(ACK_GATHER)
            self._producer.poll(0)
        self._settle()
        if self._fatal:
            self._replace_producer()
        elif self._isolate:
            self._isolate = False
            self._isolating_upto = self._spool.last_id
            log.warning("the broker refused a record batch as too large; resending what is "
                        "unconfirmed one event per batch, to find the event at fault")
            self._replace_producer(ISOLATING)
        elif self._isolating_upto is not None and self._isolated(self._isolating_upto):
            self._isolating_upto = None
            self._replace_producer()  # back to normal batches; resends what is in flight
        self._feed()
        self._notify()
        if self._on_tick is not None:
            self._on_tick()

    def _settle(self) -> None:
        # the reports are served by ``poll`` in this thread, so nothing appends meanwhile
        acked, failed = self._acked[:], self._failed[:]
        if not acked and not failed:
            return
        self._acked.clear()
        self._failed.clear()
        if acked:
            now = time.time()
            latency, published = self._metrics.latency, self._metrics.published
            # events of one spool batch share their acceptance time, hence one latency
            for accepted_at, resource, n in self._spool.acknowledge(acked):
                observe_many(latency, now - accepted_at, n)
                published.labels(resource).inc(n)
        with self._lock:
            self._inflight -= len(acked) + len(failed)
            failed = self._refuse_permanent(failed)
            if failed:
                oldest = min(spool_id for spool_id, _, _ in failed)
                self._rewind_to = min(oldest, self._rewind_to or oldest)
                self._rewind_at = time.monotonic() + self._backoff
                for _, name, _ in failed:
                    self._metrics.failed.labels(name).inc()
                log.warning(
                    "%d deliveries failed (%s: %s); they stay spooled and are resent in %.1f s",
                    len(failed), failed[0][1], failed[0][2], self._backoff,
                )
        self._metrics.spool_depth.set(self._spool.depth)
        with self._settled:
            self._settled.notify_all()

    def _feed(self) -> None:
        with self._lock:
            if self._renew:
                self._replace_locked(ISOLATING if self._isolating_upto is not None else None)
            if self._rewind_to is not None:
                if self._inflight > 0 or time.monotonic() < self._rewind_at:
                    return
                self._sent_upto = min(self._sent_upto, self._rewind_to - 1)
                self._rewind_to = None
            room = self._window - self._inflight
            if room <= 0 or self._sent_upto >= self._spool.last_id:
                return
            limit = min(room, FEED_BATCH)
            upto = self._spool.last_id  # read first: rows up to it are all in the query
            rows = self._spool.pending(self._sent_upto, limit)
            acked, failed = self._acked, self._failed
            for row in rows:
                try:
                    self._producer.produce(
                        self._topic_of(row.resource), row.value, row.key,
                        headers=make_headers(self._source, row.resource, row.value, row.meta),
                        on_delivery=delivery_report(acked, failed, row.id),
                    )
                except BufferError:
                    break
                except KafkaException as exc:  # refused before queuing, e.g. unknown topic
                    err = exc.args[0]
                    if is_permanent(err.name()):  # off the queue: the next ones go on
                        self._refuse([row.id], err.name(), err.str())
                        self._sent_upto = row.id
                        continue
                    self._refused(row.id, err)
                    break
                self._inflight += 1
                self._sent_upto = row.id
            else:
                if len(rows) < limit:  # ids up to ``upto`` not returned were acked already
                    self._sent_upto = max(self._sent_upto, upto)

    def _isolated(self, upto: int) -> bool:
        """Has every event up to ``upto`` (all that was unconfirmed when a batch was too
        large) been confirmed or refused, one per batch?"""
        if self._sent_upto < upto or self._rewind_to is not None:
            return False
        first = self._spool.pending(0, 1)
        return not first or first[0].id > upto

    def _refuse_permanent(self, failed: Failed) -> Failed:
        """Keep the refused-for-good of ``failed`` aside; returns the ones to retry."""
        retry: Failed = []
        by_error: dict[tuple[str, str], list[int]] = {}
        isolating = self._isolating_upto is not None
        for spool_id, name, text in failed:
            if name == BATCH_TOO_LARGE and not isolating:
                self._isolate = True  # maybe a small event batched with a big one
                retry.append((spool_id, name, text))
            elif is_permanent(name):
                by_error.setdefault((name, text), []).append(spool_id)
            else:
                retry.append((spool_id, name, text))
        for (name, text), ids in by_error.items():
            self._refuse(ids, name, text)
        return retry

    def _refuse(self, ids: list[int], name: str, text: str) -> None:
        refused = self._spool.refuse(ids, name, text, time.time())
        for event in refused:
            self._metrics.refused.labels(event.resource, name).inc()
        if not refused:
            return
        log.error("the broker refused %d events for good (%s: %s), first %s; they are kept "
                  "in the spool's refused table and the events after them go on",
                  len(refused), name, text, refused[0])
        self._to_notify.append(refused)

    def _notify(self) -> None:
        """Tell the host of refused events, outside every lock (it may publish)."""
        while self._to_notify:
            refused = self._to_notify.pop(0)
            if self._on_refused is not None:
                try:
                    self._on_refused(refused)
                except Exception:  # the host's callback must not stop the pump
                    log.exception("the on_refused callback failed")

    def _refused(self, spool_id: int, err: KafkaError) -> None:
        """``produce`` itself refused an event: retry from it after the backoff."""
        self._metrics.failed.labels(err.name()).inc()
        self._rewind_to = spool_id
        self._rewind_at = time.monotonic() + self._backoff
        log.warning("librdkafka refused an event (%s: %s); it stays spooled and is retried "
                    "in %.1f s", err.name(), err.str(), self._backoff)

    def renew_producer(self) -> None:
        """Send with a fresh producer from the next feed on: one whose metadata knows of a
        topic created since (librdkafka keeps refusing one it found missing)."""
        with self._lock:
            self._renew = True

    def _replace_producer(self, overrides: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._replace_locked(overrides)

    def _replace_locked(self, overrides: dict[str, Any] | None = None) -> None:
        self._acked, self._failed = [], []  # the old producer's reports are not read
        old, self._producer = self._producer, Producer({**self._config, **(overrides or {})})
        old.purge()
        self._fatal = self._renew = False
        self._inflight = 0
        self._sent_upto = 0
        self._rewind_to = None

    # ---------------------------------------------------------------- lifecycle

    def wait(self, timeout: float) -> int:
        """Block until the spool is empty or ``timeout`` passes; the events left."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self._spool.depth > 0:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    break
                self._settled.wait(min(left, 0.1))
        return self._spool.depth

    def close(self) -> None:
        """Stop the pump; whatever is unacknowledged stays spooled for the next run."""
        self._stop.set()
        self._thread.join()
        self._producer.poll(0)
        self._settle()
        self._notify()
        self._producer.purge()
        self._producer.poll(0)
