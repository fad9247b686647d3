"""The demo's departments: every resource of the bus published by its owner, live.

Run as ``python -m syncbus.demo.traffic ARGS_JSON`` (the demo starts it; it stops on
SIGTERM). Each owning department gets its own Publisher SDK (its own spool and,
on a secure bus, its own login from the credentials ``apply`` issued) and publishes
its resources at a steady rate with a burst of five times that rate for one second
in every ten. Records are Faker's
``zh_CN`` with valid citizen IDs and USCCs, in Nanjing, Wuxi and Suzhou (Gusu
among them); one resident change in twenty is a move to another city, sent as an
UPDATE whose ``before`` holds the old region, so the old city's sink loses the
row and the new city's gains it. Resources under heartbeats stay fresh in quiet
spells.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.fake import make_record
from syncbus.core.model import Bus

REGIONS = ("320102", "320106", "320113", "320205", "320211", "320213",
           "320505", "320506", "320508", "320583")
TICK_S = 0.2
BURST_EVERY_S, BURST_FACTOR = 10, 5
MOVES = 0.05  # share of resident changes that move the resident to another city
RESIDENT = "population.resident"


class Department:
    """One department's publisher and the records it keeps changing."""

    def __init__(self, bus: Bus, department: str, connection: Connection, spool: Path,
                 rng: random.Random) -> None:
        from syncbus.publisher import Publisher

        self.bus, self.rng = bus, rng
        self.resources = sorted(r.id for r in bus.resources.values() if r.owner == department)
        self.publisher = Publisher(department, bus, connection, spool_path=spool,
                                   heartbeats=True, registry=CollectorRegistry())
        self.known: dict[str, list[dict[str, Any]]] = {r: [] for r in self.resources}
        self.published = 0

    def publish(self, resource: str, n: int) -> None:
        changes = [self._change(resource) for _ in range(n)]
        self.publisher.publish_many(resource, changes)
        self.published += len(changes)

    def _change(self, resource: str) -> dict[str, Any]:
        schema = self.bus.resource(resource).schema
        known = self.known[resource]
        if resource == RESIDENT and known and self.rng.random() < MOVES:
            before = known.pop(self.rng.randrange(len(known)))
            region = self.rng.choice([r for r in REGIONS if r[:4] != before["region"][:4]])
            after = dict(before, region=region,
                         address=make_record(schema, region=region, rng=self.rng)["address"])
            known.append(after)
            return {"op": "UPDATE", "before": before, "after": after}
        record = make_record(schema, region=self.rng.choice(REGIONS), rng=self.rng)
        if resource == RESIDENT:
            known.append(record)
            del known[:-500]  # enough to move someone, never a growing list
        return {"op": "CREATE", "after": record}

    def close(self) -> None:
        self.publisher.close(10)


def run(args: dict[str, Any]) -> None:
    bus = load_bus(Path(args["streams"]), Path(args["schemas"]))
    rate = float(args["rate"])  # events per second per resource, outside bursts
    spools = Path(args["spools"])
    spools.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.get("seed", 2026))
    owners = sorted({r.owner for r in bus.resources.values()})
    departments = [
        Department(bus, d,  # on a secure bus, each logs in as itself (SYNCBUS_CREDENTIALS)
                   Connection.from_env(args["bootstrap"], user=d if args["secure"] else None),
                   spools / f"{d}.db", rng)
        for d in owners
    ]
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    start = time.monotonic()
    owed: dict[str, float] = {}
    try:
        while not stopping:
            elapsed = time.monotonic() - start
            factor = BURST_FACTOR if int(elapsed) % BURST_EVERY_S == BURST_EVERY_S - 1 else 1
            for department in departments:
                for resource in department.resources:
                    owed[resource] = owed.get(resource, 0.0) + rate * factor * TICK_S
                    n = int(owed[resource])
                    if n:
                        owed[resource] -= n
                        department.publish(resource, n)
            Path(args["counts"]).write_text(json.dumps(
                {d.publisher.department: d.published for d in departments}))
            time.sleep(max(0.0, TICK_S - (time.monotonic() - start - elapsed)))
    finally:
        for department in departments:
            department.close()


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
