"""What the demo shows: per route, what was delivered, what the city's sink holds, and
how fast and how well (from the SLA monitor, when it runs).

Figures come from where an operator would read them: delivered events from the
share topic's end offsets, rows from each subscriber's own SQLite sink, latency
and SLA state from the monitor's ``/api/routes``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.sink.tables import table_name


@dataclass
class RouteFigures:
    subscriber: str
    resource: str
    state: str  # the grant's: approved or pending
    delivered: int = 0
    rows: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    sla: str = "-"


class Watcher:
    """Reads the figures of every route of the bus, as often as asked."""

    def __init__(self, connection: Connection, names: TopicNames, sinks: Path,
                 monitor_url: str | None) -> None:
        self.names, self.sinks, self.monitor_url = names, sinks, monitor_url
        self._consumer = Consumer(connection.confluent(**{"group.id": "syncbus-demo-view"}))

    def close(self) -> None:
        self._consumer.close()

    def figures(self, routes: list[tuple[str, str, str]]) -> list[RouteFigures]:
        monitored = self._monitor()
        out = []
        for subscriber, resource, state in routes:
            row = RouteFigures(subscriber, resource, state)
            row.delivered = self._end_offsets(self.names.share(subscriber, resource))
            row.rows = self._rows(subscriber, resource)
            found = monitored.get((subscriber, resource))
            if found is not None:
                row.p50_ms = _ms(found.get("p50_seconds"))
                row.p99_ms = _ms(found.get("p99_seconds"))
                row.sla = str(found.get("state") or "-")
            out.append(row)
        return out

    def _end_offsets(self, topic: str) -> int:
        try:
            meta = self._consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is None or meta.error is not None:
                return 0
            return sum(self._consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                           timeout=5)[1]
                       for p in meta.partitions)
        except KafkaException:
            return 0

    def _rows(self, subscriber: str, resource: str) -> int | None:
        path = self.sinks / f"{subscriber}.db"
        if not path.exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                    timeout=1)) as db:
                found = db.execute(f'SELECT count(*) FROM "{table_name(resource)}"').fetchone()
        except sqlite3.Error:  # not created yet: nothing arrived
            return 0
        return int(found[0])

    def _monitor(self) -> dict[tuple[str, str], dict[str, Any]]:
        if not self.monitor_url:
            return {}
        try:
            with urllib.request.urlopen(self.monitor_url + "api/routes", timeout=2) as answer:
                routes = json.load(answer).get("routes", [])
        except (OSError, ValueError):
            return {}
        return {(r["subscriber"], r["resource"]): r for r in routes}


def _ms(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds) * 1000, 1)


def render(rows: list[RouteFigures], elapsed: float, notes: list[str]) -> str:
    """The table a person watches, one line per route."""
    lines = [f"syncbus demo, {elapsed:5.0f} s", ""]
    header = f"{'subscriber':<18}{'resource':<22}{'grant':<10}{'delivered':>10}{'rows':>8}" \
             f"{'p50 ms':>9}{'p99 ms':>9}  sla"
    lines += [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.subscriber:<18}{r.resource:<22}{r.state:<10}{r.delivered:>10}"
            f"{'-' if r.rows is None else r.rows:>8}{_cell(r.p50_ms):>9}{_cell(r.p99_ms):>9}"
            f"  {r.sla}"
        )
    return "\n".join([*lines, "", *notes])


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
