"""The processes of ``syncbus bench latency``: a publisher and a subscriber, each alone.

Run as ``python -m syncbus.bench.latency_roles publisher|subscriber ARGS_JSON``. Each
writes what it saw to a JSON file at the end, so that measuring costs the measured
path nothing but a clock read per event.

- publisher: open loop. Event ``i`` is due at ``start + i / rate``; whenever the
  loop wakes it publishes every due event in one ``publish_many`` (as a department
  system hands over the changes it has), each with ``occurred_at`` = its due time.
  A late loop therefore shows as latency, and the rate is never slowed down by the
  bus. Writes the ids it published.
- subscriber: the real Subscriber SDK; the handler notes, per event, its id, the
  time it was handled and the envelope's ``occurred_at``, ``published_at`` and
  ``routed_at``. It writes a ready file once its partitions are assigned, and stops
  after ``idle`` seconds without events once told the publisher finished.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.fake import make_records

RESOURCE = "population.resident"
SUBSCRIBER = "city.nanjing"
NANJING = ("320102", "320104", "320105", "320106", "320111", "320113", "320114", "320115")


def _publisher(args: dict[str, Any]) -> None:
    from syncbus.publisher import Change, Publisher

    bus = load_bus(Path(args["streams"]), Path(args["schemas"]))
    rate, duration = float(args["rate"]), float(args["duration"])
    total = int(rate * duration)
    pool = make_records("population.resident", 512, regions=NANJING, seed=1)
    prefix = args["prefix"]
    published: list[tuple[str, float]] = []
    with Publisher(
        "js-gaj", bus, Connection(args["bootstrap"]), spool_path=Path(args["spool"]),
        registry=CollectorRegistry(), topic_of=lambda r: f"{prefix}raw.{r}",
    ) as publisher:
        start = float(args["start_at"])
        while time.time() < start:
            time.sleep(0.0005)
        sent = 0
        while sent < total:
            due = min(total, int((time.time() - start) * rate) + 1)
            if due > sent:  # every event due by now, in one call, each with its own time
                changes = [Change("SNAPSHOT", after=pool[i % len(pool)],
                                  occurred_at=int((start + i / rate) * 1_000_000))
                           for i in range(sent, due)]
                ids = publisher.publish_many(RESOURCE, changes)
                published += [(event_id, start + i / rate)
                              for i, event_id in zip(range(sent, due), ids, strict=True)]
                sent = due
            pause = start + sent / rate - time.time()
            if pause > 0:
                time.sleep(min(pause, 0.001))
        left = publisher.flush(120)
    Path(args["out"]).write_text(json.dumps({"published": published, "unacked": left}))


def _subscriber(args: dict[str, Any]) -> None:
    from syncbus.subscriber import Subscriber

    seen: list[tuple[str, float, float, float, float]] = []
    ready, first, done = Path(args["ready"]), Path(args["first"]), Path(args["done"])

    def handle(event: Any) -> None:
        if not seen:
            first.write_text(event.event_id)
        seen.append((
            event.event_id, time.time(), event.occurred_at.timestamp(),
            event.published_at.timestamp(),
            event.routed_at.timestamp() if event.routed_at else 0.0,
        ))

    subscriber = Subscriber(
        SUBSCRIBER, [RESOURCE], connection=Connection(args["bootstrap"]),
        group_id=args["group"], store=Path(args["store"]), registry=CollectorRegistry(),
        topic_prefix=args["prefix"],
    )
    original = subscriber._on_assign

    def on_assign(consumer: Any, partitions: Any) -> None:
        original(consumer, partitions)
        if partitions:
            ready.write_text(str(time.time()))

    subscriber._on_assign = on_assign  # type: ignore[method-assign]
    idle = float(args["idle"])
    with subscriber:
        while True:
            handled = subscriber.run(handle, idle_timeout=idle)
            if done.exists() and handled == 0:
                break
    Path(args["out"]).write_text(json.dumps({"seen": seen}))


def main() -> None:
    role, raw = sys.argv[1], sys.argv[2]
    {"publisher": _publisher, "subscriber": _subscriber}[role](json.loads(raw))


if __name__ == "__main__":
    main()
