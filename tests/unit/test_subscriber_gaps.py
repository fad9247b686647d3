"""The gap checker: holes reported once, redeliveries and replays never reported."""

from __future__ import annotations

import pytest

from syncbus.subscriber import Gap, GapChecker, RetryPolicy


def test_consecutive_sequences_make_no_gap() -> None:
    checker = GapChecker()
    assert [checker.observe("r", 0, n) for n in (1, 2, 3)] == [None, None, None]


def test_a_hole_is_reported_with_what_is_missing() -> None:
    checker = GapChecker()
    checker.observe("r", 0, 4)
    gap = checker.observe("r", 0, 9)
    assert gap == Gap("r", 0, expected=5, received=9)
    assert gap.missing == 4
    assert "4 deliveries missing on r source partition 0" in str(gap)


def test_redeliveries_and_unnumbered_events_are_not_gaps() -> None:
    checker = GapChecker({("r", 0): 10})
    assert checker.observe("r", 0, 7) is None  # redelivered after a crash
    assert checker.observe("r", 0, None) is None
    assert checker.observe("r", 0, 11) is None


def test_streams_are_separate_per_resource_and_source_partition() -> None:
    checker = GapChecker({("r", 0): 5})
    assert checker.observe("r", 1, 1) is None
    assert checker.observe("s", 0, 1) is None
    assert checker.observe("r", 0, 7) == Gap("r", 0, 6, 7)


def test_changes_are_handed_out_once_for_persistence() -> None:
    checker = GapChecker()
    checker.observe("r", 0, 1)
    checker.observe("r", 0, 2)
    assert checker.take_changes() == {("r", 0): 2}
    assert checker.take_changes() == {}


def test_retry_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=5, initial_backoff_s=0.1, max_backoff_s=0.3)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"initial_backoff_s": 2, "max_backoff_s": 1}, {"on_failure": "ignore"}],
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
