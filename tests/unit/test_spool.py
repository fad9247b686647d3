"""The spool keeps what was accepted and not confirmed, in order, across reopenings."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncbus.publisher.spool import Spool, SpoolLocked


def rows(n: int, start: int = 0) -> list[tuple[bytes, bytes, str]]:
    return [(f"k{i}".encode(), f"v{i}".encode(), f"m{i}") for i in range(start, start + n)]


def test_rows_come_back_in_acceptance_order_until_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    first = spool.append("a.b", rows(5), last_seq=5, now=1.0)
    second = spool.append("c.d", rows(3, 5), last_seq=3, now=2.0)
    assert (first, second, spool.depth, spool.last_id) == (1, 6, 8, 8)
    assert [r.key for r in spool.pending(0, 100)] == [f"k{i}".encode() for i in range(8)]
    assert spool.remove([2, 3, 4, 7, 1]) == 5
    left = spool.pending(0, 100)
    assert [(r.id, r.resource, r.meta) for r in left] == [(5, "a.b", "m4"), (6, "c.d", "m5"),
                                                          (8, "c.d", "m7")]
    assert [r.id for r in spool.pending(5, 1)] == [6]
    assert spool.depth == 3
    spool.close()


def test_what_is_left_and_the_sequences_survive_a_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(4), last_seq=4, now=1.0)
    spool.append("a.b", rows(2, 4), last_seq=6, now=1.0)
    spool.remove([1, 2])
    spool.close()

    again = Spool(tmp_path / "s.db")
    assert again.depth == 4 and again.sequences() == {"a.b": 6}
    assert [r.id for r in again.pending(0, 10)] == [3, 4, 5, 6]
    assert again.append("a.b", rows(1), last_seq=7, now=1.0) == 7, "ids keep growing"
    again.close()


def test_two_publishers_cannot_share_a_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    with pytest.raises(SpoolLocked, match="own spool path"):
        Spool(tmp_path / "s.db")
    spool.close()
    Spool(tmp_path / "s.db").close()


def test_removing_nothing_or_unknown_ids_changes_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append("a.b", rows(2), last_seq=2, now=1.0)
    assert spool.remove([]) == 0
    assert spool.remove([40, 41]) == 0
    assert spool.depth == 2
    spool.close()


def test_a_spool_belongs_to_one_department(tmp_path: Path) -> None:
    Spool(tmp_path / "s.db", department="js-gaj").close()
    with pytest.raises(SpoolLocked, match="belongs to department 'js-gaj'"):
        Spool(tmp_path / "s.db", department="js-scjgj")
    Spool(tmp_path / "s.db", department="js-gaj").close()
