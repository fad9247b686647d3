"""A record the broker refuses for good never holds back its department (issue 22).

Before, such a record stayed first in the spool's send queue and was retried every
second forever; every event accepted after it waited behind it. Now it is taken off
the queue, kept in the spool's refused table with the broker's reason, counted and
reported, and the events after it are delivered."""

from __future__ import annotations

import os
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry

from syncbus.publisher import Publisher
from syncbus.publisher.refused import RefusedEvent
from tests.conftest import LocalKafka
from tests.helpers_publish import read_topic, records, shipped_bus


def _topic(kafka: LocalKafka, name: str, config: dict[str, str] | None = None) -> str:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.create_topics([NewTopic(name, 3, 1, config=config or {})]).values():
        future.result(timeout=30)
    return name


def test_an_event_over_the_topics_size_limit_is_set_aside_and_the_rest_flow(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """The topic takes at most 64 KB a record batch; the publisher's own limit is larger,
    so only the broker can refuse the big event. The small events batched with it are
    refused with it at first, and must be delivered all the same."""
    topic = _topic(kafka, f"raw.legal.company.small-{os.urandom(4).hex()}",
                   {"max.message.bytes": "65536"})
    recs = records("legal.company", 40, seed=31)
    big = {**recs[5], "business_scope": "经营范围" * 8000}  # ~96 KB of UTF-8
    told: list[RefusedEvent] = []
    with Publisher("js-scjgj", shipped_bus(), kafka.bootstrap, spool_path=tmp_path / "s.db",
                   registry=CollectorRegistry(), topic_of=lambda _: topic,
                   on_refused=told.extend) as pub:
        ids = pub.publish_many("legal.company",
                               [{"op": "CREATE", "after": r} for r in [*recs[:5], big]])
        later = pub.publish_many("legal.company", [{"op": "CREATE", "after": r}
                                                   for r in recs[6:]])
        assert pub.flush(30) == 0, "the refused event must not hold back the later ones"
        refused = pub.refused()
        assert [e.event_id for e in refused] == [ids[5]]
        assert refused[0].error == "MSG_SIZE_TOO_LARGE" and refused[0].sequence == 6
        assert refused[0].resource == "legal.company" and len(refused[0].value) > 90_000
        deadline = time.monotonic() + 10
        while not told and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.event_id for e in told] == [ids[5]], "the host is told through on_refused"
        assert pub.metrics.refused.labels("legal.company", "MSG_SIZE_TOO_LARGE")._value.get() == 1
    reads = read_topic(kafka.bootstrap, topic, len(ids) - 1 + len(later))
    assert sorted(r.event_id for r in reads) == sorted(ids[:5] + later)
    again = Publisher("js-scjgj", shipped_bus(), kafka.bootstrap, spool_path=tmp_path / "s.db",
                      registry=CollectorRegistry(), topic_of=lambda _: topic)
    try:
        assert [e.event_id for e in again.refused()] == [ids[5]], "kept across restarts"
        assert again.spool.depth == 0
        assert again.drop_refused([again.refused()[0].id]) == 1 and again.refused() == []
    finally:
        again.close(timeout=5)


def test_a_missing_topic_sets_events_aside_until_they_are_resent(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """No such topic (auto-creation is off): the events are refused and kept; once the
    topic exists, ``resend_refused`` delivers them with their ids and sequences, and
    the events of other resources were never held back meanwhile."""
    missing = f"raw.credit.penalty.missing-{os.urandom(4).hex()}"
    present = _topic(kafka, f"raw.credit.other-{os.urandom(4).hex()}")
    recs = records("credit.penalty", 20, seed=9)
    with Publisher("js-xyb", shipped_bus(), kafka.bootstrap, spool_path=tmp_path / "x.db",
                   registry=CollectorRegistry(),
                   topic_of=lambda r: missing if r == "credit.penalty" else present,
                   producer_config={"topic.metadata.propagation.max.ms": 500}) as pub:
        ids = pub.publish_many("credit.penalty", [{"op": "CREATE", "after": r} for r in recs])
        beat = pub.heartbeat("credit.penalty")
        assert pub.flush(20) == 0, "nothing waits behind the refused events"
        refused = pub.refused()
        assert sorted(e.event_id for e in refused) == sorted([*ids, beat])
        assert {e.error for e in refused} <= {"UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"}
        _topic(kafka, missing)
        assert pub.resend_refused() == 21
        assert pub.refused() == []
        assert pub.flush(60) == 0
    reads = read_topic(kafka.bootstrap, missing, 21)
    assert sorted(r.event_id for r in reads) == sorted([*ids, beat])
    assert sorted(int(r.headers["syncbus-sequence"]) for r in reads) == list(range(1, 22))


def test_the_cli_names_the_line_the_broker_refused_and_delivers_the_rest(
    bus_kafka: LocalKafka, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    from syncbus.core.validation import to_json
    from tests.conftest import REPO

    _topic(bus_kafka, "raw.legal.company", {"max.message.bytes": "65536"})
    recs = [to_json(r) for r in records("legal.company", 3, seed=41)]
    recs[1] = {**recs[1], "business_scope": "经营范围" * 8000}  # ~96 KB: over the topic's
    source = tmp_path / "changes.jsonl"
    source.write_text("".join(json.dumps({"op": "CREATE", "after": r}, ensure_ascii=False) + "\n"
                              for r in recs), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "syncbus", "publish", "--as", "js-scjgj", "--resource",
         "legal.company", "--file", str(source), "--spool", str(tmp_path / "cli.db"),
         "--timeout", "30"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "SYNCBUS_BOOTSTRAP": bus_kafka.bootstrap},
    )
    assert run.returncode == 1, run.stderr
    assert "line 2: refused by the broker: MSG_SIZE_TOO_LARGE" in run.stderr
    assert "accepted 3, rejected 1, delivered 2" in run.stdout
    reads = read_topic(bus_kafka.bootstrap, "raw.legal.company", 2)
    assert {r.key.decode() for r in reads} == {recs[0]["uscc"], recs[2]["uscc"]}
