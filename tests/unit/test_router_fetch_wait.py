"""The router's Faust consumer asks the broker to hold an empty fetch 100 ms, not 1.5 s.

Faust hard-codes 1500 ms; under load that stalled the router's fetches for over a
second every few batches (``router.batching``). This checks the override reaches
the aiokafka consumer the worker builds, so a Faust or aiokafka upgrade that moves
the attribute fails here instead of silently bringing the stalls back.
"""

from __future__ import annotations

import asyncio

from syncbus.router.batching import FETCH_MAX_WAIT_MS, BatchApp, BatchConsumerThread


def test_the_worker_consumer_waits_at_most_100_ms_for_an_empty_fetch() -> None:
    app = BatchApp("fetch-wait-test", broker="kafka://127.0.0.1:9", store="memory://",
                   web_enabled=False, autodiscover=False)

    async def build() -> int:
        thread = app.consumer._thread
        assert isinstance(thread, BatchConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)
        wait: int = consumer._fetch_max_wait_ms
        return wait

    assert FETCH_MAX_WAIT_MS == 100
    assert asyncio.run(build()) == FETCH_MAX_WAIT_MS
