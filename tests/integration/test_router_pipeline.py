"""The pipelined router on a real broker: a batch is routed while the one before it is
still being confirmed, yet acks follow confirmation in batch order and delivery
sequences never repeat.

The first test drives ``BatchHandler`` in this process with the real engine and a
real producer, so it can see the overlap and the order of acks; the second runs a
real ``syncbus router`` with small batches and reads what subscribers receive.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import Bus, load_bus
from syncbus.core.codec import Codec
from syncbus.core.policy import RoutingTable
from syncbus.core.topics import H_SOURCE_PARTITION
from syncbus.core.views import ViewCache
from syncbus.router.app import BatchHandler
from syncbus.router.batching import Fetch
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import BatchOutput, RawMessage, RoutingEngine
from syncbus.router.metrics import RouterMetrics
from syncbus.router.secrets import TokenSecrets
from syncbus.router.sink import BatchSink, Delivery
from tests.router_helpers import (
    REPO,
    SECRETS,
    RawWriter,
    RouterProcess,
    ShareReader,
    read_topic,
    resident,
    wait_for,
)

RES = "population.resident"
REGIONS = ("320102", "320106", "320508", "320505", "320205", "320583")
RESIDENT_SUBSCRIBERS = (
    "province.jiangsu",
    "city.nanjing",
    "city.suzhou",
    "district.gusu",
    "district.xuanwu",
)


class Table:
    """The two things the handler uses of Faust's table: its data and its changelog,
    whose records the "broker" confirms 50 ms after they are sent. The first record
    after a write marks a batch routed: how many messages were acked by then."""

    def __init__(self, acked: list[Fetch]) -> None:
        self.data: dict[str, int] = {}
        self.changelog: list[tuple[int, str, int]] = []
        self.confirmations: list[asyncio.Future[None]] = []
        self.acked, self.acked_at_routing = acked, [0]
        self.routed = True

    def send_changelog(self, partition: int, key: str, value: int) -> asyncio.Future[None]:
        if not self.routed:
            self.acked_at_routing.append(sum(len(f) for f in self.acked))
            self.routed = True
        self.changelog.append((partition, key, value))
        confirmed = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, confirmed.set_result, None)
        self.confirmations.append(confirmed)
        return confirmed


class WatchedSink(BatchSink):
    """The real sink, remembering each batch's Delivery and whether its sequence
    records were confirmed before it was written."""

    def __init__(self, *args: Any, table: Table, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = table
        self.deliveries: list[Delivery] = []
        self.recorded_at_write: list[bool] = []
        self.records_before = 0  # sequence records sent before the last write

    def write(self, output: BatchOutput) -> Delivery:
        # the batch's sequence records were sent (a batch always numbers something) and
        # confirmed before any of its deliveries is written
        sent = len(self.table.confirmations)
        self.recorded_at_write.append(
            sent > self.records_before and all(r.done() for r in self.table.confirmations))
        self.records_before = sent
        self.table.routed = False
        delivery = super().write(output)
        self.deliveries.append(delivery)
        return delivery


def _prepared(kafka_bootstrap: str) -> tuple[Bus, TopicNames, Connection]:
    bus = load_bus(REPO / "streams", REPO / "schemas")
    names = TopicNames(f"pipe{uuid.uuid4().hex[:8]}.")
    conn = Connection(kafka_bootstrap)
    apply_bus(bus, conn, 3, names)
    return bus, names, conn


def _sequences(bootstrap: str, names: TopicNames) -> dict[tuple[str, int], dict[int, list[int]]]:
    """Per (subscriber, source partition): the delivery sequences per share partition,
    in the order that partition holds them."""
    seen: dict[tuple[str, int], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    reader = ShareReader(bootstrap, names)
    for subscriber in RESIDENT_SUBSCRIBERS:
        for message in read_topic(bootstrap, names.share(subscriber, RES), timeout=1.0):
            source = int(dict(message.headers())[H_SOURCE_PARTITION])
            sequence = reader.decode(message.value())["delivery_sequence"]  # in the body
            seen[subscriber, source][message.partition()].append(sequence)
    return seen


def _assert_numbered_once_in_order(seen: dict[tuple[str, int], dict[int, list[int]]]) -> None:
    for stream, by_share_partition in seen.items():
        for sequences in by_share_partition.values():
            assert sequences == sorted(set(sequences)), f"{stream}: not strictly increasing"
        every = sorted(s for seqs in by_share_partition.values() for s in seqs)
        assert every == list(range(1, len(every) + 1)), f"{stream}: repeated or missing"


def test_batches_overlap_yet_ack_in_order_after_confirmation(kafka) -> None:  # type: ignore[no-untyped-def]
    bus, names, conn = _prepared(kafka.bootstrap)
    codec = Codec()
    policy = CompiledPolicy(bus, TokenSecrets(SECRETS), codec, ViewCache(), names, os.urandom(32))
    acked: list[Fetch] = []
    table = Table(acked)
    sink = WatchedSink(conn, names.schemas, table=table)
    handler = BatchHandler(
        RoutingEngine(policy, codec, names),
        sink,
        table,
        RouterMetrics(CollectorRegistry()),
        depth=2,
    )
    writer = RawWriter(bus, kafka.bootstrap, names)
    batches: list[Fetch] = []
    offsets = [0, 0, 0]
    for b in range(8):
        batch = Fetch()
        for i in range(36):
            partition = i % 3
            key, value, headers, _ = writer.encode(
                RES, "CREATE", resident(REGIONS[i % len(REGIONS)], seed=b * 100 + i)
            )
            batch.records.append(
                RawMessage(names.raw(RES), partition, offsets[partition], key, value, headers)
            )
            offsets[partition] += 1
        batches.append(batch)
    unconfirmed_at_ack: list[int] = []

    def ack(fetch: Fetch) -> None:
        n = batches.index(fetch)
        delivery = sink.deliveries[n]
        if not delivery.done or delivery.refused:
            unconfirmed_at_ack.append(n)
        acked.append(fetch)

    async def route_all() -> None:
        for batch in batches:
            await handler.handle(batch, ack)
        while len(acked) < len(batches):
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(route_all(), 120))

    assert unconfirmed_at_ack == []
    assert sink.recorded_at_write == [True] * len(batches)  # numbers written ahead
    assert acked == batches  # each once, in order
    # batch 1 was routed while batch 0 was unconfirmed: the pipeline overlaps; and never
    # more than two batches were unacked (the depth)
    assert table.acked_at_routing[:2] == [0, 0] and len(table.acked_at_routing) == 8
    for n, acked_then in enumerate(table.acked_at_routing[1:], start=1):
        assert 36 * (n - 1) <= acked_then <= 36 * n
    assert table.changelog  # the loops below check something
    for _partition, key, value in table.changelog:
        assert table.data[key] >= value
    last: dict[str, int] = {}
    for _partition, key, value in table.changelog:  # written in batch order
        assert value > last.get(key, 0)
        last[key] = value
    seen = _sequences(kafka.bootstrap, names)
    assert {s for s, _ in seen} == set(RESIDENT_SUBSCRIBERS)
    _assert_numbered_once_in_order(seen)
    for (subscriber, source), by_share_partition in seen.items():
        top = max(s for seqs in by_share_partition.values() for s in seqs)
        assert table.data[f"{subscriber}/{RES}/{source}"] == top


def test_a_router_with_small_batches_numbers_every_delivery_once(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bus, names, _ = _prepared(kafka.bootstrap)
    router = RouterProcess(
        kafka.bootstrap, tmp_path / "router", prefix=names.prefix, extra=["--batch", "25"]
    ).start()
    writer = RawWriter(bus, kafka.bootstrap, names)
    table, now = RoutingTable(bus), datetime.now(UTC)
    expected: Counter[str] = Counter()
    try:
        for i in range(1500):
            region = REGIONS[i % len(REGIONS)]
            writer.send(RES, "CREATE", resident(region, seed=i))
            expected.update(
                d.grant.subscriber for d in table.route(RES, "CREATE", region, None, now)
            )
        writer.flush()
        assert set(expected) == set(RESIDENT_SUBSCRIBERS) and expected["province.jiangsu"] == 1500

        def province_has_all() -> bool:
            got = read_topic(kafka.bootstrap, names.share("province.jiangsu", RES), 1.0)
            return len(got) >= 1500

        wait_for(province_has_all, 180, "the province to receive all 1500 events")
        seen = _sequences(kafka.bootstrap, names)
        _assert_numbered_once_in_order(seen)
        received: Counter[str] = Counter()
        for (subscriber, _source), by_share_partition in seen.items():
            received[subscriber] += sum(len(seqs) for seqs in by_share_partition.values())
        assert received == expected
        assert router.alive()
    finally:
        router.stop()
