"""One event larger than the broker takes is refused at ``publish`` (issue 22), and the
spool keeps events the broker refused for good aside, resendable, without loss."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from syncbus.core.catalog import Bus
from syncbus.core.fake import make_records
from syncbus.publisher import ChangeRejected, Publisher
from syncbus.publisher.spool import Spool

NOWHERE = "127.0.0.1:9"


@pytest.fixture(params=["native", "python"])
def publisher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, bus: Bus,
              tmp_path: Path) -> Publisher:
    if request.param == "python":
        from syncbus.publisher import changes

        monkeypatch.setattr(changes, "NewStateWriter", None)
    pub = Publisher("js-scjgj", bus, NOWHERE, spool_path=tmp_path / "s.db",
                    registry=CollectorRegistry(), max_event_bytes=50_000)
    request.addfinalizer(lambda: pub.close(timeout=0.1))
    return pub


def _companies(bus: Bus, n: int) -> list[dict]:
    return make_records(bus.resources["legal.company"].schema, n, seed=8)


def test_an_event_over_the_limit_is_refused_naming_resource_and_sizes(
    publisher: Publisher, bus: Bus
) -> None:
    big = {**_companies(bus, 1)[0], "business_scope": "x" * 60_000}
    with pytest.raises(ChangeRejected) as raised:
        publisher.publish("legal.company", "CREATE", after=big)
    message = str(raised.value)
    assert "legal.company" in message and "over the limit of 50,000 bytes" in message
    assert "the encoded event is 60," in message
    assert publisher.spool.depth == 0 and publisher.sequence("legal.company") == 0


def test_a_batch_goes_on_around_events_over_the_limit_without_a_sequence_gap(
    publisher: Publisher, bus: Bus
) -> None:
    recs = _companies(bus, 5)
    big = {**recs[1], "business_scope": "x" * 60_000}
    changes = [{"op": "CREATE", "after": r} for r in (recs[0], big, recs[2], big, recs[3])]
    refused: list[int] = []
    ids = publisher.publish_many("legal.company", changes,
                                 on_reject=lambda i, exc: refused.append(i))
    assert refused == [1, 3] and len(ids) == 3
    assert publisher.sequence("legal.company") == 3
    sequences = [int(e.meta.split("\x1f")[4]) for e in publisher.spool.pending(0, 10)]
    assert sequences == [1, 2, 3]


def test_refused_events_are_kept_aside_and_queued_again_with_their_numbers(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.db")
    rows = [(f"k{i}".encode(), f"v{i}".encode(), f"id{i}\x1fCREATE\x1f320102\x1f\x1f{i + 1}")
            for i in range(5)]
    spool.append("a.b", rows, last_seq=5, now=1.0)
    refused = spool.refuse([2, 4], "MSG_SIZE_TOO_LARGE", "Broker: Message size too large", 2.0)
    assert [(e.id, e.event_id, e.sequence) for e in refused] == [(2, "id1", 2), (4, "id3", 4)]
    assert [e.id for e in spool.pending(0, 10)] == [1, 3, 5] and spool.depth == 3
    assert spool.refuse([2], "X", "again", 3.0) == [], "refused once, kept once"
    spool.close()
    spool = Spool(tmp_path / "s.db")
    assert [(e.id, e.error) for e in spool.refused()] == [(2, "MSG_SIZE_TOO_LARGE"),
                                                          (4, "MSG_SIZE_TOO_LARGE")]
    assert spool.remove([1, 3, 5]) == 3
    assert spool.requeue([4]) == 1
    again = spool.pending(0, 10)
    assert [(e.key, e.meta) for e in again] == [(b"k3", rows[3][2])]
    assert again[0].id > 5, "queued after everything accepted before"
    assert spool.sequences() == {"a.b": 5}, "a resend takes no new numbers"
    assert [e.id for e in spool.refused()] == [2]
    assert spool.drop_refused([2]) == 1 and spool.refused() == []
    spool.close()
