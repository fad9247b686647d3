"""Replaying quarantined events once the cause of their dead letter is fixed.

Every event the router dead-letters is kept, as it was read, in the compacted
``syncbus.quarantine`` (only the admin reads it), keyed by its origin
``<raw topic>/<partition>/<offset>``. A redrive reads the quarantine's latest
record per origin and asks the routing engine, with the live policy and its
schemas, whether the event would route now. One that would is produced again to
its raw topic with its key, where the running router routes it as any event, and
its quarantine record is then tombstoned; one that would still fail stays, and is
counted by its error class. So a redrive run twice replays nothing twice: the
second finds only what still fails. If it stops between the replay and the
tombstone, the next run replays that event again, and subscribers, which drop
duplicates by event id, still see it once.

The engine here never delivers: its tokens use throwaway secrets, and its output
is only read for dead letters.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from syncbus.admin.compacted import assign_from_beginning, watermarks
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.core.codec import Codec
from syncbus.core.views import ViewCache
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import RawMessage, RoutingEngine
from syncbus.router.follower import PolicyFollower
from syncbus.router.secrets import TokenSecrets


@dataclass
class RedriveReport:
    redriven: Counter[str] = field(default_factory=Counter)  # raw topic -> events
    still_failing: Counter[str] = field(default_factory=Counter)  # error class -> events

    def lines(self) -> list[str]:
        lines = [f"redriven: {sum(self.redriven.values())} events"]
        lines += [f"  {n} to {topic}" for topic, n in sorted(self.redriven.items())]
        lines.append(f"still failing, kept in quarantine: {sum(self.still_failing.values())}")
        lines += [f"  {n} {error}" for error, n in self.still_failing.most_common()]
        return lines


def redrive(connection: Connection, names: TopicNames, timeout: float = 30.0) -> RedriveReport:
    """Replay every quarantined event that routes now; see the module docstring."""
    engine = _engine(connection, names, timeout)
    report = RedriveReport()
    replayed: list[bytes] = []
    producer = Producer(connection.confluent(**{"enable.idempotence": True, "acks": "all"}))
    now = datetime.now(UTC)
    for origin, (value, key, headers) in sorted(_latest(connection, names, timeout).items()):
        topic = headers.get(t.H_DLQ_TOPIC, b"").decode(errors="replace")
        message = RawMessage(topic, int(headers.get(t.H_DLQ_PARTITION, b"0")),
                             int(headers.get(t.H_DLQ_OFFSET, b"0")), key, value, None)
        out = engine.process([message], now, lambda _: 0)
        if out.dead:
            report.still_failing.update(out.dead_by_error)
            continue
        producer.produce(topic, value, key)
        replayed.append(origin)
        report.redriven[topic] += 1
    _flush(producer, "replayed events")  # replayed before tombstoned: never lost
    for origin in replayed:
        producer.produce(names.quarantine, None, origin)
    _flush(producer, "quarantine tombstones")
    return report


def _engine(connection: Connection, names: TopicNames, timeout: float) -> RoutingEngine:
    follower = PolicyFollower(connection, names.policy)
    try:
        bus = follower.load(timeout)
    finally:
        follower.close()
    codec = Codec()
    secrets = TokenSecrets({s: os.urandom(16).hex() for s in bus.subscribers})
    policy = CompiledPolicy(bus, secrets, codec, ViewCache(bus.schemas.envelope), names,
                            os.urandom(32))
    return RoutingEngine(policy, codec, names, byte_path=False)


Quarantined = tuple[bytes, bytes | None, dict[str, bytes]]  # raw value, raw key, metadata


def _latest(connection: Connection, names: TopicNames, timeout: float) -> dict[bytes, Quarantined]:
    """The quarantine's latest record per origin, tombstoned origins left out."""
    consumer = Consumer(connection.confluent(**{
        "group.id": "syncbus-redrive", "enable.auto.commit": False,
        "enable.partition.eof": False}))
    found: dict[bytes, Quarantined] = {}
    try:
        assign_from_beginning(consumer, names.quarantine, timeout)
        ends = {}
        for tp in consumer.assignment():
            low, high = watermarks(consumer, tp, timeout)
            if high > low:
                ends[tp.partition] = high
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {names.quarantine} stalled at {sorted(ends)}")
            for message in consumer.consume(1000, timeout=1.0):
                _keep(message, found)
                partition = int(message.partition() or 0)
                if message.error() is None and int(message.offset() or 0) + 1 >= ends.get(
                        partition, 0):
                    ends.pop(partition, None)
    finally:
        consumer.close()
    return found


def _keep(message: Any, found: dict[bytes, Quarantined]) -> None:
    error = message.error()
    if error is not None:
        if error.code() != KafkaError._PARTITION_EOF:
            raise RuntimeError(f"reading {message.topic()}: {error}")
        return
    origin = message.key() or b""
    if message.value() is None:
        found.pop(origin, None)
        return
    headers = dict(message.headers() or [])
    found[origin] = (message.value(), headers.pop(t.H_DLQ_KEY, None), headers)


def _flush(producer: Producer, what: str) -> None:
    if producer.flush(60) > 0:
        raise RuntimeError(f"{what} not confirmed by the broker within 60 s; run it again")
