"""Reading the newest records of share and dead-letter topics, once per monitor cycle.

Share topics are sampled: at most ``cap`` records per partition per cycle, the newest
ones, so that a burst of a million events costs the monitor a bounded amount of work
and never slows the router it shares a machine with. The latency histogram is
therefore a sample of each route's events (all of them at moderate rates); the
counters of events routed and committed come from offsets and are exact.
Dead-letter topics are read in full: each dead letter is counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from syncbus.monitor.kafka_reads import TP, Record, record_of


class Tail:
    """Positions of the monitor's own reading, per partition; no consumer group."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.positions: dict[TP, int] = {}

    def read(
        self,
        ends: dict[TP, int],
        caps: dict[TP, int | None],
        on_record: Callable[[TP, Record], None],
        budget_s: float = 2.0,
    ) -> None:
        """Feed each new record up to this cycle's ``ends`` to ``on_record``.

        ``caps[tp]`` None reads everything new; a number skips to the newest that many.
        """
        wanted: dict[TP, int] = {}
        for tp, cap in caps.items():
            end = ends.get(tp)
            if end is None:
                continue
            start = self.positions.get(tp, 0 if cap is None else max(end - cap, 0))
            if start > end:  # the topic was recreated: start again
                start = 0 if cap is None else max(end - cap, 0)
            if cap is not None:
                start = max(start, end - cap)
            self.positions[tp] = start
            if end > start:
                wanted[tp] = end
        for gone in set(self.positions) - set(caps):
            del self.positions[gone]
        if not wanted:
            return
        self._consumer.assign([TopicPartition(t, p, self.positions[(t, p)]) for t, p in wanted])
        deadline = time.monotonic() + budget_s
        while wanted and time.monotonic() < deadline:
            for message in self._consumer.consume(1000, timeout=0.1):
                if message.error() is not None:
                    continue
                tp = (message.topic() or "", int(message.partition() or 0))
                offset = int(message.offset() or 0)
                if tp not in wanted or offset < self.positions[tp]:
                    continue
                self.positions[tp] = offset + 1
                on_record(tp, record_of(message))
                if offset + 1 >= wanted[tp]:
                    del wanted[tp]
                    self._consumer.pause([TopicPartition(*tp)])
        self._consumer.resume(self._consumer.assignment())  # pausing outlives the assignment
        self._consumer.unassign()
