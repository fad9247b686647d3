"""A table changelog partition Faust pauses is paused in aiokafka too, so it cannot hold
the raw topics' fetches.

Faust pauses a partition in its own bookkeeping only, and leaves out of each fetch it
takes the records of partitions it paused. aiokafka still fetched them, and records
nobody takes stop every fetch to that broker for aiokafka's prefetch backoff (100 ms).
The router's first changelog writes after an assignment came back to it that way:
in ``bench latency`` the first 200 ms of events waited one or two 100 ms stalls
(``router.batching.BatchConsumer.pause_partitions``). This runs the consumer thread's
loop and a real aiokafka consumer on a real broker, as the router's worker does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from syncbus.router.batching import BatchApp, BatchConsumer
from tests.conftest import LocalKafka

pytestmark = pytest.mark.integration


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        time.sleep(0.01)


def test_faust_pausing_a_changelog_partition_pauses_its_fetching_and_resuming_resumes_it(
    kafka: LocalKafka, create_topic: Callable[..., str]
) -> None:
    app = BatchApp("pause-test", broker=f"kafka://{kafka.bootstrap}", store="memory://",
                   web_enabled=False, autodiscover=False)
    table = app.Table("sequence", default=int, partitions=1)
    changelog = create_topic(name=table.changelog_topic.get_topic_name())
    raw = create_topic("raw")
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    thread: Any = consumer._thread
    loop = thread.thread_loop  # the consumer thread's own loop, where aiokafka lives
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    def on_loop(make: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), loop).result(30)

    async def start() -> AIOKafkaConsumer:
        aio = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
        await aio.start()
        aio.assign([TopicPartition(raw, 0), TopicPartition(changelog, 0)])
        return aio

    aio = on_loop(start)
    thread._consumer = aio
    try:
        consumer.pause_partitions([TP(changelog, 0), TP(raw, 0)])
        _until(lambda: aio.paused() == {TopicPartition(changelog, 0)},
               "the changelog partition, and only it, paused in aiokafka")
        assert TP(raw, 0) in consumer._paused_partitions  # Faust's own pause still holds
        consumer.resume_partitions([TP(changelog, 0), TP(raw, 0)])
        _until(lambda: aio.paused() == set(), "the changelog partition resumed in aiokafka")
    finally:
        thread._consumer = None

        async def stop() -> None:
            await aio.stop()

        on_loop(stop)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
