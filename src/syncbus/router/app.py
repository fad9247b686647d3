"""The Faust adapter: a worker that feeds the engine batches and acks only what is confirmed.

Design around faust-streaming's pitfalls (docs/architecture.md): Faust's per-event
stream path costs more than all of our work, so the consumer hands each fetch of the raw
topics to ``BatchHandler`` (``router.batching``) in one call; one handler runs at
a time. Batches are pipelined: the handler routes and writes a batch, then takes
the next fetch while the broker confirms the previous one (at most
``pipeline_depth`` batches written and unconfirmed), so neither the router nor a
broker sharing its cores waits for the other. One confirmer task acks batches
strictly in the order they were written, each only after the broker confirmed
all of its output; Faust commits only acked offsets, and acking in order keeps
its commit from passing an unacked offset (faust-streaming issue 606 is exactly
an out-of-order ack). An exception in our batch code is never allowed to escape:
per-event failures are dead letters (engine), and anything else stops the process
at once, before the failed batch (or any later one) is acked.

Delivery sequences live in a changelogged Faust table keyed
``subscriber/resource/partition``; each key is written to the changelog partition
of its raw partition, so the worker that owns a raw partition recovers exactly
its sequences after a restart or rebalance. A batch's last sequences are written
ahead: its deliveries are produced only once the broker confirmed them in the
changelog (written with librdkafka, serialized as Faust writes them, so Faust's
recovery reads them back: ``sink.ChangelogWriter``), so whatever number a
subscriber has seen, a restarted router starts above it, even when it routes
again events whose offsets had not committed (it numbers them anew; subscribers
drop them by event id). A crash may leave numbers
recorded and never delivered, which subscribers report as a gap: an alarm after a
crash, never a hidden loss or a number naming two events (the kill -9 test checks
it). The table's memory is written when a batch is confirmed, in batch order; the
sequences of batches still in flight are kept beside it and consulted first, so
the next batch continues their numbering, and dropped when a batch is routed with
nothing in flight: a rebalance waits for every fetched message to be acked
(``stream_wait_empty``), so the worker that gets a partition next numbers from
the table alone. The live policy is followed by a timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, cast

import faust
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from syncbus.admin.apply import cluster_replication
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.codec import Codec
from syncbus.core.views import ViewCache
from syncbus.router.batching import BatchApp, BatchConsumer, Fetch
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import (
    DEFAULT_MAX_CONSECUTIVE_DEAD,
    BatchOutput,
    RoutingEngine,
    tune_gc,
)
from syncbus.router.follower import PolicyFollower
from syncbus.router.metrics import RouterMetrics
from syncbus.router.resync import Pacing
from syncbus.router.resync_runner import ResyncRunner
from syncbus.router.secrets import TokenSecrets
from syncbus.router.sink import BatchSink, ChangelogWriter, Delivery
from syncbus.router.topics import raw_partitions

if TYPE_CHECKING:
    from faust.worker import Worker

log = logging.getLogger("syncbus.router")
EXIT_UNCONFIRMED = 70
# How long the group waits for a worker that stopped heartbeating before its raw
# partitions go to the others. Faust's default, 60 s, left a killed worker's
# partitions unrouted for a minute per kill, longer when workers died in the middle of
# a rebalance (each dead member costs its own timeout). 10 s is Kafka's long-standing
# default before 3.0; heartbeats run on the consumer's own thread, so a busy event
# loop does not miss them.
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 2.0


@dataclass(frozen=True)
class RouterConfig:
    connection: Connection
    secrets: TokenSecrets
    workdir: Path
    app_id: str = "syncbus-router"
    names: TopicNames = field(default_factory=TopicNames)
    batch_size: int = 5000
    batch_within: float = 0.05
    policy_interval: float = 1.0
    replication: int | None = None  # None: the cluster's (admin.apply.cluster_replication)
    loglevel: str = "WARNING"
    pipeline_depth: int = 2
    max_consecutive_dead: int = DEFAULT_MAX_CONSECUTIVE_DEAD
    resync: Pacing = field(default_factory=Pacing)  # how resyncs share the worker (#17)

    def __post_init__(self) -> None:
        if self.pipeline_depth < 1:
            raise ValueError(f"pipeline_depth must be at least 1, not {self.pipeline_depth}")


def stop_unconfirmed(exc: BaseException) -> NoReturn:
    """Stop at once: nothing of a batch that failed, nor of any later one, may be acked."""
    log.critical("batch failed; stopping before its offsets commit", exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_UNCONFIRMED)


class _InFlight(NamedTuple):
    output: BatchOutput
    delivery: Delivery
    fetch: Fetch
    ack: Callable[[Fetch], Any]
    started: float


Sequenced = tuple[int, str, int]  # changelog partition, table key, last sequence
#: Writes changelog records; returns once the broker confirmed all of them, or raises.
RecordAhead = Callable[[list[Sequenced]], Awaitable[None]]


class BatchHandler:
    """What the agent does with each batch; the table and sink are the only side effects.

    ``handle`` returns once fewer than ``depth`` batches await the broker, so the
    caller fetches the next batch while earlier ones are confirmed; ``depth=1`` is
    the strictly serial router. ``fail`` is called with the error when confirming
    fails, and must not return normally in a worker (``stop_unconfirmed``).
    """

    def __init__(
        self,
        engine: RoutingEngine,
        sink: BatchSink,
        table: Any,
        metrics: RouterMetrics,
        depth: int = 2,
        fail: Callable[[BaseException], Any] = stop_unconfirmed,
        record: RecordAhead | None = None,
    ) -> None:
        self.engine, self.sink, self.table, self.metrics = engine, sink, table, metrics
        self.depth, self._fail = depth, fail
        self._record = record or self._send_changelog
        self._in_flight: deque[_InFlight] = deque()
        self._assigned: dict[str, int] = {}  # sequences of batches in flight: newer than the table
        self._room = asyncio.Event()
        self._confirmer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    def _sequence_of(self, key: str) -> int:
        assigned = self._assigned.get(key)
        return assigned if assigned is not None else int(self.table.data.get(key, 0))

    async def _send_changelog(self, records: list[Sequenced]) -> None:
        """Through the table's own changelog producer (Faust's)."""
        futures = [self.table.send_changelog(*record) for record in records]
        for future in futures:
            await future

    async def handle(self, fetch: Fetch, ack: Callable[[Fetch], Any]) -> None:
        """Route and write a fetch; it is acked whole, later, once confirmed, or never."""
        if self._failure is not None:
            raise RuntimeError("an earlier batch was not confirmed") from self._failure
        if not self._in_flight:
            self._assigned.clear()  # the table holds every number handed out so far
        started = time.monotonic()
        output = self.engine.process(fetch.records, datetime.now(UTC), self._sequence_of)
        recorded = []
        for key, (partition, sequence) in output.sequences.items():
            self._assigned[key] = sequence
            recorded.append((partition, key, sequence))
        # written ahead: no delivery carries an unrecorded number; raises if the broker
        # refused a record, and then nothing of the batch is written
        await self._record(recorded)
        delivery = self.sink.write(output)
        self._in_flight.append(_InFlight(output, delivery, fetch, ack, started))
        self.metrics.batches_in_flight.set(len(self._in_flight))
        if self._confirmer is None:
            self._confirmer = asyncio.ensure_future(self._confirm())
            self._confirmer.add_done_callback(self._confirmer_done)
        while len(self._in_flight) >= self.depth:
            self._room.clear()
            await self._room.wait()
            if self._failure is not None:
                raise RuntimeError("an earlier batch was not confirmed") from self._failure

    async def _confirm(self) -> None:
        """Ack the batches in flight in the order written, each once it is confirmed."""
        try:
            while self._in_flight:
                await self._in_flight[0].delivery.confirmed()
                self._finish()
        except asyncio.CancelledError:  # shutting down: confirm, ack in order, then stop
            while self._in_flight:
                self._in_flight[0].delivery.confirmed_blocking()
                self._finish()
            raise
        except BaseException as exc:  # recorded at once: no later batch may be acked
            self._failure = exc
            self._room.set()  # wake ``handle`` so it raises instead of waiting forever
            raise
        finally:  # no await since the emptiness check: the next ``handle`` starts a new one
            self._confirmer = None

    def _finish(self) -> None:
        output, _delivery, fetch, ack, started = self._in_flight[0]
        self._done(output, fetch, ack)
        self._in_flight.popleft()
        self._room.set()
        self.metrics.batches_in_flight.set(len(self._in_flight))
        self.metrics.observe(output, time.monotonic() - started)

    def _confirmer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._failure = self._failure or task.exception()
        self._room.set()
        self._fail(cast(BaseException, self._failure))

    def _done(self, output: BatchOutput, fetch: Fetch, ack: Callable[[Fetch], Any]) -> None:
        for key, (_partition, sequence) in output.sequences.items():
            self.table.data[key] = sequence  # its changelog record was written ahead
        ack(fetch)


def _broker_url(connection: Connection) -> str:
    return "kafka://" + ";".join(s.strip() for s in connection.bootstrap.split(","))


def _broker_credentials(connection: Connection) -> faust.SASLCredentials | None:
    """Faust's consumer, producer and topic creation log in as the connection's user."""
    if not connection.username:
        return None
    return faust.SASLCredentials(
        username=connection.username, password=connection.password,
        mechanism="SCRAM-SHA-512", ssl_context=connection.ssl_context(),
    )


def build_app(config: RouterConfig, registry: CollectorRegistry | None = None) -> faust.App:
    """The Faust app of one router worker; raises (naming the cause) when it cannot route."""
    follower = PolicyFollower(config.connection, config.names.policy)
    bus = follower.load()
    codec = Codec()
    views = ViewCache(bus.schemas.envelope)
    dlq_secret = os.urandom(32)

    def compile_policy(new_bus: Any) -> CompiledPolicy:
        return CompiledPolicy(new_bus, config.secrets, codec, views, config.names, dlq_secret)

    engine = RoutingEngine(
        compile_policy(bus), codec, config.names, config.max_consecutive_dead
    )
    raw_topics = sorted(config.names.raw(r) for r in bus.resources)
    partitions = raw_partitions(config.connection, raw_topics)
    metrics = RouterMetrics(registry)
    metrics.policy_age.set_to_current_time()
    app = BatchApp(
        config.app_id,
        broker=_broker_url(config.connection),
        broker_credentials=_broker_credentials(config.connection),
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        datadir=str(config.workdir / config.app_id),
        topic_partitions=partitions,
        topic_replication_factor=config.replication or cluster_replication(
            AdminClient(config.connection.confluent())),
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=config.batch_size * 2,
        broker_max_poll_records=config.batch_size,
        broker_commit_interval=1.0,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
    )
    table = app.Table(
        "delivery-sequence", default=int, key_type=str, value_type=int, partitions=partitions
    )
    sink = BatchSink(config.connection, config.names.schemas, config.names.dlq)
    _prepare_sink(engine, sink)
    handler = BatchHandler(engine, sink, table, metrics, config.pipeline_depth,
                           record=_changelog_writer(config.connection, table))
    source = app.topic(*raw_topics, key_serializer="raw", value_serializer="raw")

    async def route_batch(fetch: Fetch) -> None:
        try:
            await handler.handle(fetch, cast(BatchConsumer, app.consumer).ack_fetch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # never let a batch we did not finish be acked
            stop_unconfirmed(exc)

    app.route_batches(raw_topics, route_batch)

    @app.agent(source, concurrency=1, name="syncbus.router.route")
    async def route(stream: Any) -> None:
        """Subscribes the raw topics; their messages go to ``route_batch``, never here."""
        async for _event in stream.events():
            log.critical("a raw event bypassed the batch handler; stopping before it is acked")
            logging.shutdown()
            os._exit(EXIT_UNCONFIRMED)

    resyncs = _resyncs(app, config, lambda: engine.policy.bus)

    @app.timer(interval=config.policy_interval)  # type: ignore[untyped-decorator]
    async def follow_policy() -> None:
        try:
            new_bus = follower.poll()
            if new_bus is not None:
                old_bus = engine.policy.bus
                engine.set_policy(compile_policy(new_bus))
                # after set_policy: raw offsets past the resync's watermarks route live
                resyncs.policy_changed(old_bus, new_bus, follower.offset, datetime.now(UTC))
                metrics.policy_updates.labels("applied").inc()
                metrics.policy_age.set_to_current_time()
                log.warning("policy updated: %d grants", len(new_bus.grants))
                unsubscribed = {config.names.raw(r) for r in new_bus.resources} - set(raw_topics)
                if unsubscribed and not app.restart_requested:
                    _restart_to_subscribe(app, sorted(unsubscribed))
        except Exception:  # keep routing with the policy in force
            metrics.policy_updates.labels("refused").inc()
            log.error("new policy refused; the previous one stays in force", exc_info=True)

    return app


def _resyncs(app: faust.App, config: RouterConfig, bus_of: Callable[[], Any]) -> ResyncRunner:
    """The resync runner (issue #17), ticked by a timer of its own beside the policy's."""

    def owns(resource: str) -> bool:  # raw partition 0 of a resource: its resyncs' runner
        try:
            assigned = app.consumer.assignment()
        except Exception:  # not started or rebalancing: nobody runs resyncs now
            return False
        raw = config.names.raw(resource)
        return any(tp.topic == raw and tp.partition == 0 for tp in assigned)

    runner = ResyncRunner(config.connection, config.names, config.secrets, bus_of, owns,
                          config.resync)

    @app.timer(interval=config.policy_interval)  # type: ignore[untyped-decorator]
    async def resync_jobs() -> None:
        try:
            runner.tick(datetime.now(UTC))
        except Exception:  # the jobs stay in syncbus.resync: the next tick tries again
            log.error("resync jobs not ticked", exc_info=True)

    return runner


def _prepare_sink(engine: RoutingEngine, sink: BatchSink) -> None:
    """Before the first event: the sink knows every topic's partitions, and the
    policy's view schemas are in ``syncbus.schemas``. They went out with the first
    batch, which then waited for them: a median 9.6 ms (6-93 ms) added to the first
    events in 21 runs of ``bench latency`` here, 0.1-0.3 ms without. Routing an
    empty batch hands them over as the engine does."""
    try:
        sink.producer.list_topics(timeout=10)
    except KafkaException as exc:  # not fatal: the first produce asks again
        log.warning("could not read the topics' metadata before routing: %s", exc)
    output = engine.process([], datetime.now(UTC), lambda _key: 0)
    if output.schemas:
        sink.write(output).confirmed_blocking(60)


def _changelog_writer(connection: Connection, table: Any) -> RecordAhead:
    """The table's changelog records, serialized as Faust writes them (its recovery
    reads them back), written with librdkafka (``ChangelogWriter``)."""
    topic = table.changelog_topic
    writer = ChangelogWriter(connection, topic.get_topic_name())
    key_serializer, value_serializer = table.key_serializer, table.value_serializer

    def record(records: list[Sequenced]) -> asyncio.Future[None]:
        return writer.write([
            (partition, topic.prepare_key(key, key_serializer)[0],
             topic.prepare_value(value, value_serializer)[0])
            for partition, key, value in records
        ])

    return record


def _restart_to_subscribe(app: BatchApp, topics: list[str]) -> None:
    """A resource added by ``apply`` has a raw topic this worker does not consume.

    Faust fixes a worker's subscription at start (its pattern subscription does not
    work: faust-streaming issue 62), and leaving the topic unread would silently
    stop that resource at the router. So the worker stops the way SIGTERM stops it
    (batches in flight confirmed and acked, the group left) and ``run`` re-executes
    the same command, which subscribes every raw topic of the policy.
    """
    log.warning("policy names raw topics this worker does not consume (%s): restarting "
                "to subscribe them", ", ".join(topics))
    app.restart_requested = True
    os.kill(os.getpid(), signal.SIGTERM)


def quiet_worker(app: faust.App, loglevel: str, workdir: Path) -> Worker:
    """Faust's worker without its terminal spinner. The spinner turns with every log
    record, so Faust sets the root logger to DEBUG for it: aiokafka then built ~3,000
    debug records a second that the handler threw away (at 2,000 events/s), and
    ``bench router`` went from a median 0.86 of its baseline to 0.95 without them."""
    from faust.worker import Worker

    worker = Worker(app, loglevel=loglevel, quiet=True, workdir=workdir)
    worker.spinner = None
    return worker


def run(config: RouterConfig, registry: CollectorRegistry | None = None) -> None:
    """Run one worker in the foreground until SIGTERM/SIGINT; a worker that stopped to
    subscribe new raw topics starts again as the same process (same pid, same argv)."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    app = build_app(config, registry)
    tune_gc()
    worker = quiet_worker(app, config.loglevel, config.workdir)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if not cast(BatchApp, app).restart_requested:
            raise
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
