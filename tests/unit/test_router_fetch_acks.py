"""The router's consumer takes and acks whole fetches with Faust's own bookkeeping.

``router.batching`` bypasses Faust's per-message path for the raw topics, so the
offsets Faust commits now come from ``BatchConsumer._take`` and ``ack_fetch``.
Each scenario here runs twice on a fresh consumer: through the fetch path, and
through Faust's per-message path (its drain loop's read-offset and gap steps,
quoted below, then Faust's ``ack`` per message). Everything Faust commits from must
match: read offsets, gaps, the acked index and list, the acked count, and the
offsets its commits would reach (``_new_offset``, drained until it has none).
No broker: the consumer is built, never started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import Message

from syncbus.router.batching import BatchApp, BatchConsumer, Fetch
from syncbus.router.engine import RawMessage

TOPIC = "raw.population.resident"
TP0 = TP(TOPIC, 0)


async def _faust_path(consumer: BatchConsumer, offsets: Sequence[int]) -> None:
    """faust.transport.consumer.Consumer._drain_messages for one fetch, then ``ack``."""
    for offset in offsets:
        r_offset = consumer._read_offset[TP0]
        if r_offset is None or offset >= r_offset:
            gap = offset - (r_offset or 0)
            if gap > 1 and r_offset and consumer.app.topics.acks_enabled_for(TOPIC):
                await consumer._add_gap(TP0, r_offset + 1, offset)
            consumer._read_offset[TP0] = offset
            consumer.ack(Message(TOPIC, 0, offset, 0.0, 0, [], b"k", b"v", None, tp=TP0))


async def _fetch_path(consumer: BatchConsumer, offsets: Sequence[int]) -> Fetch:
    fetch = Fetch()
    records = [RawMessage(TOPIC, 0, o, b"k", b"v", []) for o in offsets]
    await consumer._take(TP0, records, fetch)
    consumer._unacked_messages.add(fetch)  # type: ignore[arg-type]  # as ``_fetch`` does
    consumer.ack_fetch(fetch)
    assert fetch.acked and fetch not in consumer._unacked_messages
    consumer.ack_fetch(fetch)  # a second ack changes nothing
    return fetch


def _run(fetches: Sequence[Sequence[int]], committed: int | None, faust: bool) -> dict[str, Any]:
    app = BatchApp("fetch-acks-test", broker="kafka://127.0.0.1:9", store="memory://",
                   web_enabled=False, autodiscover=False)

    async def run() -> dict[str, Any]:
        consumer = app.consumer
        assert isinstance(consumer, BatchConsumer)
        app.topics._acking_topics.add(TOPIC)  # what the router's agent subscribing it does
        if committed is not None:
            consumer._committed_offset[TP0] = committed
        taken: list[int] = []
        for offsets in fetches:
            if faust:
                await _faust_path(consumer, offsets)
            else:
                taken += [r.offset for r in (await _fetch_path(consumer, offsets)).records]
        state = {
            "read": consumer._read_offset[TP0],
            "gaps": sorted((i.begin, i.end) for i in consumer._gap[TP0]),
            "acked": sorted(consumer._acked[TP0]),
            "index": sorted(consumer._acked_index[TP0]),
            "n_acked": consumer._n_acked,
        }
        commits = []
        while (offset := consumer._new_offset(TP0)) is not None:
            commits.append(offset)
            consumer._committed_offset[TP0] = offset
        state["commits"] = commits
        if not faust:
            state["taken"] = taken
        return state

    return asyncio.run(run())


SCENARIOS = {
    "contiguous": ([range(0, 10), range(10, 15)], None),
    "compaction gaps": ([[0, 1, 2, 5, 6], [9], [10, 14]], None),
    "gap across fetches": ([range(3, 6), range(8, 12)], 3),
    "offsets read again": ([range(0, 7), range(4, 10), range(2, 5)], None),
    "below the committed offset": ([range(3, 8), range(3, 12)], 5),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_fetch_is_taken_and_acked_as_faust_does_each_message(name: str) -> None:
    fetches, committed = SCENARIOS[name]
    ours, faust = _run(fetches, committed, faust=False), _run(fetches, committed, faust=True)
    taken = ours.pop("taken")  # whatever was read again, the last fetch's offsets are new
    assert ours == faust
    assert ours["commits"], "the scenario commits something"
    assert ours["commits"][-1] == max(max(f) for f in fetches) + 1  # nothing held back
    assert set(taken) >= {o for f in fetches for o in f if o >= max(f[0] for f in fetches)}


def test_offsets_already_read_are_not_routed_again() -> None:
    """Except the last one read: Faust's read offset is also where a seek puts the
    consumer (the next offset to read), so it takes an offset equal to it."""
    state = _run([range(0, 7), range(4, 10), range(2, 5)], None, faust=False)
    assert state["taken"] == [*range(0, 7), 6, 7, 8, 9]
