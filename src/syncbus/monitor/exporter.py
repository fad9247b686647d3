"""The monitor's figures as Prometheus metrics, read at scrape time from the last cycle.

Names are the closed set the generated rules and the Grafana dashboard use
(``syncbus.core.sla_rules``): per route ``syncbus_route_*`` with labels ``resource``
and ``subscriber``; per resource ``syncbus_resource_*``; ``syncbus_sla_ok`` is 1
while an SLA holds (or has no data yet) and 0 while it is breached.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from syncbus.core.sla import SLA_NAMES
from syncbus.core.sla_rules import bucket_label
from syncbus.monitor.monitor import Monitor

ROUTE = ["resource", "subscriber"]


class MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        with self.monitor.lock:
            yield from self._routes()
            yield from self._resources()
            yield from self._bus()

    def _routes(self) -> Iterator[Metric]:
        meters = sorted(self.monitor.routes.values(), key=lambda m: m.route)
        routed = CounterMetricFamily(
            "syncbus_route_events_routed",
            "Events on the route's share topic (end offsets).",
            labels=ROUTE,
        )
        committed = CounterMetricFamily(
            "syncbus_route_events_committed",
            "Events the subscriber's consumer group committed on its share topic.",
            labels=ROUTE,
        )
        dead = CounterMetricFamily(
            "syncbus_route_dead_letters", "Events the subscriber dead-lettered.", labels=ROUTE
        )
        lag = GaugeMetricFamily(
            "syncbus_route_lag_events", "Routed events not yet committed.", labels=ROUTE
        )
        lag_s = GaugeMetricFamily(
            "syncbus_route_lag_seconds", "Age of the oldest uncommitted event.", labels=ROUTE
        )
        ratio = GaugeMetricFamily(
            "syncbus_route_completeness_ratio",
            "Share of routed events the subscriber has (syncbus.core.sla).",
            labels=ROUTE,
        )
        latency = HistogramMetricFamily(
            "syncbus_route_delivery_latency_seconds",
            "occurred_at to routed_at of sampled deliveries on the share topic.",
            labels=ROUTE,
        )
        ok = GaugeMetricFamily(
            "syncbus_sla_ok",
            "1 while the SLA holds or has no data, 0 while breached.",
            labels=[*ROUTE, "sla"],
        )
        for meter in meters:
            labels = [meter.route.resource, meter.route.subscriber]
            routed.add_metric(labels, meter.routed)
            committed.add_metric(labels, meter.committed)
            dead.add_metric(labels, meter.dead_letters)
            lag.add_metric(labels, meter.lag_events)
            lag_s.add_metric(labels, meter.lag_seconds)
            cumulative = meter.latency.cumulative()
            bounds = [bucket_label(b) for b in meter.latency.bounds] + ["+Inf"]
            latency.add_metric(
                labels, list(zip(bounds, cumulative, strict=True)), meter.latency.total_seconds
            )
            state = meter.state
            if state is None:
                continue
            if state.completeness_ratio is not None:
                ratio.add_metric(labels, state.completeness_ratio)
            for name in SLA_NAMES:
                ok.add_metric([*labels, name], 0.0 if state.verdicts[name] == "breached" else 1.0)
        yield from (routed, committed, dead, lag, lag_s, ratio, latency, ok)

    def _resources(self) -> Iterator[Metric]:
        now, since = self.monitor.last_cycle_s, self.monitor.started_s
        last = GaugeMetricFamily(
            "syncbus_resource_last_event_timestamp_seconds",
            "Time of the resource's last event or heartbeat on its raw topic.",
            labels=["resource"],
        )
        silent = GaugeMetricFamily(
            "syncbus_resource_silent_seconds",
            "Seconds since the last event or heartbeat (since monitoring began if none).",
            labels=["resource"],
        )
        dead = CounterMetricFamily(
            "syncbus_resource_dead_letters",
            "Events of the resource the router dead-lettered.",
            labels=["resource"],
        )
        for name, meter in sorted(self.monitor.resources.items()):
            if meter.last_event_s is not None:
                last.add_metric([name], meter.last_event_s)
            silent.add_metric([name], meter.silent_seconds(now, since))
            dead.add_metric([name], meter.dead_letters)
        yield from (last, silent, dead)

    def _bus(self) -> Iterator[Metric]:
        monitor = self.monitor
        members = GaugeMetricFamily(
            "syncbus_router_group_members",
            "Live members of the router's consumer group.",
            labels=["group"],
        )
        if monitor.router_members is not None:
            members.add_metric([monitor.router_group], monitor.router_members)
        yield members
        if monitor.policy_published_s is not None:
            yield GaugeMetricFamily(
                "syncbus_policy_published_timestamp_seconds",
                "Time of the latest record on the policy topic.",
                value=monitor.policy_published_s,
            )
        yield CounterMetricFamily(
            "syncbus_monitor_cycles", "Monitor cycles completed.", value=monitor.cycles
        )
