"""Faust hands the router whole fetches instead of one stream event per message.

Measured on the 2-core box (``syncbus bench router --faust-only``): a bare Faust
agent on ``take_events`` and doing nothing moves a few thousand events/s. Per
message, Faust's drain loop spawns two tasks (``wait_first`` on the callback and
on ``suspend_flow``), takes the conductor lock, builds an ``Event``, queues it on
a channel, and the stream dequeues it under sensors; that is several times the
router's own work per event. So for the raw topics the consumer's drain loop
gives each fetch (``getmany``, up to ``broker_max_poll_records``) to one batch
handler, as Faust ``Message`` objects, and the handler acks them itself.

Everything else stays Faust's: group membership and partition assignment (the
raw topics are still subscribed by the router's agent, so the sequence table is
co-partitioned as before), flow control during rebalances, table changelogs,
and offset commits, which follow acks. A message is *tracked* (unacked) from the
moment it is fetched until its batch's handler acks it, which may be after the
handler returned: the router's handler returns while a batch's output is still
being confirmed, so the next fetch is taken meanwhile (``router.app``). A
rebalance or shutdown stops the flow and waits for every batch still in flight
(``stream_wait_empty``), and a message is acked only after the broker confirmed
its batch's output: a kill -9 loses nothing. Messages of other topics (table
changelogs during recovery) take Faust's own path unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

#: Takes a fetch; returns when the consumer may fetch again (its messages may still be unacked).
BatchHandler = Callable[[list[Message]], Awaitable[None]]


# Faust hard-codes aiokafka's fetch_max_wait_ms to 1500. Measured with ``syncbus bench
# router --floor`` (io mode, 60k events): every ~15k events the next fetch stalled
# 1.2-1.5 s with data waiting on the broker, capping the router's own I/O at ~7.3k
# events/s; at 100 ms it reaches ~19k. An idle worker then sends ~10 fetches a second.
FETCH_MAX_WAIT_MS = 100


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with a fetch wait that does not stall a busy router."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read by aiokafka when the consumer starts and builds its Fetcher (0.11-0.14)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a drain loop that works per fetch."""

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # the Fetcher service's task
        app = cast(BatchApp, self.app)
        topics, handler = app.batch_topics, app.batch_handler
        if handler is None:
            await super()._drain_messages(fetcher)
            return
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        while not (consumer_stopped() or fetcher_stopped()):
            batch: list[Message] = []
            async for tp, message in self.getmany(timeout=1.0):
                if not await self._take(tp, message):
                    continue
                if message.topic in topics:
                    self._unacked_messages.add(message)
                    batch.append(message)
                else:  # Faust's own per-message path, exactly as its drain loop does it
                    await self.wait_first(self.callback(message), self.suspend_flow.wait())
            if batch:
                self._mark_inbound(batch)
                await handler(batch)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
            else:
                await self.sleep(0)

    async def _take(self, tp: TP, message: Message) -> bool:
        """Faust's read-offset bookkeeping, as in its drain loop: skip offsets already
        read, record gaps (compaction, transaction markers) so commits can pass them."""
        offset = message.offset
        read = self._read_offset[tp]
        if read is not None and offset < read:
            return False
        if read and offset - read > 1 and self.app.topics.acks_enabled_for(message.topic):
            await self._add_gap(tp, read + 1, offset)
        self._read_offset[tp] = offset
        return True

    def _mark_inbound(self, batch: list[Message]) -> None:
        """Tell Faust's stall detector that these partitions are being processed."""
        monitor = self.app.monitor
        if monitor is not None:
            now = time.monotonic()
            for tp in {m.tp for m in batch}:
                monitor.stream_inbound_time[tp] = now


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose consumer gives fetches of ``batch_topics`` to ``batch_handler``."""

    batch_topics: frozenset[str] = frozenset()
    batch_handler: BatchHandler | None = None
    restart_requested = False  # stopping to subscribe new topics (``app.run`` re-executes)

    def route_batches(self, topics: Collection[str], handler: BatchHandler) -> None:
        self.batch_topics = frozenset(topics)
        self.batch_handler = handler

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)
