"""Periodic HEARTBEAT events, so freshness can tell "no changes" from "pipeline down".

A resource that has had no event for a whole interval gets a HEARTBEAT; any
published event resets its clock, so a busy resource sends none. The interval
defaults to half the resource's catalog ``update_cycle`` so that one lost or late
heartbeat does not yet breach the freshness SLA. Ticked by the sender's pump
thread; publishing goes through the normal spool path, so heartbeats are as
durable and ordered as data events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("syncbus.publisher")


class Heartbeats:
    """Which resources are due for a heartbeat, and sending them."""

    def __init__(
        self,
        intervals: Mapping[str, float],
        send: Callable[[str], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._intervals = dict(intervals)
        self._send = send
        self._clock = clock
        start = clock()
        self._last = dict.fromkeys(self._intervals, start)

    def touch(self, resource: str) -> None:
        """An event of ``resource`` was accepted: it is alive."""
        if resource in self._last:
            self._last[resource] = self._clock()

    def due(self) -> list[str]:
        now = self._clock()
        return [r for r, every in self._intervals.items() if now - self._last[r] >= every]

    def tick(self) -> None:
        for resource in self.due():
            try:
                self._send(resource)
            except Exception as exc:  # e.g. SpoolFull: keep the pump alive, try next tick
                log.warning("heartbeat of %s not sent: %s", resource, exc)
            self._last[resource] = self._clock()
