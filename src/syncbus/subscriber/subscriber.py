"""``Subscriber``: a city or district system's view of the bus, at least once, handled once.

The loop per batch: consume from ``share.<subscriber>.<resource>`` -> decode, gap
check, dedupe (``BatchPreparer``) -> handler with retries -> record each handled id in
the dedupe store -> flush dead letters -> commit the store -> commit Kafka offsets.
Offsets therefore never pass an event that was not handled or dead-lettered, and a
redelivered event whose id was recorded is skipped. Offsets are committed
asynchronously, at most every ``COMMIT_EVERY_S`` and whenever the share topics have
nothing more or the loop is left; on a revoke or a close, synchronously. A handler
that takes the store (``transactional=True``) writes through the store's connection
inside the same transaction as its id, which makes its effect exactly-once across
``kill -9``; a plain handler's id is committed right after it returns, so only a
crash in between those two steps repeats it.

Versions and resyncs (issue #17, ``batch`` and ``gaps`` hold the rules): a delivery
older than the version held for its key is not handed on (``Event.version``,
``Event.resync``); the version of each handled delivery is held in the store in the
handler's transaction. Resync markers never reach the handler and are never
dead-lettered: ``on_resync_begin(info)`` is called at the first marker of a resync
and ``on_resync_end(info)`` once end markers are recorded for every partition of its
share topic (``gaps.ResyncInfo``), each once per resync and store, inside the batch
transaction (a callback may write through ``subscriber.store``, exactly once with the
marker; if it raises, the loop stops before the marker and it comes again; a crash
after a callback and before the batch commits calls it again, as with a handler).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from syncbus import settings
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.codec import Codec
from syncbus.core.topics import subscriber_dlq_topic
from syncbus.subscriber.batch import BatchPreparer, Item
from syncbus.subscriber.dlq import DeadLetters, HandlerFailed, RetryPolicy
from syncbus.subscriber.event import Event
from syncbus.subscriber.gaps import Gap, GapChecker, ResyncInfo, advance
from syncbus.subscriber.metrics import SubscriberMetrics
from syncbus.subscriber.polling import take_ready
from syncbus.subscriber.schemas import SchemaResolver, reader_event_schema
from syncbus.subscriber.store import SqlStore

Handler = Callable[[Event], Any]
TransactionalHandler = Callable[[Event, SqlStore], Any]
ResyncCallback = Callable[[ResyncInfo], Any]
Start = Literal["committed", "beginning"] | dt.datetime
JOIN_GRACE_S = 60.0
# How often a busy subscriber commits its offsets. A commit per batch sent about 300
# OffsetCommit requests a second at 2,000 events/s (batches of 6 events), each a write
# to ``__consumer_offsets`` by the group coordinator that also answers the group's
# heartbeats. A commit held back only repeats, after a crash, events the store
# already recorded as handled (skipped).
COMMIT_EVERY_S = 1.0
_IGNORED_ERRORS = (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART)


def default_store_path(subscriber_id: str, group_id: str) -> Path:
    """Per (subscriber, group) under the state directory (setting ``state_dir``)."""
    return Path(settings.get("state_dir"), "syncbus", "subscriber", f"{group_id}.db")


class Subscriber:
    """Reads ``resources`` as ``subscriber_id`` sees them; see the module doc for the
    guarantees. ``start``: ``"committed"`` (the group's offsets, earliest for a new
    group), ``"beginning"`` or a datetime: a replay, which re-delivers events even if
    their ids are in the store (still recording them). ``topic_prefix`` matches a
    router run with ``--topic-prefix`` (benchmarks, tests). ``on_resync_begin`` and
    ``on_resync_end`` (also settable as attributes) take a ``ResyncInfo``: module doc."""

    def __init__(
        self,
        subscriber_id: str,
        resources: Sequence[str],
        *,
        connection: Connection | None = None,
        bootstrap: str | None = None,
        group_id: str | None = None,
        store: SqlStore | str | Path | None = None,
        reader_schemas: Mapping[str, Mapping[str, Any]] | None = None,
        start: Start = "committed",
        on_gap: Callable[[Gap], None] | None = None,
        retry: RetryPolicy | None = None,
        dead_letter_topic: str | None = None,
        registry: CollectorRegistry | None = None,
        batch_size: int = 500,
        poll_timeout: float = 0.5,
        consumer_config: Mapping[str, Any] | None = None,
        topic_prefix: str = "",
        on_resync_begin: ResyncCallback | None = None,
        on_resync_end: ResyncCallback | None = None,
    ) -> None:
        if not resources:
            raise ValueError(f"subscriber {subscriber_id!r}: name at least one resource")
        self.subscriber_id = subscriber_id
        self.resources = tuple(dict.fromkeys(resources))
        self.connection = connection or Connection.from_env(bootstrap)
        self.group_id = group_id or subscriber_id
        self.start = start
        self.retry = retry or RetryPolicy()
        self.batch_size, self.poll_timeout = batch_size, poll_timeout
        self.metrics = SubscriberMetrics(registry)
        self._owns_store = not isinstance(store, SqlStore)
        self.store = (
            store
            if isinstance(store, SqlStore)
            else SqlStore.open(store or default_store_path(subscriber_id, self.group_id))
        )
        self.codec = Codec()
        names = TopicNames(topic_prefix)
        self.topics = {names.share(subscriber_id, r): r for r in self.resources}
        reader_fps = {
            r: self.codec.register(reader_event_schema(s))
            for r, s in (reader_schemas or {}).items()
        }
        self.gaps = GapChecker(None if start != "committed" else self.store.sequences())
        self._schemas = SchemaResolver(self.connection, self.codec, names.schemas)
        self._prepare = BatchPreparer(
            subscriber_id,
            self.codec,
            self._schemas,
            self.topics,
            reader_fps,
            self.store,
            self.gaps,
            self.metrics,
            on_gap,
        )
        self._prepare.check_seen = start == "committed"
        self.dead_letters = DeadLetters(
            self.connection, dead_letter_topic or topic_prefix + subscriber_dlq_topic(subscriber_id)
        )
        self._config = dict(consumer_config or {})
        self._consumer: Consumer | None = None
        self._replayed: set[tuple[str, int]] = set()
        self._stopping = False
        self._assigned = False  # holds partitions now (idle time counts only then)
        self._handled_through: dict[tuple[str, int], int] = {}  # committed asynchronously
        self._to_commit: dict[tuple[str, int], int] = {}  # handled, no commit sent yet
        self._committed_at = 0.0  # monotonic time of the last commit sent
        self._idle_since = time.monotonic()
        self.on_resync_begin, self.on_resync_end = on_resync_begin, on_resync_end
        self._partition_counts: dict[str, int] = {}

    # -- public API ------------------------------------------------------------------

    def run(
        self,
        handler: Handler | TransactionalHandler,
        *,
        transactional: bool = False,
        max_events: int | None = None,
        idle_timeout: float | None = None,
    ) -> int:
        """Hand every new event to ``handler`` until ``max_events`` were handled, nothing
        came for ``idle_timeout`` seconds, or ``stop()``; returns how many were handled."""
        handled = 0
        walk = self._walk(idle_timeout, lambda: max_events is not None and handled >= max_events)
        try:
            for item in walk:
                handled += self._process(item, handler, transactional)
        finally:  # a HandlerFailed leaves its event unmarked: it comes again
            walk.close()
        return handled

    def events(
        self, *, max_events: int | None = None, idle_timeout: float | None = None
    ) -> Iterator[Event]:
        """Iterate new events; one counts as handled when the loop asks for the next, so
        leaving the loop early leaves the current event to be delivered again."""
        handled = 0
        walk = self._walk(idle_timeout, lambda: max_events is not None and handled >= max_events)
        try:
            for item in walk:
                if item.event is not None and item.for_handler and item.error is None:
                    yield item.event
                    self._record(item.event, "handled")
                    self.store.commit(durable=False)  # _finish's commit makes it durable
                    handled += 1
                else:
                    self._process(item, _never_called, False)
        finally:  # leaving early leaves the event in hand unmarked: it comes again
            walk.close()

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def stop(self) -> None:
        """Let the loop end after the event in hand (callable from a handler or signal)."""
        self._stopping = True

    def close(self) -> None:
        if self._consumer is not None:
            self._commit_handled(self._consumer, None)
            self._consumer.close()
            self._consumer = None
        self._schemas.close()
        self.dead_letters.flush()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop ----------------------------------------------------------------------

    def _walk(
        self, idle_timeout: float | None, enough: Callable[[], bool]
    ) -> Generator[Item, None, None]:
        """The items of batch after batch, for ``run`` and ``events`` alike. An item counts
        as done when the caller asks for the next; a batch is finished (dead letters,
        store, offsets of its done items) when it ends or the caller leaves, and the
        rest of it is rewound to come again. Closing this generator is leaving."""
        for items in self._batches(idle_timeout):
            done: dict[tuple[str, int], int] = {}
            try:
                for item in items:
                    if enough():
                        break
                    yield item
                    _mark(done, item)
            finally:
                self._finish(items, done)
            if enough():
                self._commit_offsets(now=True)
                return

    def _batches(self, idle_timeout: float | None) -> Iterator[list[Item]]:
        """Batches of prepared messages. Idle time counts while partitions are assigned:
        a restart waits for the group to drop the killed member first (up to its session
        timeout), and that wait is not idleness; without any assignment the limit is
        ``idle_timeout + JOIN_GRACE_S``."""
        consumer = self._open()
        self._stopping = False
        self._idle_since = time.monotonic()
        while not self._stopping:
            taken = take_ready(consumer, self.batch_size, self.poll_timeout)
            messages = [m for m in taken if _ok(m)]
            if not messages:
                self._commit_offsets(now=True)  # caught up: the group's lag reads 0
                limit = idle_timeout
                if limit is not None and not self._assigned:
                    limit += JOIN_GRACE_S
                if limit is not None and time.monotonic() - self._idle_since >= limit:
                    return
                continue
            self._idle_since = time.monotonic()
            yield self._prepare.prepare(messages)

    def _process(self, item: Item, handler: Any, transactional: bool) -> int:
        """1 when the handler took the event, 0 for duplicates, stale deliveries, markers
        and dead letters."""
        if item.marker is not None or item.skipped is not None:
            self._resync_marker(item)
            return 0
        if item.error is not None:
            self._dead_letter(item, item.error, "undecodable")
            return 0
        event = item.event
        assert event is not None
        if item.duplicate or item.stale:
            return 0
        error = self._attempt(event, handler, transactional)
        if error is None:
            self._record(event, "handled")
            if not transactional:
                self.store.commit(durable=False)  # _finish's commit makes it durable
            return 1
        if self.retry.on_failure == "stop":
            raise HandlerFailed(
                event.topic, event.partition, event.offset, event.event_id
            ) from error
        self._dead_letter(item, error, "handler")
        self._record(event, "dead_lettered")
        return 0

    def _attempt(self, event: Event, handler: Any, transactional: bool) -> Exception | None:
        error: Exception | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                if transactional:
                    with self.store.savepoint():
                        handler(event, self.store)
                else:
                    handler(event)
                return None
            except Exception as exc:  # the handler's failure is ours to retry or park
                error = exc
                self.metrics.handler_errors.labels(self.subscriber_id, event.resource).inc()
                if attempt < self.retry.attempts:
                    time.sleep(self.retry.backoff(attempt))
        return error

    def _record(self, event: Event, outcome: str) -> None:
        self.store.record(event.event_id, outcome)
        if outcome == "handled" and event.versioned:
            assert event.version is not None and event.key is not None
            self.store.hold_version(
                event.resource, event.key, event.version, deleted=event.op == "DELETE"
            )
            self._prepare.handled(event)
        if outcome == "handled":
            labels = (self.subscriber_id, event.resource)
            self.metrics.events.labels(*labels).inc()
            self.metrics.end_to_end.labels(*labels).observe(
                max(0.0, time.time() - event.occurred_at.timestamp())
            )

    def _resync_marker(self, item: Item) -> None:
        """Record a marker in the store and tell the application what it completes."""
        marker = item.marker
        if marker is None:
            return  # malformed: logged where it was read, skipped
        partitions = self._partitions(marker.topic, marker.partition)
        with self.store.savepoint("syncbus_resync"):  # a failing callback undoes it all
            held = self.store.claim_resync(marker, partitions)
            state, notices = advance(held, marker, partitions)
            self.store.save_resync(state)
            for notice in notices:
                callback = self.on_resync_begin if notice == "begin" else self.on_resync_end
                if callback is not None:
                    callback(state)

    def _partitions(self, topic: str, seen: int) -> int:
        """The share topic's partition count (metadata, asked again when a marker comes
        from a partition beyond what is known: partitions were added)."""
        known = self._partition_counts.get(topic, 0)
        if seen < known:
            return known
        assert self._consumer is not None
        metadata = self._consumer.list_topics(topic, timeout=30).topics.get(topic)
        count = len(metadata.partitions) if metadata is not None and metadata.partitions else 0
        self._partition_counts[topic] = max(count, seen + 1)
        return self._partition_counts[topic]

    def _dead_letter(self, item: Item, error: Exception, reason: str) -> None:
        resource = self.topics.get(item.message.topic() or "", "")
        self.dead_letters.send(item.message, error)
        self.dead_letters.flush()  # before the store records it: a dead letter is never lost
        self.metrics.dead_letters.labels(self.subscriber_id, resource, reason).inc()

    def _finish(self, items: list[Item], done: dict[tuple[str, int], int]) -> None:
        """Commit what was finished (dead letters, store, offsets, in that order) and
        rewind partitions whose unfinished messages must come again."""
        self.dead_letters.flush()
        self.store.save_sequences(self.gaps.take_changes())
        self.store.commit()
        assert self._consumer is not None
        if done:
            self._handled_through.update(done)
            self._to_commit.update(done)
            self._commit_offsets()
        rewind: dict[tuple[str, int], int] = {}
        for item in items:
            key = (item.message.topic() or "", item.message.partition() or 0)
            offset = item.message.offset() or 0
            if offset >= done.get(key, 0) and key not in rewind:
                rewind[key] = offset
        for (topic, partition), offset in rewind.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def _commit_offsets(self, now: bool = False) -> None:
        """Send the handled offsets not yet committed, asynchronously: a synchronous
        commit held the next batch one round trip per batch. Unless ``now``, at most
        every ``COMMIT_EVERY_S``. A commit lost in a crash only repeats events the
        store has already recorded as handled (skipped); a rebalance or a close
        commits what is still unconfirmed synchronously (``_commit_handled``), so
        another member of the group, with another store, does not repeat them."""
        if not self._to_commit or self._consumer is None:
            return
        if not now and time.monotonic() - self._committed_at < COMMIT_EVERY_S:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._to_commit.items()]
        self._to_commit.clear()
        self._committed_at = time.monotonic()
        self._consumer.commit(offsets=offsets, asynchronous=True)

    def _open(self) -> Consumer:
        if self._consumer is None:
            config = self.connection.confluent(
                **{
                    "group.id": self.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "topic.metadata.refresh.interval.ms": 5000,
                    # a restarted subscriber waits out its killed predecessor this long
                    # (librdkafka's default is 45 s)
                    "session.timeout.ms": 10000,
                    **self._config,
                }
            )
            self._consumer = Consumer(config)
            self._schemas.open()  # connected by the first event (``SchemaResolver``)
            self._consumer.subscribe(
                list(self.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        return self._consumer

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Replays seek once per partition; later rebalances resume from the group."""
        self._assigned = bool(partitions)
        self._idle_since = time.monotonic()
        fresh = [tp for tp in partitions if (tp.topic, tp.partition) not in self._replayed]
        if self.start == "committed" or not fresh:
            return
        if isinstance(self.start, dt.datetime):
            millis = int(self.start.timestamp() * 1000)
            wanted = [TopicPartition(tp.topic, tp.partition, millis) for tp in fresh]
            found = {
                (tp.topic, tp.partition): tp.offset for tp in consumer.offsets_for_times(wanted)
            }
        else:
            found = {(tp.topic, tp.partition): OFFSET_BEGINNING for tp in fresh}
        for tp in partitions:
            if (tp.topic, tp.partition) in found:
                tp.offset = found[(tp.topic, tp.partition)]
                self._replayed.add((tp.topic, tp.partition))
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = False
        self._commit_handled(consumer, {(tp.topic, tp.partition) for tp in partitions})

    def _on_lost(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self._assigned = False  # no longer ours: committing for them would be refused

    def _commit_handled(self, consumer: Consumer, which: set[tuple[str, int]] | None) -> None:
        """Commit synchronously the handled offsets of ``which`` partitions (all: None)."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._handled_through.items()
                   if which is None or (t, p) in which]
        if not offsets:
            return
        # a refusal means not ours any more: the store still skips what was handled
        with contextlib.suppress(KafkaException):
            consumer.commit(offsets=offsets, asynchronous=False)
        for tp in offsets:
            self._handled_through.pop((tp.topic, tp.partition), None)
            self._to_commit.pop((tp.topic, tp.partition), None)


def _mark(done: dict[tuple[str, int], int], item: Item) -> None:
    message = item.message
    done[(message.topic() or "", message.partition() or 0)] = (message.offset() or 0) + 1


def _ok(message: Any) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.fatal() or not (error.retriable() or error.code() in _IGNORED_ERRORS):
        raise KafkaException(error)
    return False


def _never_called(event: Event) -> None:
    raise AssertionError("only duplicates and undecodable messages reach this handler")
