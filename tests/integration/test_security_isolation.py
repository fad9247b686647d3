"""The isolation matrix on the secure local broker, for every pair of the shipped streams/.

Each principal gets one client per kind of check (a producer for all its writes, one
consumer subscribing every topic it reads or must not read), so the whole matrix runs
in seconds. Expectations are stated from the rules of the issue, not from
``core.access``: which topics a subscriber holds an effective grant for, which raw
topics a department owns.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from syncbus.admin.apply import topic_plan
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.core.access import ROUTER
from syncbus.core.catalog import load_bus
from syncbus.core.model import Bus
from tests.integration.conftest import REPO, SecureKafka

WAIT_S = 30.0
DENIED = "TOPIC_AUTHORIZATION_FAILED"


@pytest.fixture(scope="module")
def bus() -> Bus:
    return load_bus(REPO / "streams", REPO / "schemas")


def _share_topics(bus: Bus) -> set[str]:
    return {s.name for s in topic_plan(bus, TopicNames(), 1)
            if s.name.startswith(t.SHARE_PREFIX) and not s.name.endswith(".dlq")}


def _granted(bus: Bus, subscriber: str) -> set[str]:
    return {t.share_topic(g.subscriber, g.resource) for g in bus.grants
            if g.subscriber == subscriber and g.effective(bus.resource(g.resource))}


def _raw(bus: Bus) -> set[str]:
    return {t.raw_topic(r) for r in bus.resources}


@pytest.fixture(scope="module")
def seeded(secure_kafka: SecureKafka, bus: Bus) -> SecureKafka:
    """One record in every partition of every raw and share topic, written by the admin,
    so an allowed read has something to find."""
    producer = Producer(secure_kafka.admin.confluent())
    for topic in sorted(_raw(bus) | _share_topics(bus)):
        for partition in range(3):
            # raw topics are compacted: the broker refuses a record without a key
            producer.produce(topic, b"probe", b"probe", partition=partition)
    assert producer.flush(30) == 0
    return secure_kafka


def write_results(connection: Connection, topics: Iterable[str]) -> dict[str, str]:
    """Produce one record to each topic; topic -> "ok" or the error's name."""
    results: dict[str, str] = {}

    def done(err: Any, msg: Any) -> None:
        results[msg.topic()] = "ok" if err is None else err.name()

    producer = Producer(connection.confluent(**{"message.timeout.ms": 15000, "log_level": 0}))
    for topic in topics:
        # keyed: the compacted side topics refuse records without a key
        producer.produce(topic, b"isolation-test", key=b"isolation-test", callback=done)
    producer.flush(WAIT_S)
    return results


def read_results(connection: Connection, group: str, topics: Iterable[str]) -> dict[str, str]:
    """Subscribe every topic in ``group``; topic -> "ok" (a record arrived) or the error name."""
    wanted = set(topics)
    consumer = Consumer(connection.confluent(**{
        "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "log_level": 0}))
    consumer.subscribe(sorted(wanted))
    results: dict[str, str] = {}
    deadline = time.monotonic() + WAIT_S
    try:
        while set(results) != wanted and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None and error.name() == "GROUP_AUTHORIZATION_FAILED":
                return dict.fromkeys(wanted, error.name())
            if msg.topic() not in wanted:
                continue
            results.setdefault(msg.topic(), "ok" if error is None else error.name())
    finally:
        consumer.close()
    return results


def test_subscribers_read_only_their_granted_shares(seeded: SecureKafka, bus: Bus) -> None:
    shares, raws = _share_topics(bus), _raw(bus)
    for subscriber in sorted(bus.subscribers):
        granted = _granted(bus, subscriber)
        got = read_results(seeded.login(subscriber), f"{subscriber}.isolation",
                           shares | raws)
        assert {tp for tp, r in got.items() if r == "ok"} == granted, subscriber
        assert all(got.get(tp) == DENIED for tp in (shares - granted) | raws), (subscriber, got)


def test_subscribers_write_no_share_and_no_side_topic(seeded: SecureKafka, bus: Bus) -> None:
    forbidden = _share_topics(bus) | _raw(bus) | {t.POLICY_TOPIC, t.AUDIT_TOPIC, t.DLQ_TOPIC,
                                                  t.SCHEMAS_TOPIC}
    for subscriber in sorted(bus.subscribers):
        own_dlq = t.subscriber_dlq_topic(subscriber)
        got = write_results(seeded.login(subscriber), sorted(forbidden | {own_dlq}))
        assert got.pop(own_dlq) == "ok", subscriber
        assert got == dict.fromkeys(forbidden, DENIED), subscriber


def test_departments_write_only_their_own_raw_topics(seeded: SecureKafka, bus: Bus) -> None:
    everything = _raw(bus) | _share_topics(bus) | {t.POLICY_TOPIC, t.AUDIT_TOPIC, t.DLQ_TOPIC,
                                                   t.SCHEMAS_TOPIC}
    for department in sorted(bus.departments):
        owned = {t.raw_topic(r.id) for r in bus.resources.values() if r.owner == department}
        got = write_results(seeded.login(department), sorted(everything))
        assert {tp for tp, r in got.items() if r == "ok"} == owned, department
        assert all(got.get(tp) == DENIED for tp in everything - owned), (department, got)


def test_departments_read_no_data(seeded: SecureKafka, bus: Bus) -> None:
    data = _raw(bus) | _share_topics(bus)
    for department in sorted(bus.departments):
        got = read_results(seeded.login(department), f"{department}.isolation", data)
        assert got and set(got.values()) <= {DENIED, "GROUP_AUTHORIZATION_FAILED"}, department


def test_no_subscriber_joins_another_subscribers_group(seeded: SecureKafka, bus: Bus) -> None:
    subscribers = sorted(bus.subscribers)
    consumers = []
    for index, me in enumerate(subscribers):
        own = sorted(_granted(bus, me))[:1] or [t.subscriber_dlq_topic(me)]
        neighbour = subscribers[(index + 1) % len(subscribers)]
        for other in subscribers:
            if other == me:
                continue
            # every other subscriber's own group; a prefixed one (<other>.sink) of one of them
            for group in (other, *([f"{other}.sink"] if other == neighbour else [])):
                consumer = Consumer(seeded.login(me).confluent(**{
                    "group.id": group, "auto.offset.reset": "earliest", "log_level": 0}))
                consumer.subscribe(own)
                consumers.append(((me, group), consumer))
    refused: set[tuple[str, str]] = set()
    deadline = time.monotonic() + WAIT_S
    try:
        while len(refused) < len(consumers) and time.monotonic() < deadline:
            for pair, consumer in consumers:
                msg = consumer.poll(0.05)
                if msg is not None and msg.error() is not None:
                    if msg.error().name() == "GROUP_AUTHORIZATION_FAILED":
                        refused.add(pair)
                elif msg is not None:
                    raise AssertionError(f"{pair[0]} consumed in group {pair[1]}")
    finally:
        for _pair, consumer in consumers:
            consumer.close()
    assert refused == {pair for pair, _c in consumers}


def test_router_reads_raw_and_writes_shares_and_side_topics(seeded: SecureKafka, bus: Bus) -> None:
    router = seeded.login(ROUTER)
    got = read_results(router, f"{ROUTER}-isolation", _raw(bus) | {t.POLICY_TOPIC})
    assert set(got.values()) == {"ok"}, got
    allowed = _share_topics(bus) | {t.AUDIT_TOPIC, t.DLQ_TOPIC, t.SCHEMAS_TOPIC}
    written = write_results(router, sorted(allowed | {t.POLICY_TOPIC} | _raw(bus)))
    assert {tp for tp, r in written.items() if r == "ok"} == allowed, written
    assert written[t.POLICY_TOPIC] == DENIED


def test_anonymous_wrong_password_and_unknown_user_are_refused(
    secure_kafka: SecureKafka,
) -> None:
    anonymous = AdminClient({"bootstrap.servers": secure_kafka.bootstrap, "log_level": 0})
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=5)
    for connection in (secure_kafka.login("city.nanjing", "wrong-password"),
                       secure_kafka.login("no.such.user", "whatever")):
        errors: list[Any] = []
        admin = AdminClient(connection.confluent(error_cb=errors.append, log_level=0))
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
        deadline = time.monotonic() + WAIT_S
        refused = False
        while not refused and time.monotonic() < deadline:
            admin.poll(0.2)
            refused = any(e.name() == "_AUTHENTICATION" for e in errors)
        assert refused, connection.username


def test_controller_listener_is_closed_to_clients(secure_kafka: SecureKafka) -> None:
    from syncbus.localkafka import broker

    info = broker.status(secure_kafka.dir)
    assert info is not None
    controller = f"127.0.0.1:{info.controller_port}"
    as_subscriber = secure_kafka.login("city.nanjing").confluent(
        **{"bootstrap.servers": controller}
    )
    for config in ({"bootstrap.servers": controller}, as_subscriber):
        admin = AdminClient({**config, "log_level": 0})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
