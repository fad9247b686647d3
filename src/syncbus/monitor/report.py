"""``syncbus sla report``: one row per route over a period, from Prometheus or the monitor.

From Prometheus (``--prometheus URL``), over ``--since``: the events routed, the share
delivered within the latency target (the histogram's bucket at the target), the share
the subscriber took, and how many times the resource went silent past its freshness
target (a 1-minute subquery on ``syncbus_resource_silent_seconds``). From the
monitor alone (its ``/api/routes``), the same figures since the monitor started.
The verdict per row is ``syncbus.core.sla.PeriodFigures.verdict``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from syncbus.core.model import Bus
from syncbus.core.sla import PeriodFigures, bus_routes
from syncbus.core.sla_rules import bucket_label

TIMEOUT_S = 30.0
ROUTE_KEY = tuple[str, str]


class ReportError(RuntimeError):
    """The source of the report could not be read; the message says which and why."""


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ReportError(f"cannot read {url.split('?')[0]}: {exc}") from exc


def from_monitor(monitor_url: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _get_json(monitor_url.rstrip("/") + "/api/routes")["report"]
    return rows


def _query(prometheus_url: str, promql: str) -> dict[ROUTE_KEY, float]:
    url = prometheus_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    body = _get_json(url)
    if body.get("status") != "success":
        raise ReportError(f"Prometheus refused {promql!r}: {body.get('error')}")
    out = {}
    for sample in body["data"]["result"]:
        labels = sample["metric"]
        out[(labels.get("resource", ""), labels.get("subscriber", ""))] = float(sample["value"][1])
    return out


def from_prometheus(
    prometheus_url: str, bus: Bus, since: str, now: datetime
) -> list[dict[str, Any]]:
    by_route = "sum by (resource, subscriber)"
    volume = _query(
        prometheus_url, f"{by_route} (increase(syncbus_route_events_routed_total[{since}]))"
    )
    taken = _query(
        prometheus_url,
        f"{by_route} (increase(syncbus_route_events_committed_total[{since}]))"
        f" - {by_route} (increase(syncbus_route_dead_letters_total[{since}]))",
    )
    counted = _query(
        prometheus_url,
        f"{by_route} (increase(syncbus_route_delivery_latency_seconds_count[{since}]))",
    )
    rows = []
    for route in bus_routes(bus, now):
        resource = bus.resources[route.resource]
        sla, key = resource.sla, (route.resource, route.subscriber)
        within = _query(
            prometheus_url,
            f"{by_route} (increase(syncbus_route_delivery_latency_seconds_bucket"
            f'{{resource="{route.resource}",subscriber="{route.subscriber}",'
            f'le="{bucket_label(sla.latency_p99_seconds)}"}}[{since}]))',
        )
        routed = volume.get(key, 0.0)
        samples = counted.get(key, 0.0)
        figures = PeriodFigures(
            resource=route.resource,
            subscriber=route.subscriber,
            volume=round(routed),
            within_latency=within.get(key, 0.0) / samples if samples else None,
            completeness=min(max(taken.get(key, 0.0) / routed, 0.0), 1.0) if routed else None,
            freshness_breaches=_freshness_breaches(
                prometheus_url, route.resource, sla.freshness_seconds, since
            ),
        )
        rows.append(figures.row(sla))
    return rows


def _freshness_breaches(prometheus_url: str, resource: str, target: float, since: str) -> int:
    """Times the resource went silent past ``target``: rising edges of a 1-minute check."""
    breached = f'(syncbus_resource_silent_seconds{{resource="{resource}"}} > bool {target:g})'
    changes = _query(prometheus_url, f"changes({breached}[{since}:1m])").get((resource, ""), 0.0)
    now = _query(prometheus_url, breached).get((resource, ""), 0.0)
    rising = int(changes + 1) // 2  # 0->1->0 is one breach, 0->1 too
    return max(rising, int(now))
