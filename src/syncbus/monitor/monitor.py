"""One monitor cycle: read the cluster, update every route's figures, judge its SLA.

Routes come from the live policy (``syncbus.policy``, as the router sees it), so a
grant approved by ``apply`` appears without a restart. Per route: events routed
(share-topic end offsets), events committed by the subscriber (the furthest of its
SDK's group, the subscriber id, and its sink's, ``<subscriber>.sink``), lag in events
and in seconds (the age of the oldest uncommitted record), the occurred_at ->
routed_at latency of sampled deliveries (from their envelopes, the one home of those
facts), and the subscriber's dead letters. Per
resource: the time of the last event or heartbeat on its raw topic, and the router's
dead letters of it. Topics and groups outside the policy are never looked at, and a
read that fails leaves the last figures in place: the monitor keeps running whatever
the cluster holds.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from syncbus.admin.compacted import assign_from_beginning, read_to_end
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.model import Bus
from syncbus.core.policy import bus_from_records
from syncbus.core.sla import Route, bus_routes, evaluate_route
from syncbus.core.sla_rules import latency_buckets
from syncbus.core.topics import H_DLQ_TOPIC
from syncbus.monitor.envelope import EnvelopeClock
from syncbus.monitor.kafka_reads import TP, ClusterReader, Record
from syncbus.monitor.meters import LatencyHistogram, ResourceMeter, RouteMeter
from syncbus.monitor.tail import Tail

log = logging.getLogger("syncbus.monitor")

SAMPLE_CAP = 100  # share records read per partition per cycle, at most (the newest)


class Monitor:
    def __init__(
        self, connection: Connection, names: TopicNames, router_group: str = "syncbus-router"
    ) -> None:
        self.names, self.router_group = names, router_group
        self.reader = ClusterReader(connection)
        self._clock = EnvelopeClock(connection, names)
        self._tail = Tail(self.reader.tail)
        self._policy_records: dict[str, bytes | None] = {}
        self._policy_consumer = self.reader.policy_consumer()
        assign_from_beginning(self._policy_consumer, names.policy)
        self.bus: Bus | None = None
        self.started_s = time.time()
        self.last_cycle_s = self.started_s
        self.routes: dict[tuple[str, str], RouteMeter] = {}
        self.resources: dict[str, ResourceMeter] = {}
        self.router_members: int | None = None
        self.policy_published_s: float | None = None
        self.cycles = 0
        self._seen: dict[tuple[TP, int], Record] = {}
        self.lock = threading.Lock()  # the HTTP threads read what a cycle writes

    def close(self) -> None:
        self._policy_consumer.close()
        self.reader.close()
        self._clock.close()

    def cycle(self) -> None:
        """Read the cluster once and update every figure."""
        self._refresh_policy()
        if self.bus is None:
            return
        partitions = self.reader.partitions()
        with self.lock:
            self._sync_meters(self.bus)
        share = {m.topic: m for m in self.routes.values()}
        raw = {self.names.raw(r): m for r, m in self.resources.items()}
        dlqs = {self.names.dlq} | {self.names.subscriber_dlq(s) for _r, s in self.routes}
        topics = [t for t in [*share, *raw, *dlqs, self.names.policy] if t in partitions]
        tps = [(t, p) for t in topics for p in range(partitions[t])]
        ends = self.reader.ends(tps)
        committed = self._committed(ends)
        now = time.time()
        points = self._lag_points(share, ends, committed) | self._fresh_points(raw, ends)
        points |= {tp: end - 1 for tp, end in ends.items() if tp[0] == self.names.policy and end}
        records = self._records_at(points)
        with self.lock:
            self._count_offsets(share, partitions, ends, committed, records, now)
            self._freshness(raw, records, points)
            self._policy_time(records)
        caps: dict[TP, int | None] = {tp: SAMPLE_CAP for tp in tps if tp[0] in share}
        caps |= {tp: None for tp in tps if tp[0] in dlqs}
        tailed: list[tuple[TP, Record]] = []  # read without the lock: scrapes never wait
        self._tail.read(ends, caps, lambda tp, r: tailed.append((tp, r)))
        members = self.reader.members(self.router_group)
        with self.lock:
            for tp, record in tailed:
                self._on_tailed(tp, record, share)
            self.router_members = members
            self._judge(now)
            self.last_cycle_s = now
            self.cycles += 1

    def _records_at(self, points: dict[TP, int]) -> dict[TP, Record]:
        """The record at each point; one already read last cycle (a lagging subscriber
        still at the same offset, a policy unchanged) is not fetched again."""
        fetched = self.reader.read_at(
            {tp: offset for tp, offset in points.items() if (tp, offset) not in self._seen}
        )
        records = {
            tp: record
            for tp, offset in points.items()
            if (record := self._seen.get((tp, offset)) or fetched.get(tp)) is not None
        }
        self._seen = {(tp, points[tp]): record for tp, record in records.items()}
        return records

    def _refresh_policy(self) -> None:
        try:
            read_to_end(self._policy_consumer, self.names.policy, self._keep_policy, 10.0)
            bus = bus_from_records(self._policy_records)
        except (RuntimeError, TimeoutError, ValueError, KeyError) as exc:
            log.warning("policy not read (%s); keeping the last one", exc)
            return
        self.bus = bus

    def _keep_policy(self, key: str, value: bytes | None) -> None:
        self._policy_records[key] = value

    def _sync_meters(self, bus: Bus) -> None:
        bounds = latency_buckets(bus)
        live = {(r.resource, r.subscriber) for r in bus_routes(bus, datetime.now(UTC))}
        for key in live - set(self.routes):
            resource, subscriber = key
            topic = self.names.share(subscriber, resource)
            self.routes[key] = RouteMeter(Route(*key), topic, LatencyHistogram(bounds))
        for key in set(self.routes) - live:
            del self.routes[key]
        for resource in {r for r, _s in live} - set(self.resources):
            self.resources[resource] = ResourceMeter(resource)

    def _committed(self, ends: dict[TP, int]) -> dict[TP, int]:
        """Per share partition, the furthest any of its subscriber's groups committed:
        the SDK's (the subscriber id) or the sink's (``<subscriber>.sink``)."""
        out: dict[TP, int] = {}
        groups: list[str] = []
        for subscriber in sorted({s for _r, s in self.routes}):
            topics = {m.topic for (_r, s), m in self.routes.items() if s == subscriber}
            tps = [tp for tp in ends if tp[0] in topics]
            for group in subscriber_groups(subscriber):
                groups.append(group)
                for tp, offset in self.reader.committed(group, tps).items():
                    out[tp] = max(offset, out.get(tp, 0))
        self.reader.forget_groups(groups)
        return out

    def _lag_points(
        self, share: dict[str, RouteMeter], ends: dict[TP, int], committed: dict[TP, int]
    ) -> dict[TP, int]:
        return {
            tp: committed.get(tp, 0)
            for tp, end in ends.items()
            if tp[0] in share and committed.get(tp, 0) < end
        }

    def _fresh_points(self, raw: dict[str, ResourceMeter], ends: dict[TP, int]) -> dict[TP, int]:
        """The last record of each raw partition that grew since the last cycle."""
        return {
            (topic, p): end - 1
            for (topic, p), end in ends.items()
            if topic in raw and end > 0 and raw[topic].raw_ends.get(p) != end
        }

    def _count_offsets(
        self,
        share: dict[str, RouteMeter],
        partitions: dict[str, int],
        ends: dict[TP, int],
        committed: dict[TP, int],
        records: dict[TP, Record],
        now: float,
    ) -> None:
        for topic, meter in share.items():
            meter.topic_exists = topic in partitions
            mine = [tp for tp in ends if tp[0] == topic]
            if not mine:
                continue
            meter.routed = sum(ends[tp] for tp in mine)
            meter.committed = sum(min(committed.get(tp, 0), ends[tp]) for tp in mine)
            meter.lag_events = meter.routed - meter.committed
            oldest = [records[tp].timestamp_s for tp in mine if tp in records]
            meter.lag_seconds = max(now - min(oldest), 0.0) if meter.lag_events and oldest else 0.0

    def _freshness(
        self, raw: dict[str, ResourceMeter], records: dict[TP, Record], points: dict[TP, int]
    ) -> None:
        for (topic, partition), record in records.items():
            meter = raw.get(topic)
            if meter is None:
                continue
            meter.raw_ends[partition] = points[(topic, partition)] + 1  # re-read when it grows
            meter.last_event_s = max(meter.last_event_s or 0.0, record.timestamp_s)

    def _policy_time(self, records: dict[TP, Record]) -> None:
        times = [r.timestamp_s for (t, _p), r in records.items() if t == self.names.policy]
        if times:
            self.policy_published_s = max([*times, self.policy_published_s or 0.0])

    def _on_tailed(self, tp: TP, record: Record, share: dict[str, RouteMeter]) -> None:
        meter = share.get(tp[0])
        if meter is not None:
            latency = self._clock.latency(record.value, record.timestamp_s)
            if latency is not None:
                meter.latency.observe(latency)
            return
        origin = record.headers.get(H_DLQ_TOPIC, b"").decode("utf-8", "replace")
        if tp[0] == self.names.dlq:
            try:
                resource = self.names.resource_of_raw(origin)
            except ValueError:
                return
            if resource in self.resources:
                self.resources[resource].dead_letters += 1
        elif origin in share:
            share[origin].dead_letters += 1

    def _judge(self, now: float) -> None:
        assert self.bus is not None
        for resource_id, resource_meter in self.resources.items():
            if resource_id in self.bus.resources:
                resource_meter.judge_freshness(
                    resource_meter.silent_seconds(now, self.started_s),
                    self.bus.resources[resource_id].sla.freshness_seconds,
                )
        for (resource_id, _s), meter in self.routes.items():
            resource = self.bus.resources[resource_id]
            silent = self.resources[resource_id].silent_seconds(now, self.started_s)
            meter.state = evaluate_route(resource.sla, meter.figures(silent))
            meter.close_cycle(now)


def subscriber_groups(subscriber: str) -> tuple[str, str]:
    """The consumer groups that take a subscriber's share by default (SDK, sink)."""
    return subscriber, f"{subscriber}.sink"
