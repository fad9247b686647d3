"""Issue #17 on the subscriber side, without a broker: the version rule, marker
parsing, the resync bookkeeping (``gaps.advance``) and their state in the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from syncbus.core.topics import H_MARKER, H_RESOURCE, H_RESYNC, H_RESYNC_KIND, H_WATERMARK
from syncbus.subscriber import Marker, ResyncInfo, SqlStore
from syncbus.subscriber.event import BadMarker, newer, parse_marker
from syncbus.subscriber.gaps import advance

RID = "a" * 32


@pytest.mark.parametrize(
    ("version", "held", "resync", "applied"),
    [
        (5, None, False, True),  # nothing held: applied
        (5, None, True, True),
        (6, 5, False, True),
        (5, 5, False, False),  # a live redelivery of the same change
        (5, 5, True, True),  # a full resync resends the same version
        (4, 5, False, False),
        (4, 5, True, False),  # an older snapshot after a newer update
    ],
)
def test_live_needs_newer_resync_newer_or_equal(
    version: int, held: int | None, resync: bool, applied: bool
) -> None:
    assert newer(version, held, resync) is applied


def marker_headers(kind: str = "full", marker: str = "end", **extra: str) -> dict[str, str]:
    return {
        H_RESYNC: RID,
        H_MARKER: marker,
        H_RESYNC_KIND: kind,
        H_WATERMARK: json.dumps({"0": 10, "1": 4}),
        H_RESOURCE: "population.resident",
        **extra,
    }


def test_a_marker_is_parsed_from_its_headers() -> None:
    m = parse_marker(marker_headers(), resource="x.y", topic="share.s.x.y", partition=2, offset=9)
    assert m == Marker(
        RID, "end", "full", "population.resident", {0: 10, 1: 4}, "share.s.x.y", 2, 9
    )


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({H_MARKER: "end", H_RESYNC_KIND: "full"}, H_RESYNC),
        (marker_headers(marker="middle"), "syncbus-marker='middle'"),
        (marker_headers(kind="half"), "syncbus-resync-kind='half'"),
        (marker_headers(**{H_WATERMARK: "[1, 2]"}), H_WATERMARK),
        (marker_headers(**{H_WATERMARK: "not json"}), H_WATERMARK),
    ],
)
def test_a_malformed_marker_says_what_is_wrong(headers: dict[str, str], says: str) -> None:
    with pytest.raises(BadMarker, match=re.escape("share.s.x.y[0]@3")) as caught:
        parse_marker(headers, resource="x.y", topic="share.s.x.y", partition=0, offset=3)
    assert says in str(caught.value)


def mark(marker: str, partition: int, resync: str = RID, kind: str = "full") -> Marker:
    return Marker(resync, marker, kind, "r.x", {0: 10}, "share.s.r.x", partition, 0)


def test_begin_once_end_once_when_every_partition_has_ended() -> None:
    state, notices = advance(None, mark("begin", 0), 3)
    assert notices == ["begin"]
    for p in (1, 2):
        state, notices = advance(state, mark("begin", p), 3)
        assert notices == []
    state, notices = advance(state, mark("end", 0), 3)
    state, notices = advance(state, mark("end", 2), 3)
    assert notices == [] and not state.complete and state.ended == {0, 2}
    state, notices = advance(state, mark("end", 0), 3)  # redelivered
    assert notices == []
    state, notices = advance(state, mark("end", 1), 3)
    assert notices == ["end"] and state.complete
    for p in (0, 1, 2):  # a replay of the same markers announces nothing again
        state, notices = advance(state, mark("end", p), 3)
        assert notices == []


def test_the_begin_marker_offset_of_each_partition_is_kept() -> None:
    first = Marker(RID, "begin", "full", "r.x", {}, "t", 0, 7)
    state, _ = advance(None, first, 2)
    state, _ = advance(state, Marker(RID, "begin", "full", "r.x", {}, "t", 1, 3), 2)
    state, _ = advance(state, Marker(RID, "begin", "full", "r.x", {}, "t", 0, 99), 2)  # again
    assert state.begun == {0: 7, 1: 3}


def test_a_member_that_missed_the_begin_hears_of_it_at_the_first_end() -> None:
    state, notices = advance(None, mark("end", 0), 1)
    assert notices == ["begin", "end"] and state.complete


def test_partitions_added_during_a_resync_are_waited_for() -> None:
    state, _ = advance(None, mark("end", 0), 1)
    assert state.complete  # one partition was all there was
    state, _ = advance(None, mark("end", 0), 2)
    state, _ = advance(state, mark("end", 2), 2)  # a third one came
    assert state.partitions == 3 and not state.complete


def test_the_store_holds_versions_that_never_move_back(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "s.db")
    store.hold_version("r", "k1", 7, deleted=False)
    store.hold_version("r", "k1", 5, deleted=True)  # older: ignored
    store.hold_version("r", "k2", 9, deleted=True)
    store.hold_version("other", "k1", 3, deleted=False)
    store.commit()
    store.close()
    again = SqlStore.open(tmp_path / "s.db")
    assert again.versions([("r", "k1"), ("r", "k2"), ("r", "k3"), ("other", "k1")]) == {
        ("r", "k1"): 7,
        ("r", "k2"): 9,
        ("other", "k1"): 3,
    }
    assert again.held_version("r", "k2") == (9, True)
    assert again.held_version("r", "k3") is None
    again.hold_version("r", "k2", 9, deleted=False)  # re-created at the same version
    assert again.held_version("r", "k2") == (9, False)


def test_the_store_claims_a_resync_once_and_keeps_its_state(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "s.db")
    first = mark("begin", 0)
    assert store.claim_resync(first, 2) is None  # the first marker of it
    state, _ = advance(None, first, 2)
    store.save_resync(state)
    end = mark("end", 1)
    held = store.claim_resync(end, 2)
    assert held == state
    state, notices = advance(held, end, 2)
    assert notices == []
    store.save_resync(state)
    store.commit()
    store.close()
    again = SqlStore.open(tmp_path / "s.db")
    found = again.resync(RID)
    assert found == ResyncInfo(
        RID, "r.x", "share.s.r.x", "full", {0: 10}, 2, frozenset({1}), begun={0: 0}
    )
    assert found.to_json()["watermark"] == {"0": 10}
