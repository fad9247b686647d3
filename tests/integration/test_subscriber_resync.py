"""Issue #17 in the Subscriber SDK against the real broker: only newer versions reach
the handler, resync deliveries stay out of gap detection, markers never reach the
handler nor the dead-letter topic, and each resync is announced begun and complete
once. Share messages are produced to the wire contract by ``ShareProducer`` until the
router writes them."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from syncbus.core.fake import make_records
from syncbus.core.topics import H_MARKER, H_RESYNC
from syncbus.subscriber import Event, Gap, ResyncInfo, SqlStore, Subscriber
from tests.subscriber_helpers import ShareProducer

RESOURCE = "population.resident"


@pytest.fixture
def sub_id() -> str:
    return f"test.v{uuid.uuid4().hex[:10]}"


def subscriber(kafka: Any, sub_id: str, store: Path | SqlStore, **kw: Any) -> Subscriber:
    kw.setdefault("registry", CollectorRegistry())
    return Subscriber(sub_id, [RESOURCE], bootstrap=kafka.bootstrap, store=store, **kw)


def test_only_newer_versions_reach_the_handler(kafka: Any, sub_id: str, tmp_path: Path) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id, partitions=2)
    a, b, c, d = make_records(RESOURCE, 4, seed=41)
    rid = uuid.uuid4().hex
    expected = share.send([a], version=10)
    expected += share.send([a], op="UPDATE", version=20)
    share.send([a], op="SNAPSHOT", version=15, resync=rid)  # older than the update: skipped
    expected += share.send([a], op="SNAPSHOT", version=20, resync=rid)  # equal, resync: taken
    share.send([a], op="UPDATE", version=20)  # equal, live (a new id): skipped
    expected += share.send([b], op="SNAPSHOT", version=5, resync=rid)  # nothing held: taken
    expected += share.send([c])  # no version (an older router): taken as before
    expected += share.send([c])
    expected += share.send([d], version=30)
    expected += share.send([d], op="DELETE", version=31)
    share.send([d], op="SNAPSHOT", version=30, resync=rid)  # older than the delete: skipped
    handled: list[Event] = []
    with subscriber(kafka, sub_id, tmp_path / "s.db") as sub:
        sub.run(handled.append, idle_timeout=3)
        assert sub.store.held_version(RESOURCE, d["id_number"]) == (31, True)
        assert sub.store.held_version(RESOURCE, a["id_number"]) == (20, False)
        assert sub.store.held_version(RESOURCE, c["id_number"]) is None
    assert sorted(e.event_id for e in handled) == sorted(expected)
    snapshot = next(e for e in handled if e.key == a["id_number"] and e.op == "SNAPSHOT")
    assert snapshot.version == 20 and snapshot.resync == rid and snapshot.from_resync
    live = next(e for e in handled if e.key == a["id_number"] and e.op == "UPDATE")
    assert live.version == 20 and live.resync is None and not live.from_resync

    # the held versions are durable: another group on the same store skips older ones
    late = share.send([a], op="UPDATE", version=18)
    newer = share.send([a], op="UPDATE", version=21)
    share.send([d], op="SNAPSHOT", version=31, resync=uuid.uuid4().hex)  # equal: re-created
    again: list[Event] = []
    with subscriber(kafka, sub_id, tmp_path / "s.db", group_id=f"{sub_id}.two") as sub:
        sub.run(again.append, idle_timeout=3)
    got = [e.event_id for e in again]
    assert late[0] not in got and newer[0] in got
    assert [e.op for e in again if e.key == d["id_number"]] == ["SNAPSHOT"]
    assert len(again) == 2

    # a replay ignores the held versions, as it ignores handled ids, but keeps the rule
    # among what it re-delivers, from one batch (here: one message) to the next
    replayed: list[Event] = []
    with subscriber(
        kafka, sub_id, tmp_path / "s.db", group_id=f"{sub_id}.three", start="beginning",
        batch_size=1,
    ) as sub:
        sub.run(replayed.append, idle_timeout=3)
    assert sorted(e.event_id for e in replayed) == sorted(expected + got)
    # leaving a replay's loop early rewinds the batch: its deliveries pass again
    replayed.clear()
    with subscriber(
        kafka, sub_id, tmp_path / "s.db", group_id=f"{sub_id}.four", start="beginning"
    ) as sub:
        for event in sub.events(idle_timeout=3):
            replayed.append(event)
            break  # left unfinished: it comes again
        replayed += list(sub.events(idle_timeout=3))
    ids = [e.event_id for e in replayed]
    assert sorted(ids) == sorted([*expected, *got, ids[0]])


def test_markers_announce_each_resync_once_and_never_reach_the_handler(
    kafka: Any, sub_id: str, tmp_path: Path
) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id, partitions=3)
    records = make_records(RESOURCE, 6, seed=42)
    live = share.send(records[:2], version=1)
    rid = uuid.uuid4().hex
    share.marker(rid, "begin", "full", {0: 40, 1: 7})
    resent = share.send(records, op="SNAPSHOT", version=3, resync=rid)
    share.marker(rid, "end", "full", {0: 40, 1: 7})
    live += share.send(records[2:3], op="UPDATE", version=50)
    # bad input on the share topic: a marker header with nothing a marker needs
    junk = Producer({"bootstrap.servers": kafka.bootstrap})
    junk.produce(share.topic, None, None, partition=0, headers=[(H_MARKER, b"whatever")])
    junk.flush(30)

    begun: list[ResyncInfo] = []
    ended: list[ResyncInfo] = []
    gaps: list[Gap] = []
    handled: list[Event] = []
    registry = CollectorRegistry()
    with subscriber(
        kafka,
        sub_id,
        tmp_path / "s.db",
        registry=registry,
        on_gap=gaps.append,
        on_resync_begin=begun.append,
        on_resync_end=ended.append,
    ) as sub:
        sub.run(handled.append, idle_timeout=3)
        assert sub.store.resync(rid) == ended[0]
    assert sorted(e.event_id for e in handled) == sorted(live + resent)
    assert all(e.headers.get(H_RESYNC) in (None, rid) for e in handled)
    assert gaps == []  # resync deliveries carry a sequence far off: not fed to gap checks
    assert [i.resync for i in begun] == [rid] and [i.resync for i in ended] == [rid]
    info = ended[0]
    assert info.complete and info.kind == "full" and info.resource == RESOURCE
    assert info.watermark == {0: 40, 1: 7}
    assert info.partitions == 3 and info.ended == {0, 1, 2} and info.topic == share.topic
    labels = {"subscriber": sub_id, "resource": RESOURCE}
    dead = registry.get_sample_value(
        "syncbus_subscriber_dead_letters_total", {**labels, "reason": "undecodable"}
    )
    assert not dead

    # another group on the same store re-reads every marker: nothing is announced again;
    # a second resync (a delta) is announced, once
    second = uuid.uuid4().hex
    share.marker(second, "begin", "delta", {0: 60, 1: 7})
    retracted = share.send(records[5:], op="DELETE", version=3, resync=second)
    share.marker(second, "end", "delta", {0: 60, 1: 7})
    begun.clear()
    ended.clear()
    handled.clear()
    with subscriber(
        kafka,
        sub_id,
        tmp_path / "s.db",
        group_id=f"{sub_id}.two",
        on_resync_begin=begun.append,
        on_resync_end=ended.append,
    ) as sub:
        sub.run(handled.append, idle_timeout=3)
    assert [e.event_id for e in handled] == retracted
    assert [i.resync for i in begun] == [second] and [i.resync for i in ended] == [second]
    assert ended[0].kind == "delta"


def test_an_end_callback_that_fails_leaves_the_marker_to_come_again(
    kafka: Any, sub_id: str, tmp_path: Path
) -> None:
    share = ShareProducer(kafka.bootstrap, sub_id, partitions=1)
    rid = uuid.uuid4().hex
    share.marker(rid, "begin")
    share.send(make_records(RESOURCE, 2, seed=43), op="SNAPSHOT", version=1, resync=rid)
    share.marker(rid, "end")

    def fail(_info: ResyncInfo) -> None:
        raise RuntimeError("the application's end hook failed")

    with (
        subscriber(kafka, sub_id, tmp_path / "s.db", on_resync_end=fail) as sub,
        pytest.raises(RuntimeError, match="end hook"),
    ):
        sub.run(lambda e: None, idle_timeout=3)
    ended: list[ResyncInfo] = []
    begun: list[ResyncInfo] = []
    with subscriber(
        kafka, sub_id, tmp_path / "s.db", on_resync_begin=begun.append, on_resync_end=ended.append
    ) as sub:
        assert sub.run(lambda e: None, idle_timeout=3) == 0  # the snapshots were handled
    assert [i.resync for i in ended] == [rid]
    assert begun == []  # announced (and committed) in the first run
    store = SqlStore.open(tmp_path / "s.db")
    try:
        found = store.resync(rid)
        assert found is not None and found.complete
    finally:
        store.close()


def test_members_sharing_a_store_complete_a_resync_once(
    kafka: Any, sub_id: str, request: pytest.FixtureRequest
) -> None:
    """Two members of one group, each owning some partitions, one PostgreSQL store: the
    resync is complete once, announced by whichever member records the last end."""
    database = str(request.getfixturevalue("postgres"))
    share = ShareProducer(kafka.bootstrap, sub_id, partitions=4)
    begun: list[tuple[int, str]] = []
    ended: list[tuple[int, ResyncInfo]] = []
    handled: list[str] = []
    members = [
        subscriber(
            kafka,
            sub_id,
            SqlStore.open(database),
            on_resync_begin=lambda info, n=n: begun.append((n, info.resync)),
            on_resync_end=lambda info, n=n: ended.append((n, info)),
        )
        for n in (0, 1)
    ]
    errors: list[BaseException] = []

    def run(member: Subscriber) -> None:
        try:
            member.run(lambda e: handled.append(e.event_id), idle_timeout=8)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
            raise

    threads = [threading.Thread(target=run, args=(m,)) for m in members]
    for thread in threads:
        thread.start()
    split = group_split(kafka, sub_id, 2)
    assert sorted(split[0] + split[1]) == [0, 1, 2, 3], split
    rid = uuid.uuid4().hex
    share.marker(rid, "begin", "full", {0: 9})
    sent = share.send(make_records(RESOURCE, 12, seed=44), op="SNAPSHOT", version=1, resync=rid)
    share.marker(rid, "end", "full", {0: 9})
    for thread in threads:
        thread.join(timeout=90)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    for member in members:
        member.store.close()
        member.close()
    assert sorted(handled) == sorted(sent)
    assert [r for _, r in begun] == [rid]
    assert len(ended) == 1
    info = ended[0][1]
    assert info.resync == rid and info.complete and info.ended == {0, 1, 2, 3}


def group_split(kafka: Any, group: str, members: int) -> list[list[int]]:
    """The partitions each member of ``group`` holds, once it is stable with ``members``
    members that all hold some (asked of the broker: a running consumer is not to be
    called from another thread)."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    deadline = time.monotonic() + 60
    split: list[list[int]] = []
    while time.monotonic() < deadline:
        try:
            found = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except KafkaException:  # NOT_COORDINATOR while the new group settles: ask again
            time.sleep(0.3)
            continue
        split = [sorted(tp.partition for tp in m.assignment.topic_partitions)
                 for m in found.members]
        if len(split) == members and all(split):
            return split
        time.sleep(0.3)
    raise AssertionError(f"group {group} never settled on {members} members: {split}")
