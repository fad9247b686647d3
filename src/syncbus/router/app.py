"""The Faust adapter: a worker that feeds the engine batches and acks only what is confirmed.

Design around faust-streaming's pitfalls (DESIGN.md): Faust's per-event stream
path costs more than all of our work, so the consumer hands each fetch of the raw
topics to ``BatchHandler`` (``router.batching``) in one call; one handler runs at
a time (no issue 606); output is produced with librdkafka and confirmed by the
broker *before* the handler acks the batch's messages, and Faust commits only
acked offsets. An exception in our batch code is never allowed to escape: per-event
failures are dead letters (engine), and anything else stops the process at once,
before any of the batch is acked.

Delivery sequences live in a changelogged Faust table keyed
``subscriber/resource/partition``; each key is written to the changelog partition
of its raw partition, so the worker that owns a raw partition recovers exactly
its sequences after a restart or rebalance. The live policy is followed by a timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import Message
from prometheus_client import CollectorRegistry

from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.codec import Codec
from syncbus.core.views import ViewCache
from syncbus.router.batching import BatchApp
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import BatchOutput, RawMessage, RoutingEngine, tune_gc
from syncbus.router.follower import PolicyFollower
from syncbus.router.metrics import RouterMetrics
from syncbus.router.secrets import TokenSecrets
from syncbus.router.sink import BatchSink
from syncbus.router.topics import raw_partitions

log = logging.getLogger("syncbus.router")
EXIT_UNCONFIRMED = 70


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
    replication: int = 1
    loglevel: str = "WARNING"


class BatchHandler:
    """What the agent does with one batch; the table and sink are the only side effects."""

    def __init__(
        self, engine: RoutingEngine, sink: BatchSink, table: Any, metrics: RouterMetrics
    ) -> None:
        self.engine, self.sink, self.table, self.metrics = engine, sink, table, metrics

    def _sequence_of(self, key: str) -> int:
        return int(self.table.data.get(key, 0))

    async def handle(self, messages: Sequence[Message], ack: Callable[[Message], Any]) -> None:
        """Route, confirm, then ack; a batch is acked whole or not at all."""
        started = time.monotonic()
        batch = [
            RawMessage(m.topic, m.partition, m.offset, m.key, m.value, cast(Any, m.headers))
            for m in messages
        ]
        output = self.engine.process(batch, datetime.now(UTC), self._sequence_of)
        self.sink.write(output)
        try:
            await self.sink.confirmed()
        except asyncio.CancelledError:  # shutting down: confirm, ack, then stop
            self.sink.confirmed_blocking()
            self._done(output, messages, ack)
            raise
        self._done(output, messages, ack)
        self.metrics.observe(output, time.monotonic() - started)

    def _done(self, output: BatchOutput, messages: Sequence[Message], ack: Any) -> None:
        for key, (partition, sequence) in output.sequences.items():
            self.table.data[key] = sequence
            self.table.send_changelog(partition, key, sequence)
        for message in messages:
            ack(message)


def _broker_url(connection: Connection) -> str:
    return "kafka://" + ";".join(s.strip() for s in connection.bootstrap.split(","))


def build_app(config: RouterConfig, registry: CollectorRegistry | None = None) -> faust.App:
    """The Faust app of one router worker; raises (naming the cause) when it cannot route."""
    follower = PolicyFollower(config.connection, config.names.policy)
    bus = follower.load()
    codec = Codec()
    views = ViewCache(bus.schemas.envelope)
    dlq_secret = os.urandom(32)

    def compile_policy(new_bus: Any) -> CompiledPolicy:
        return CompiledPolicy(new_bus, config.secrets, codec, views, config.names, dlq_secret)

    engine = RoutingEngine(compile_policy(bus), codec, config.names)
    raw_topics = sorted(config.names.raw(r) for r in bus.resources)
    partitions = raw_partitions(config.connection, raw_topics)
    metrics = RouterMetrics(registry)
    metrics.policy_age.set_to_current_time()
    app = BatchApp(
        config.app_id,
        broker=_broker_url(config.connection),
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        datadir=str(config.workdir / config.app_id),
        topic_partitions=partitions,
        topic_replication_factor=config.replication,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=config.batch_size * 2,
        broker_max_poll_records=config.batch_size,
        broker_commit_interval=1.0,
    )
    table = app.Table(
        "delivery-sequence", default=int, key_type=str, value_type=int, partitions=partitions
    )
    sink = BatchSink(config.connection, config.names.schemas)
    handler = BatchHandler(engine, sink, table, metrics)
    source = app.topic(*raw_topics, key_serializer="raw", value_serializer="raw")

    async def route_batch(messages: list[Message]) -> None:
        try:
            await handler.handle(messages, app.consumer.ack)
        except asyncio.CancelledError:
            raise
        except BaseException:  # never let a batch we did not finish be acked
            log.critical("batch failed; stopping before its offsets commit", exc_info=True)
            logging.shutdown()
            os._exit(EXIT_UNCONFIRMED)

    app.route_batches(raw_topics, route_batch)

    @app.agent(source, concurrency=1, name="syncbus.router.route")
    async def route(stream: Any) -> None:
        """Subscribes the raw topics; their messages go to ``route_batch``, never here."""
        async for _event in stream.events():
            log.critical("a raw event bypassed the batch handler; stopping before it is acked")
            logging.shutdown()
            os._exit(EXIT_UNCONFIRMED)

    @app.timer(interval=config.policy_interval)  # type: ignore[untyped-decorator]
    async def follow_policy() -> None:
        try:
            new_bus = follower.poll()
            if new_bus is not None:
                engine.set_policy(compile_policy(new_bus))
                metrics.policy_updates.labels("applied").inc()
                metrics.policy_age.set_to_current_time()
                log.warning("policy updated: %d grants", len(new_bus.grants))
        except Exception:  # keep routing with the policy in force
            metrics.policy_updates.labels("refused").inc()
            log.error("new policy refused; the previous one stays in force", exc_info=True)

    return app


def run(config: RouterConfig, registry: CollectorRegistry | None = None) -> None:
    """Run one worker in the foreground until SIGTERM/SIGINT."""
    from faust.worker import Worker

    config.workdir.mkdir(parents=True, exist_ok=True)
    app = build_app(config, registry)
    tune_gc()
    worker = Worker(app, loglevel=config.loglevel, quiet=True, workdir=config.workdir)
    worker.execute_from_commandline()
