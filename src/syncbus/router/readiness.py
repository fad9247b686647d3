"""When a router worker is ready: its consumer group is stable and holds raw partitions.

Nothing has to pass through it first, so whatever starts a router and then its
traffic (the latency benchmark, the demo) measures the router's first seconds as
they are, not a warmed-up path.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from syncbus.connection import Connection


class RouterNotReady(RuntimeError):
    """The router did not join its group in time, or ended; the message says which."""


def wait_until_routing(connection: Connection, group: str, raw_topic: str,
                       alive: Callable[[], bool], timeout: float = 120.0,
                       members: int = 1) -> float:
    """Wait until ``group`` is stable, with ``members`` workers, and ``raw_topic``'s
    partitions assigned; returns the seconds waited. ``alive`` says whether the
    router processes still run."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(connection.confluent())
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not alive():
            raise RouterNotReady(f"the router of group {group} ended before it was ready")
        try:
            found = admin.describe_consumer_groups([group])[group].result(10)
        except Exception:  # not there yet: the group is created when it joins
            found = None
        if found is not None and found.state == ConsumerGroupState.STABLE and len(
            found.members
        ) >= members and any(
            tp.topic == raw_topic for m in found.members for tp in m.assignment.topic_partitions
        ):
            return time.monotonic() - started
        time.sleep(0.1)
    raise RouterNotReady(f"the router of group {group} did not join it in {timeout:.0f} s")
