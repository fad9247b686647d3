"""``syncbus bench ...``: the project's benchmarks, each against a baseline in the same run."""

from __future__ import annotations

from syncbus.cli import LazyGroup

BENCHMARKS: dict[str, str] = {
    "publish": "syncbus.bench.publish:command",
    "router": "syncbus.bench.router:command",
    "latency": "syncbus.bench.latency:command",
    "resync": "syncbus.bench.resync:command",
}


class BenchGroup(LazyGroup):
    registry = BENCHMARKS


bench = BenchGroup(
    name="bench",
    help="Benchmarks against a running broker; each reports syncbus and a plain "
    "confluent-kafka baseline measured in the same run (median of runs, and the ratio).",
)
