"""The status of every route as plain rows: for the status page, its JSON, the report."""

from __future__ import annotations

from typing import Any

from syncbus.core.sla import PeriodFigures, share_within
from syncbus.monitor.meters import ResourceMeter, RouteMeter
from syncbus.monitor.monitor import Monitor


def route_rows(monitor: Monitor) -> list[dict[str, Any]]:
    """One row per route, in route order; read under the monitor's lock."""
    rows = []
    with monitor.lock:
        for meter in sorted(monitor.routes.values(), key=lambda m: m.route):
            resource = monitor.resources.get(meter.route.resource)
            silent = (
                resource.silent_seconds(monitor.last_cycle_s, monitor.started_s)
                if resource
                else None
            )
            state = meter.state
            rows.append(
                {
                    "resource": meter.route.resource,
                    "subscriber": meter.route.subscriber,
                    "topic": meter.topic,
                    "topic_exists": meter.topic_exists,
                    "routed": meter.routed,
                    "committed": meter.committed,
                    "dead_letters": meter.dead_letters,
                    "lag_events": meter.lag_events,
                    "lag_seconds": meter.lag_seconds,
                    "latency_samples": sum(meter.latency.counts),
                    "p50_seconds": meter.recent_quantile(0.5),
                    "p99_seconds": meter.recent_quantile(0.99),
                    "completeness": state.completeness_ratio if state else None,
                    "silent_seconds": silent,
                    "sla": state.verdicts if state else {},
                    "state": "NO DATA" if state is None else "OK" if state.ok else "BREACHED",
                    "chart": meter.chart(),
                }
            )
    return rows


def period_rows(monitor: Monitor) -> list[dict[str, Any]]:
    """The acceptance report from the monitor's own state: the period is its uptime."""
    rows = []
    with monitor.lock:
        bus = monitor.bus
        for meter in sorted(monitor.routes.values(), key=lambda m: m.route):
            if bus is None or meter.route.resource not in bus.resources:
                continue
            sla = bus.resources[meter.route.resource].sla
            resource = monitor.resources.get(meter.route.resource, ResourceMeter(""))
            rows.append(_period(meter, resource, sla.latency_p99_seconds).row(sla))
    return rows


def _period(meter: RouteMeter, resource: ResourceMeter, target: float) -> PeriodFigures:
    state = meter.state
    return PeriodFigures(
        resource=meter.route.resource,
        subscriber=meter.route.subscriber,
        volume=meter.routed,
        within_latency=share_within(meter.latency.bounds, tuple(meter.latency.counts), target),
        completeness=state.completeness_ratio if state else None,
        freshness_breaches=resource.freshness_breaches,
    )


def monitor_summary(monitor: Monitor) -> dict[str, Any]:
    """The page's JSON: the routes and what the monitor knows of the bus."""
    return {
        "routes": route_rows(monitor),
        "report": period_rows(monitor),
        "started_at": monitor.started_s,
        "cycles": monitor.cycles,
        "updated_at": monitor.last_cycle_s,
        "router_group": monitor.router_group,
        "router_members": monitor.router_members,
    }
