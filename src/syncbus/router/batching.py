"""Faust hands the router whole fetches instead of one stream event per message.

Measured on the 2-core box (``syncbus bench router --floor``): a bare Faust agent
on ``take_events`` and doing nothing moves a few thousand events/s. Per message,
Faust's drain loop spawns two tasks (``wait_first`` on the callback and on
``suspend_flow``), takes the conductor lock, builds an ``Event``, queues it on a
channel, and the stream dequeues it under sensors; that is several times the
router's own work per event. So for the raw topics the consumer's drain loop
gives each fetch (up to ``broker_max_poll_records``) to one batch handler as a
``Fetch``: the client's records, unconverted, taken and later acked per
partition, not per message (``Faust alone, batches``: 32k -> 108k events/s).

Everything else stays Faust's: group membership and partition assignment (the
raw topics are still subscribed by the router's agent, so the sequence table is
co-partitioned as before), flow control during rebalances, table changelogs,
and offset commits, which follow acks. A fetch is *tracked* (unacked) from the
moment it is fetched until its handler acks it, which may be after the handler
returned: the router's handler returns while a batch's output is still being
confirmed, so the next fetch is taken meanwhile (``router.app``). A rebalance or
shutdown stops the flow and waits for every fetch still in flight
(``stream_wait_empty``), and a fetch is acked only after the broker confirmed
its output: a kill -9 loses nothing. Messages of other topics (table changelogs
during recovery) take Faust's own path unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AIOKafkaTP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

log = logging.getLogger("syncbus.router")


class Fetch:
    """One fetch of the raw topics, handed to the batch handler and acked whole.

    ``records`` are the client's records as fetched (topic, partition, offset, key,
    value, headers: what the engine reads), ``offsets`` the offsets to ack per
    partition. Faust tracks every message it delivered until it is acked
    (``Consumer._unacked_messages``, which a rebalance waits to empty); a fetch
    stands there for all of its records, with the ``acked`` and ``refcount`` that
    Faust reads of what it finds in that set.
    """

    __slots__ = ("__weakref__", "acked", "offsets", "records", "refcount")

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.offsets: dict[TP, Sequence[int]] = {}
        self.acked = False
        self.refcount = 1

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"<Fetch of {len(self.records)} records, acked={self.acked}>"


#: Takes a fetch; returns when the consumer may fetch again (the fetch may still be unacked).
BatchHandler = Callable[[Fetch], Awaitable[None]]


# Faust hard-codes aiokafka's fetch_max_wait_ms to 1500. Measured with ``syncbus bench
# router --floor`` (io mode, 60k events): every ~15k events the next fetch stalled
# 1.2-1.5 s with data waiting on the broker, capping the router's own I/O at ~7.3k
# events/s; at 100 ms it reaches ~19k. An idle worker then sends ~10 fetches a second.
FETCH_MAX_WAIT_MS = 100


async def rewind_to_committed(consumer: Any, topics: Collection[str]) -> Mapping[Any, int | None]:
    """Put every assigned partition back at its committed offset, or, for ``topics``
    (those whose offsets Faust commits), at the beginning when it has none; returns
    the committed offsets (None: no commit). Other topics (table changelogs, the
    assignor's) are never committed: Faust seeks those itself.

    Faust drops records it fetched but must not hand on (flow stopped for a
    rebalance, a partition paused for recovery, a new generation) and counts on a
    seek to the committed offsets to read them again. aiokafka's
    ``seek_to_committed`` moves only partitions with a commit above 0, so on a
    partition nobody has committed yet (a new topic; a worker killed before its
    first commit) the dropped records were never read again: in the kill -9 test a
    surviving worker sat at the end of two such partitions for minutes, having
    routed none of their 1,300 events each. Without a commit the start is the
    router's ``auto_offset_reset``, the beginning.
    """
    committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
    uncommitted = [tp for tp, offset in committed.items() if not offset and tp.topic in topics]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with a fetch wait that does not stall a busy router,
    and a seek to the committed offsets that also rewinds uncommitted partitions."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read by aiokafka when the consumer starts and builds its Fetcher (0.11-0.14)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        topics = cast(BatchApp, self.consumer.app).batch_topics
        committed = await self.call_thread(rewind_to_committed, self._ensure_consumer(), topics)
        return cast("Mapping[TP, int]", committed)


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a drain loop that works per fetch.

    Faust's ``getmany`` wraps each record in a ``Message``, asks for the partition's
    high watermark and yields it to a drain loop that takes, tracks and later acks
    it one by one: measured with ``bench router --floor`` (batches), three quarters
    of the consumer's time went there. Here the raw topics' records of a fetch
    are taken, tracked and acked per partition, with the same bookkeeping: read
    offsets, gaps, committed offsets, the acked index that commits follow.
    """

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        """Faust's pause, and for table changelog partitions aiokafka's too.

        Faust pauses a partition in its own bookkeeping only: aiokafka still fetches
        it, and records nobody takes stop every fetch to that broker for aiokafka's
        prefetch backoff (100 ms). After recovery Faust pauses the sequence table's
        changelog partitions, so the router's own first changelog writes after each
        assignment came back to it and held the raw topics' next fetch 85-96 ms, with
        100 ms of events waiting on the broker (``bench latency``'s first seconds).
        Raw partitions are left as Faust has them (``_fetch`` drops and rewinds)."""
        tps = list(tps)
        super().pause_partitions(tps)
        self._in_aiokafka(AIOKafkaConsumer.pause,
                          [tp for tp in tps if self._is_changelog_tp(tp)])

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        tps = list(tps)
        super().resume_partitions(tps)
        self._in_aiokafka(AIOKafkaConsumer.resume,
                          [tp for tp in tps if self._is_changelog_tp(tp)])

    def _in_aiokafka(self, what: Callable[..., Any], tps: list[TP]) -> None:
        """``what`` (aiokafka's pause or resume) on ``tps``, on the consumer thread's
        loop (its state makes futures of that loop), in the order asked; partitions it
        no longer has are skipped (a rebalance: the new assignment starts unpaused)."""
        thread = cast(BatchConsumerThread, self._thread)
        if not tps or thread is None or thread._consumer is None:
            return
        consumer = thread._consumer
        partitions = [AIOKafkaTP(tp.topic, tp.partition) for tp in tps]

        def apply() -> None:
            assigned = consumer.assignment()
            mine = [tp for tp in partitions if tp in assigned]
            if mine:
                what(consumer, *mine)

        thread.thread_loop.call_soon_threadsafe(apply)

    async def _drain_messages(self, fetcher: Any) -> None:  # the Fetcher service's task
        app = cast(BatchApp, self.app)
        topics, handler = app.batch_topics, app.batch_handler
        if handler is None:
            await super()._drain_messages(fetcher)
            return
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        while not (consumer_stopped() or fetcher_stopped()):
            fetch = await self._fetch(topics)
            if fetch.records:
                self._mark_inbound(fetch)
                await handler(fetch)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
            else:
                await self.sleep(0)

    async def _fetch(self, topics: Collection[str]) -> Fetch:
        """Faust's ``getmany`` for one fetch: the raw topics' records in a tracked
        ``Fetch``, other topics' (table changelogs) through Faust's per-message path."""
        fetch = Fetch()
        records, active = await self._wait_next_records(timeout=1.0)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return fetch
        if not self.flow_active:  # as Faust's getmany: go back to the committed offsets
            try:
                await self.perform_seek()
            except Exception as exc:
                log.warning("seek to committed offsets failed while flow is stopped: %r", exc)
            return fetch
        # tracked before any await below, so a rebalance starting meanwhile waits for it
        self._unacked_messages.add(cast(Message, fetch))
        for tp, tp_records in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break  # a rebalance began while a gap or a changelog message was awaited
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic in topics:
                await self._take(tp, tp_records, fetch)
            else:  # Faust's own per-message path, exactly as its drain loop does it
                for record in tp_records:
                    message = self._to_message(tp, record)
                    if await self._take(tp, [record], None):
                        await self.wait_first(self.callback(message), self.suspend_flow.wait())
        if not fetch.records:
            self.ack_fetch(fetch)  # nothing of it to route: no longer tracked
        return fetch

    async def _take(self, tp: TP, records: list[Any], fetch: Fetch | None) -> bool:
        """Faust's read-offset bookkeeping for one partition's records: skip offsets
        already read, record gaps (compaction, transaction markers) so commits can
        pass them. Taken records go to ``fetch``; True when any was taken."""
        if not records:
            return False
        read = self._read_offset[tp]
        if read is not None and records[0].offset < read:
            records = [r for r in records if r.offset >= read]
            if not records:
                return False
        first, last = records[0].offset, records[-1].offset
        dense = last - first == len(records) - 1  # no gap inside this fetch
        gapped = not dense or bool(read and first - read > 1)
        if gapped and self.app.topics.acks_enabled_for(tp.topic):
            previous = read
            for record in records:
                if previous and record.offset - previous > 1:
                    await self._add_gap(tp, previous + 1, record.offset)
                previous = record.offset
        self._read_offset[tp] = last
        if fetch is not None:
            fetch.records += records
            fetch.offsets[tp] = range(first, last + 1) if dense else [r.offset for r in records]
        return True

    def ack_fetch(self, fetch: Fetch) -> None:
        """Faust's ``ack`` for every record of a fetch at once (offsets its commit follows)."""
        acks_enabled_for = self.app.topics.acks_enabled_for
        with ack_lock:  # the bookkeeping Faust's ``ack`` does under the same lock
            if fetch.acked:
                return
            fetch.acked = True
            try:
                for tp, offsets in fetch.offsets.items():
                    if acks_enabled_for(tp.topic):
                        self._n_acked += self._ack_offsets(tp, offsets)
                self._unacked_messages.discard(cast(Message, fetch))
            finally:
                notify(self._waiting_for_ack)

    def _ack_offsets(self, tp: TP, offsets: Sequence[int]) -> int:
        """Faust's ``ack`` of each offset: those not below the committed offset and
        not acked before go to the acked index and list; returns how many did."""
        committed = self._committed_offset[tp]
        if committed is not None and offsets[0] < committed:
            offsets = [o for o in offsets if o >= committed]
        index = self._acked_index[tp]
        if not index.isdisjoint(offsets):
            offsets = [o for o in offsets if o not in index]
        index.update(offsets)
        self._acked[tp].extend(offsets)
        return len(offsets)

    def _mark_inbound(self, fetch: Fetch) -> None:
        """Tell Faust's stall detector that these partitions are being processed."""
        monitor = self.app.monitor
        if monitor is not None:
            now = time.monotonic()
            for tp in fetch.offsets:
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
