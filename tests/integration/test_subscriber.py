"""The Subscriber SDK against the real broker: decoding, dedupe, gaps, failures, replay."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from syncbus.core.fake import make_records
from syncbus.subscriber import Event, Gap, HandlerFailed, RetryPolicy, Subscriber, dlq_topic
from syncbus.subscriber.subscriber import COMMIT_EVERY_S
from tests.subscriber_helpers import ShareProducer, repository, view_domain

FAST_RETRY = RetryPolicy(attempts=2, initial_backoff_s=0.01, max_backoff_s=0.01)


@pytest.fixture
def sub_id() -> str:
    return f"test.s{uuid.uuid4().hex[:10]}"


def residents(n: int, seed: int = 0) -> list[dict[str, Any]]:
    return make_records("population.resident", n, seed=seed)


def subscriber(kafka: Any, sub_id: str, store: Path, **kw: Any) -> Subscriber:
    kw.setdefault("registry", CollectorRegistry())
    return Subscriber(sub_id, ["population.resident"], bootstrap=kafka.bootstrap, store=store, **kw)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_handler_gets_decoded_events_with_metadata(kafka: Any, sub_id: str, tmp_path: Path) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id, clearance="L2", partitions=2)
    records = residents(20)
    ids = share.send(records)
    seen: list[Event] = []
    registry = CollectorRegistry()
    with subscriber(kafka, sub_id, tmp_path / "s.db", registry=registry) as sub:
        assert sub.run(seen.append, max_events=20, idle_timeout=20) == 20
    assert sorted(e.event_id for e in seen) == sorted(ids)
    by_key = {e.key: e for e in seen}
    first = by_key[records[0]["id_number"]]
    assert first.op == "CREATE" and first.resource == "population.resident"
    assert first.after is not None and first.after["region"] == records[0]["region"]
    assert first.after["name"] != records[0]["name"]  # L3 name masked for an L2 grant
    assert first.delivery_sequence is not None and first.routed_at is not None
    labels = {"subscriber": sub_id, "resource": "population.resident"}
    assert sample(registry, "syncbus_subscriber_events_total", **labels) == 20
    assert sample(registry, "syncbus_subscriber_end_to_end_seconds_count", **labels) == 20
    assert sample(registry, "syncbus_subscriber_hop_seconds_count", **labels, hop="received") == 20


def test_offsets_are_committed_at_most_every_second_and_once_caught_up(
    kafka: Any, sub_id: str, tmp_path: Path
) -> None:
    """A commit per batch was hundreds of requests a second to the group coordinator;
    now a busy subscriber commits at most every ``COMMIT_EVERY_S``, and what it
    handled is committed as soon as it has nothing more to read (lag reads 0)."""
    share = ShareProducer(kafka.bootstrap, sub_id)
    share.send(residents(300, seed=7))
    commits: list[Any] = []
    config = {"on_commit": lambda error, _partitions: commits.append(error)}
    started = time.monotonic()
    with subscriber(kafka, sub_id, tmp_path / "s.db", batch_size=5,
                    consumer_config=config) as sub:
        assert sub.run(lambda _e: None, idle_timeout=2) == 300  # 60 batches
        elapsed = time.monotonic() - started
        group = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": sub_id})
        try:  # read before close, which commits synchronously anyway
            committed = group.committed([TopicPartition(share.topic, 0)], timeout=10)
        finally:
            group.close()
    assert committed[0].offset == 300
    assert commits and all(error is None for error in commits)
    assert len(commits) <= elapsed / COMMIT_EVERY_S + 2, (len(commits), elapsed)


def test_duplicates_are_skipped_within_and_across_runs(
    kafka: Any, sub_id: str, tmp_path: Path
) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id)
    records = residents(10, seed=1)
    ids = share.send(records)
    for record, event_id in zip(records[:3], ids[:3], strict=True):
        share.send([record], event_id=event_id)  # the router sent these again
    seen: list[str] = []
    registry = CollectorRegistry()
    with subscriber(kafka, sub_id, tmp_path / "s.db", registry=registry) as sub:
        sub.run(lambda e: seen.append(e.event_id), idle_timeout=3)
    assert sorted(seen) == sorted(ids)
    # a new consumer group re-reads the topic from the start; the store remembers
    with subscriber(kafka, sub_id, tmp_path / "s.db", group_id=f"{sub_id}.other") as sub:
        assert sub.run(lambda e: seen.append(e.event_id), idle_timeout=3) == 0
    assert len(seen) == 10
    labels = {"subscriber": sub_id, "resource": "population.resident"}
    assert sample(registry, "syncbus_subscriber_duplicates_total", **labels) == 3


def test_gaps_in_the_delivery_sequence_are_reported(
    kafka: Any, sub_id: str, tmp_path: Path
) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id)
    records = residents(4, seed=2)
    share.send(records[:2])
    share.send(records[2:3], skip_sequence=2)  # deliveries 3 and 4 never arrive
    share.send(records[3:], source_partition=1)  # another source partition starts fresh
    gaps: list[Gap] = []
    registry = CollectorRegistry()
    with subscriber(kafka, sub_id, tmp_path / "s.db", on_gap=gaps.append, registry=registry) as s:
        assert s.run(lambda e: None, idle_timeout=3) == 4
    assert gaps == [Gap("population.resident", 0, expected=3, received=5)]
    labels = {"subscriber": sub_id, "resource": "population.resident"}
    assert sample(registry, "syncbus_subscriber_missing_events_total", **labels) == 2


def test_reader_on_v1_reads_events_written_with_v2(kafka: Any, sub_id: str, tmp_path: Path) -> None:
    assert repository().versions("population.resident") == [1, 2]
    share = ShareProducer(kafka.bootstrap, sub_id, version=2, clearance="L4")
    records = [{**r, "email": f"u{i}@example.cn"} for i, r in enumerate(residents(5, seed=3))]
    share.send(records)
    v1_view = view_domain(repository().get("population.resident", 1), "L4")
    old: list[Event] = []
    with subscriber(
        kafka, sub_id, tmp_path / "v1.db", reader_schemas={"population.resident": v1_view}
    ) as sub:
        assert sub.run(old.append, idle_timeout=5) == 5
    assert all(e.after is not None and "email" not in e.after for e in old)
    assert {e.after["id_number"] for e in old if e.after} == {r["id_number"] for r in records}
    new: list[Event] = []
    with subscriber(kafka, sub_id, tmp_path / "v2.db", group_id=f"{sub_id}.v2") as sub:
        sub.run(new.append, idle_timeout=5)
    assert sorted(e.after["email"] for e in new if e.after) == sorted(r["email"] for r in records)


def dead_letters(kafka: Any, topic: str, expect: int) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[Any] = []
    deadline = time.monotonic() + 20
    while len(found) < expect and time.monotonic() < deadline:
        found += [m for m in consumer.consume(10, 1) if m.error() is None]
    consumer.close()
    return found


def test_failing_handler_dead_letters_and_the_stream_goes_on(
    kafka: Any, sub_id: str, tmp_path: Path
) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id)
    ids = share.send(residents(6, seed=4))
    share.send_raw(b"not avro at all")
    share.send(residents(1, seed=5))
    calls: list[str] = []

    def handler(event: Event) -> None:
        calls.append(event.event_id)
        if event.event_id == ids[2]:
            raise RuntimeError("downstream refused it")

    with subscriber(kafka, sub_id, tmp_path / "s.db", retry=FAST_RETRY) as sub:
        assert sub.run(handler, idle_timeout=3) == 6
    assert calls.count(ids[2]) == 2  # tried, retried, then parked
    letters = dead_letters(kafka, dlq_topic(sub_id), 2)
    reasons = sorted(dict(m.headers())["syncbus-dlq-error-class"] for m in letters)
    assert reasons == [b"NotSingleObjectEncoded", b"RuntimeError"]
    # everything was committed past, dead letters included: nothing comes again
    with subscriber(kafka, sub_id, tmp_path / "other.db") as sub:
        assert sub.run(calls.append, idle_timeout=3) == 0


def test_stop_policy_commits_nothing_past_the_failing_event(
    kafka: Any, sub_id: str, tmp_path: Path
) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id)
    ids = share.send(residents(5, seed=6))
    handled: list[str] = []

    def handler(event: Event) -> None:
        if event.event_id == ids[2]:
            raise RuntimeError("bad deploy")
        handled.append(event.event_id)

    stop = RetryPolicy(attempts=1, on_failure="stop")
    with (
        subscriber(kafka, sub_id, tmp_path / "a.db", retry=stop) as sub,
        pytest.raises(HandlerFailed, match=ids[2]),
    ):
        sub.run(handler)
    assert handled == ids[:2]
    # a fresh store: only the Kafka offsets decide where the next run starts
    with subscriber(kafka, sub_id, tmp_path / "b.db") as sub:
        sub.run(lambda e: handled.append(e.event_id), idle_timeout=3)
    assert handled == ids


def test_iteration_and_replay_from_a_timestamp(kafka: Any, sub_id: str, tmp_path: Path) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id)
    early = share.send(residents(3, seed=7))
    time.sleep(0.5)
    middle = dt.datetime.now(dt.UTC)
    time.sleep(0.5)
    late = share.send(residents(3, seed=8))
    with subscriber(kafka, sub_id, tmp_path / "s.db") as sub:
        got = []
        for event in sub.events(idle_timeout=3):
            got.append(event.event_id)
            if len(got) == 2:
                break  # the second event was not finished: it comes again
        got += [e.event_id for e in sub.events(idle_timeout=3)]
    assert got == [*early[:2], *early[1:], *late]
    with subscriber(kafka, sub_id, tmp_path / "s.db", start=middle) as sub:
        assert [e.event_id for e in sub.events(idle_timeout=3)] == late
