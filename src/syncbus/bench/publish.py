"""``syncbus bench publish``: the Publisher SDK against a plain producer, same run.

syncbus: changes go through the whole SDK (validate, encode, spool in SQLite,
produce, delivery report, spool delete) until ``flush`` says all are
acknowledged. Baseline: a plain confluent-kafka producer with the same settings
(idempotent, ``acks=all``) sends the same pre-encoded values, keys and headers and
waits for the same acknowledgements. Both go to uuid-named topics of their own,
never to ``raw.<resource>`` (a live router would route the benchmark's events).
Runs alternate so that load from other processes hits both; medians are reported.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry

from syncbus import settings
from syncbus.cli.options import login_options
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.model import Bus
from syncbus.publisher import Change, Publisher
from syncbus.publisher.changes import ResourceWriter, new_event_ids, now_micros
from syncbus.publisher.sender import producer_config

CHUNK = 5000
UNIQUE = 2000  # distinct generated records, cycled (faker is slow)


WARM_UP_EVENTS = 5_000


def _changes(bus: Bus, resource: str, n: int) -> list[Change]:
    from syncbus.core.fake import make_records

    recs = make_records(bus.resource(resource).schema, min(n, UNIQUE), seed=1)
    return [Change("SNAPSHOT", after=recs[i % len(recs)]) for i in range(n)]


def _encoded(bus: Bus, owner: str, resource: str, changes: list[Change]) -> list[Any]:
    """(key, value, headers) exactly as the SDK sends them, for the distinct records."""
    writer = ResourceWriter(bus, owner, resource)
    out = []
    ids = new_event_ids(min(len(changes), UNIQUE))
    for seq, (change, event_id) in enumerate(zip(changes, ids, strict=False), start=1):
        key, region, old = writer.check(change)
        k, value, _, headers = writer.encode(change, key, region, old, seq, event_id, now_micros())
        out.append((k, value, headers))
    return out


def _run_sdk(bus: Bus, conn: Connection, owner: str, resource: str, topic: str,
             changes: list[Change]) -> float:
    with tempfile.TemporaryDirectory(prefix="syncbus-bench-") as tmp:
        start = time.perf_counter()
        with Publisher(owner, bus, conn, spool_path=Path(tmp, "spool.db"),
                       registry=CollectorRegistry(), topic_of=lambda _: topic) as pub:
            for i in range(0, len(changes), CHUNK):
                pub.publish_many(resource, changes[i : i + CHUNK])
            left = pub.flush(600)
        elapsed = time.perf_counter() - start
    if left:
        raise click.ClickException(f"syncbus run: {left} events not acknowledged")
    return len(changes) / elapsed


def _run_baseline(conn: Connection, topic: str, encoded: list[Any], n: int) -> float:
    delivered = [0]

    def report(err: Any, msg: Any) -> None:
        if err is None:
            delivered[0] += 1

    producer = Producer(producer_config(conn, 100_000))
    start = time.perf_counter()
    for i in range(n):
        key, value, headers = encoded[i % len(encoded)]
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(600)
    elapsed = time.perf_counter() - start
    if left or delivered[0] != n:
        raise click.ClickException(f"baseline run: {n - delivered[0]} messages not acknowledged")
    return n / elapsed


@click.command("publish")
@login_options
@click.option("--events", default=100_000, show_default=True, help="Events per run.")
@click.option("--runs", default=3, show_default=True, help="Runs of each; medians reported.")
@click.option("--resource", default="licence.business", show_default=True)
@click.option("--bootstrap", default=None, help="Default SYNCBUS_BOOTSTRAP, then the local broker.")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the results.")
def command(events: int, runs: int, resource: str, bootstrap: str | None, as_json: bool) -> None:
    """Events/s through the Publisher SDK vs a plain confluent-kafka producer."""
    bus = load_bus(Path(settings.get("streams")), Path(settings.get("schemas")))
    owner = bus.resource(resource).owner
    conn = Connection.from_env(bootstrap)
    click.echo(f"preparing {events} {resource} changes (owner {owner}) ...", err=True)
    changes = _changes(bus, resource, events)
    encoded = _encoded(bus, owner, resource, changes)
    admin = AdminClient(conn.confluent())
    run_id = uuid.uuid4().hex[:10]
    topics = [f"bench.publish.{run_id}.{side}" for side in ("sdk", "base")]
    for future in admin.create_topics([NewTopic(x, 3, 1) for x in topics]).values():
        future.result(timeout=30)
    sdk: list[float] = []
    base: list[float] = []
    try:
        # untimed: the first producer on a fresh broker waits for its idempotence PID
        # and the topics' leaders, which would otherwise land in run 1 of one side only
        warm = min(events, WARM_UP_EVENTS)
        _run_baseline(conn, topics[1], encoded, warm)
        _run_sdk(bus, conn, owner, resource, topics[0], changes[:warm])
        for run in range(1, runs + 1):
            base.append(_run_baseline(conn, topics[1], encoded, events))
            sdk.append(_run_sdk(bus, conn, owner, resource, topics[0], changes))
            click.echo(f"run {run}: syncbus {sdk[-1]:,.0f} ev/s  baseline {base[-1]:,.0f} msg/s",
                       err=True)
    finally:
        for future in admin.delete_topics(topics).values():
            future.result(timeout=30)
    sdk_eps, base_eps = statistics.median(sdk), statistics.median(base)
    result = {
        "benchmark": "publish", "events": events, "runs": runs, "resource": resource,
        "syncbus_eps": round(sdk_eps), "baseline_eps": round(base_eps),
        "ratio": round(sdk_eps / base_eps, 3),
        "syncbus_runs": [round(x) for x in sdk], "baseline_runs": [round(x) for x in base],
    }
    click.echo(f"{'':<28}{'median':>12}  runs")
    for label, median, each in (("syncbus Publisher (ev/s)", sdk_eps, sdk),
                                ("plain producer (msg/s)", base_eps, base)):
        click.echo(f"{label:<28}{median:>12,.0f}  {', '.join(f'{x:,.0f}' for x in each)}")
    click.echo(f"{'ratio':<28}{result['ratio']:>12}")
    if as_json:
        click.echo(json.dumps(result))
