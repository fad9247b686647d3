"""``syncbus bench router``: a real router worker against a plain confluent-kafka loop.

Both do the same work with the same engine (decode once, validate, route, mask and
encode once per distinct view, dead letters, audit), the same guarantee (a batch's
offsets are committed only after the broker confirmed all of its output) and the
same pipelining: each routes the next batch while the broker confirms the previous
one, with at most two batches written and unconfirmed, and commits (acks) batches
in order. Only the framework differs: syncbus is a ``syncbus router`` process
(Faust, whole fetches handed to the batch handler), the baseline a
consume/process/produce loop on confluent-kafka in this process, which commits the
explicit offsets of each confirmed batch, never the consumer's position (that is
already past the batch in flight).

Each run gets topics of its own (a uuid prefix, created by ``apply``), starts its
router, waits until it routes a probe, then produces N pre-encoded events at once
and times until the audit topic holds one record per expected delivery (counted
from its high watermarks, so counting costs nothing). Runs alternate; medians.

``--floor`` also times Faust alone over the same events (``router.floor``): on
its stream path (``take_events``, doing nothing), on the router's batch path
(fetches handed to a handler that only acks), and that path writing the router's
exact output for each event with no routing work (``io``: what any engine, however
fast, would still cost here); and the routing engine alone on the same events, in
this process, with no Kafka at all (``engine_eps``: what our own work allows). So
the ceilings are measured in the same run, not assumed.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import click
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from syncbus import settings
from syncbus.admin.apply import apply_bus
from syncbus.admin.compacted import watermarks
from syncbus.admin.names import TopicNames
from syncbus.bench.monitor_load import MonitorCost, monitored
from syncbus.cli.options import login_options
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.codec import Codec
from syncbus.core.model import Bus
from syncbus.core.policy import RoutingTable
from syncbus.core.views import ViewCache
from syncbus.router.batching import FETCH_MAX_WAIT_MS
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import RawMessage, RoutingEngine, tune_gc
from syncbus.router.follower import PolicyFollower
from syncbus.router.readiness import wait_until_routing
from syncbus.router.secrets import TokenSecrets
from syncbus.router.sink import BatchSink, Delivery

UNIQUE = 2000
PIPELINE_DEPTH = 2  # the router's default (RouterConfig.pipeline_depth)
REGIONS = ("320102", "320106", "320508", "320505", "320205", "320583")


def _events(bus: Bus, resource: str, n: int) -> tuple[list[tuple[bytes, bytes, Any]], int]:
    """Pre-encoded raw events (cycled from UNIQUE records) and how many deliveries they make."""
    from syncbus.core import topics as t
    from syncbus.core.fake import make_record

    res = bus.resource(resource)
    codec = Codec()
    fp = codec.register(bus.schemas.event_schema(res.schema))
    table, now = RoutingTable(bus), datetime.now(UTC)
    pool, fanout = [], []
    domain = bus.schemas.latest(res.schema)
    for i in range(min(n, UNIQUE)):
        record = make_record(res.schema, region=REGIONS[i % len(REGIONS)], seed=i)
        record = {f["name"]: record.get(f["name"]) for f in domain["fields"]}
        region, key = record[res.region_field], str(record[res.key_field])
        micros = int(time.time() * 1_000_000)
        event = {
            "event_id": str(uuid.uuid4()),
            "source": res.owner,
            "resource": resource,
            "op": "SNAPSHOT",
            "key": key,
            "region": region,
            "sequence": i + 1,
            "occurred_at": micros,
            "published_at": micros,
            "before": None,
            "after": record,
        }
        headers = [
            (t.H_RESOURCE, resource.encode()),
            (t.H_OP, b"SNAPSHOT"),
            (t.H_REGION, region.encode()),
            (t.H_FINGERPRINT, fp.hex().encode()),
        ]
        pool.append((key.encode(), codec.encode(fp, event), headers))
        fanout.append(len(table.route(resource, "SNAPSHOT", region, None, now)))
    return [pool[i % len(pool)] for i in range(n)], sum(fanout[i % len(pool)] for i in range(n))


def _with_junk(events: list[Any], junk: int) -> list[Any]:
    """``events`` with ``junk`` hostile messages spread evenly among them: truncated
    bodies, unknown writer fingerprints, bytes that are not Avro, and junk headers."""
    if junk <= 0:
        return list(events)
    out: list[Any] = []
    step = max(1, len(events) // junk)
    made = 0
    for i, (key, value, headers) in enumerate(events):
        out.append((key, value, headers))
        if made < junk and i % step == 0:
            kind = made % 4
            bad = (value[: len(value) // 2] if kind == 0
                   else value[:2] + b"\xee" * 8 + value[10:] if kind == 1
                   else b'{"not": "avro"}' if kind == 2
                   else value[:-3])
            out.append((key, bad, [("x-junk", str(made).encode())]))
            made += 1
    while made < junk:  # fewer events than junk: the rest at the end
        out.append((b"junk", b"\x00" * 20, []))
        made += 1
    return out


def _audit_count(consumer: Consumer, topic: str, partitions: int) -> int:
    return sum(watermarks(consumer, TopicPartition(topic, p), 30)[1] for p in range(partitions))


def _timed(
    conn: Connection,
    names: TopicNames,
    resource: str,
    events: list[Any],
    expected: int,
    partitions: int,
    timeout: float = 600.0,
    good: int | None = None,
) -> float:
    """Produce every event, then wait for ``expected`` audit records; events per second
    (of the ``good`` ones only, when junk is mixed in: junk makes no audit record)."""
    watcher = Consumer(conn.confluent(**{"group.id": f"bench-{uuid.uuid4()}"}))
    base = _audit_count(watcher, names.audit, partitions)
    producer = Producer(
        conn.confluent(
            **{
                "linger.ms": 20,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": 2_000_000,
            }
        )
    )
    started = time.monotonic()
    for key, value, headers in events:
        producer.produce(names.raw(resource), value, key, headers=headers)
    producer.flush(120)
    while _audit_count(watcher, names.audit, partitions) - base < expected:
        if time.monotonic() - started > timeout:
            raise click.ClickException(f"{names.prefix}: output incomplete after {timeout} s")
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    watcher.close()
    return (good if good is not None else len(events)) / elapsed


def _probe(
    conn: Connection, names: TopicNames, resource: str, probe: Any, partitions: int, alive: Any
) -> None:
    watcher = Consumer(conn.confluent(**{"group.id": f"bench-{uuid.uuid4()}"}))
    producer = Producer(conn.confluent())
    producer.produce(names.raw(resource), probe[1], probe[0], headers=probe[2])
    producer.flush(30)
    deadline = time.monotonic() + 180
    while _audit_count(watcher, names.audit, partitions) == 0:
        if time.monotonic() > deadline or not alive():
            raise click.ClickException(f"{names.prefix}: the router never routed its probe")
        time.sleep(0.2)
    watcher.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def _bus_topics(bus: Bus, conn: Connection, partitions: int) -> Iterator[TopicNames]:
    """The bus's topics under a fresh prefix for one run, deleted after it with every
    topic the run's processes made (Faust's changelogs, the floor's leader topic).
    Left behind, a few dozen per run piled up to thousands on a developer's broker,
    and every metadata request, which aiokafka decodes in Python, carried all of them."""
    names = TopicNames(f"bench{uuid.uuid4().hex[:8]}.")
    apply_bus(bus, conn, partitions, names)
    try:
        yield names
    finally:
        admin = AdminClient(conn.confluent())
        doomed = [t for t in admin.list_topics(timeout=30).topics if names.prefix in t]
        for topic, future in admin.delete_topics(doomed, operation_timeout=30).items():
            try:
                future.result(60)
            except KafkaException as exc:
                click.echo(f"warning: benchmark topic {topic} not deleted: {exc}", err=True)


def _run_router(
    bus: Bus,
    conn: Connection,
    resource: str,
    events: list[Any],
    expected: int,
    partitions: int,
    batch: int,
    secrets: Path,
    workdir: Path,
    watch: list[MonitorCost] | None = None,
    workers: int = 1,
    good: int | None = None,
) -> tuple[float, float]:
    """Events/s of ``workers`` router processes sharing one id, and the largest RSS."""
    with _bus_topics(bus, conn, partitions) as names, ExitStack() as watching:
        if watch is not None:
            watch.append(
                watching.enter_context(monitored(conn, names, f"{names.prefix}router", workdir))
            )
        procs = [_router_process(conn, names, secrets, workdir / f"{names.prefix}w{i}", batch)
                 for i in range(workers)]

        def alive() -> bool:
            return all(p.poll() is None for p in procs)

        try:
            if workers > 1:  # every worker in the group before the clock starts
                wait_until_routing(conn, f"{names.prefix}router", names.raw(resource), alive,
                                   timeout=180, members=workers)
            _probe(conn, names, resource, events[0], partitions, alive)
            eps = _timed(conn, names, resource, events, expected, partitions, good=good)
            return eps, max(_rss_mb(p.pid) for p in procs)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(60)


def _router_process(conn: Connection, names: TopicNames, secrets: Path, workdir: Path,
                    batch: int, *extra: str) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "syncbus", "router", "--bootstrap", conn.bootstrap,
         "--id", f"{names.prefix}router", "--topic-prefix", names.prefix,
         "--secrets", str(secrets), "--workdir", str(workdir), "--batch", str(batch),
         *extra],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "log", "wb"),
    )


def _baseline_loop(
    conn: Connection,
    names: TopicNames,
    resource: str,
    secrets: TokenSecrets,
    batch: int,
    stop: threading.Event,
    depth: int = PIPELINE_DEPTH,
) -> None:
    bus = PolicyFollower(conn, names.policy).load()
    codec = Codec()
    policy = CompiledPolicy(bus, secrets, codec, ViewCache(), names, os.urandom(32))
    engine = RoutingEngine(policy, codec, names)
    tune_gc()  # as the router process does
    sink = BatchSink(conn, names.schemas)
    sequences: dict[str, int] = {}  # confirmed, like the router's table
    assigned: dict[str, int] = {}  # of batches in flight, consulted first
    in_flight: deque[tuple[Delivery, dict[str, tuple[int, int]], list[TopicPartition]]] = deque()
    consumer = Consumer(
        conn.confluent(
            **{
                "group.id": f"{names.prefix}baseline",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": FETCH_MAX_WAIT_MS,  # as the router's consumer
            }
        )
    )
    consumer.subscribe([names.raw(resource)])

    def sequence_of(key: str) -> int:
        found = assigned.get(key)
        return found if found is not None else sequences.get(key, 0)

    def confirm_oldest() -> None:
        delivery, batch_sequences, offsets = in_flight.popleft()
        delivery.confirmed_blocking()
        sequences.update({k: v for k, (_, v) in batch_sequences.items()})
        consumer.commit(offsets=offsets, asynchronous=True)
        if not in_flight:
            assigned.clear()

    try:
        while not stop.is_set():
            messages = [m for m in consumer.consume(batch, timeout=0.05) if m.error() is None]
            if not messages:
                while in_flight:  # idle: nothing to overlap with
                    confirm_oldest()
                continue
            raw = [
                RawMessage(
                    m.topic() or "",
                    m.partition() or 0,
                    m.offset() or 0,
                    m.key(),
                    m.value(),
                    cast(Any, m.headers()),
                )
                for m in messages
            ]
            output = engine.process(raw, datetime.now(UTC), sequence_of)
            delivery = sink.write(output)
            assigned.update({k: v for k, (_, v) in output.sequences.items()})
            ends = {(m.topic, m.partition): m.offset + 1 for m in raw}  # offsets ascend
            offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
            in_flight.append((delivery, output.sequences, offsets))
            while len(in_flight) >= depth:
                confirm_oldest()
    finally:
        consumer.close()


def _run_baseline(
    bus: Bus,
    conn: Connection,
    resource: str,
    events: list[Any],
    expected: int,
    partitions: int,
    batch: int,
    secrets: TokenSecrets,
) -> float:
    with _bus_topics(bus, conn, partitions) as names:
        stop = threading.Event()
        loop = threading.Thread(
            target=_baseline_loop, args=(conn, names, resource, secrets, batch, stop),
            daemon=True,
        )
        loop.start()
        try:
            _probe(conn, names, resource, events[0], partitions, loop.is_alive)
            return _timed(conn, names, resource, events, expected, partitions)
        finally:
            stop.set()
            loop.join(30)


def _offline_engine(bus: Bus, names: TopicNames) -> RoutingEngine:
    """The real engine on the bus's policy, with fresh token secrets, outside any router."""
    codec = Codec()
    secrets = TokenSecrets({s: uuid.uuid4().hex for s in bus.subscribers})
    return RoutingEngine(
        CompiledPolicy(bus, secrets, codec, ViewCache(), names, os.urandom(32)), codec, names
    )


def _as_consumed(names: TopicNames, resource: str, events: list[Any]) -> list[RawMessage]:
    """The events as the router would consume them from the raw topic (3 partitions)."""
    return [
        RawMessage(names.raw(resource), offset % 3, offset, key, value, headers)
        for offset, (key, value, headers) in enumerate(events)
    ]


def _router_output(
    bus: Bus, names: TopicNames, resource: str, events: list[Any]
) -> dict[bytes, list[Any]]:
    """What the real engine writes for each distinct event (deliveries, then audit)."""
    engine = _offline_engine(bus, names)
    written: dict[bytes, list[Any]] = {}
    for raw in _as_consumed(names, resource, events):
        value = raw.value or b""
        if value not in written:
            out = engine.process([raw], datetime.now(UTC), lambda _: 0)
            written[value] = out.deliveries + out.audit
    return written


def _engine_alone(bus: Bus, resource: str, events: list[Any], batch: int) -> float:
    """Events/s of the routing engine by itself, in this process, on the same events in
    batches of ``batch``: what the router's own work allows, whatever Kafka and Faust cost."""
    names = TopicNames("")
    engine = _offline_engine(bus, names)
    raw = _as_consumed(names, resource, events)
    batches = [raw[i : i + batch] for i in range(0, len(raw), batch)]
    sequences: dict[str, int] = {}
    started = time.perf_counter()
    for chunk in batches:
        output = engine.process(chunk, datetime.now(UTC), lambda key: sequences.get(key, 0))
        sequences.update({k: v for k, (_, v) in output.sequences.items()})
    return len(raw) / (time.perf_counter() - started)


def _run_floor(
    bus: Bus,
    conn: Connection,
    resource: str,
    events: list[Any],
    partitions: int,
    batch: int,
    mode: str,
    workdir: Path,
) -> float:
    """Events/s of Faust alone (``router.floor``) over the same events, pre-produced."""
    with _bus_topics(bus, conn, partitions) as names:
        extra = []
        if mode == "io":
            outputs = workdir / f"{names.prefix}outputs.pickle"
            outputs.write_bytes(pickle.dumps(_router_output(bus, names, resource, events)))
            extra.append(f"--outputs={outputs}")
        producer = Producer(
            conn.confluent(**{"linger.ms": 20, "queue.buffering.max.messages": 2_000_000})
        )
        for key, value, headers in events:
            producer.produce(names.raw(resource), value, key, headers=headers)
        producer.flush(120)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "syncbus.router.floor",
                f"--mode={mode}",
                f"--bootstrap={conn.bootstrap}",
                f"--topic={names.raw(resource)}",
                f"--batch={batch}",
                f"--expect={len(events)}",
                f"--workdir={workdir}",
                *extra,
            ],
            capture_output=True,
            timeout=900,
            check=False,
        )
        # the Faust worker redirects stdout into its log: the result may be in either stream
        output = done.stdout.decode() + done.stderr.decode()
        lines = re.findall(r'\{"mode": .*\}', output)
        if not lines:
            tail = done.stderr.decode()[-2000:]
            raise click.ClickException(f"the {mode} floor run printed no result:\n{tail}")
        return float(json.loads(lines[-1])["eps"])


@click.command("router")
@login_options
@click.option("--events", default=50_000, show_default=True, help="Events per run.")
@click.option("--runs", default=3, show_default=True, help="Runs of each; medians reported.")
@click.option("--resource", default="population.resident", show_default=True)
@click.option("--partitions", default=3, show_default=True)
@click.option("--batch", default=5000, show_default=True, help="Events per batch (both).")
@click.option("--bootstrap", default=None, help="Default SYNCBUS_BOOTSTRAP, then the local broker.")
@click.option(
    "--floor",
    is_flag=True,
    help="Also time Faust alone taking the same events (take_events; the router's batches; "
    "io: batches plus writing the router's exact output, i.e. the router with free routing), "
    "and the routing engine alone, in this process, without Kafka.",
)
@click.option(
    "--monitor",
    "with_monitor",
    is_flag=True,
    help="Also run the router with `syncbus monitor` watching and scraped every second.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Also run N router workers sharing one id, alternating with one worker in each "
    "run (workers_eps in the JSON: the events/s of 1 and of N).",
)
@click.option(
    "--junk",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Also run the router with N hostile messages (truncated, unknown writer, not "
    "Avro) mixed among the events; junk_eps in the JSON is the good events' rate.",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the results.")
def command(
    events: int,
    runs: int,
    resource: str,
    partitions: int,
    batch: int,
    bootstrap: str | None,
    floor: bool,
    with_monitor: bool,
    workers: int,
    junk: int,
    as_json: bool,
) -> None:
    """Events/s through a router worker and through a plain confluent-kafka loop."""
    if floor and events <= batch:
        raise click.UsageError(
            f"--floor times the fetches after the first, so it needs more --events than "
            f"--batch ({events} <= {batch}); raise --events or lower --batch"
        )
    conn = Connection.from_env(bootstrap)
    bus = load_bus(Path(settings.get("streams")), Path(settings.get("schemas")))
    click.echo(f"preparing {events} {resource} events ...", err=True)
    pool, expected = _events(bus, resource, events)
    secret_map = {s: uuid.uuid4().hex for s in bus.subscribers}
    sy, base, rss = [], [], []
    floors: dict[str, list[float]] = {"take_events": [], "batches": [], "io": []}
    engine_alone: list[float] = []
    watched: list[float] = []
    costs: list[MonitorCost] = []
    scaled: list[float] = []
    junked: list[float] = []
    mixed = _with_junk(pool, junk) if junk else []
    with tempfile.TemporaryDirectory(prefix="syncbus-bench-router-") as tmp:
        secrets_file = Path(tmp, "secrets.json")
        secrets_file.write_text(json.dumps(secret_map))
        for run in range(1, runs + 1):
            args = (bus, conn, resource, pool, expected, partitions, batch, secrets_file, Path(tmp))
            if with_monitor and run % 2 == 0:  # alternate which goes first: no order bias
                watched.append(_run_router(*args, watch=costs)[0])
            eps, mb = _run_router(*args)
            sy.append(eps)
            rss.append(mb)
            if with_monitor and run % 2 == 1:
                watched.append(_run_router(*args, watch=costs)[0])
            if with_monitor:
                click.echo(
                    f"run {run}: syncbus, monitor watching {watched[-1]:,.0f} ev/s", err=True
                )
            if junk:
                junk_args = (bus, conn, resource, mixed, expected, partitions, batch,
                             secrets_file, Path(tmp))
                junked.append(_run_router(*junk_args, good=len(pool))[0])
                click.echo(f"run {run}: syncbus, {junk} junk mixed in {junked[-1]:,.0f} good "
                           "ev/s", err=True)
            if workers > 1:
                scaled.append(_run_router(*args, workers=workers)[0])
                click.echo(f"run {run}: syncbus, {workers} workers {scaled[-1]:,.0f} ev/s",
                           err=True)
            base.append(
                _run_baseline(
                    bus, conn, resource, pool, expected, partitions, batch, TokenSecrets(secret_map)
                )
            )
            click.echo(
                f"run {run}: syncbus {sy[-1]:,.0f} ev/s  baseline {base[-1]:,.0f} ev/s"
                f"  router rss {mb:.0f} MB",
                err=True,
            )
            for mode in floors if floor else ():
                floors[mode].append(
                    _run_floor(bus, conn, resource, pool, partitions, batch, mode, Path(tmp))
                )
                click.echo(
                    f"run {run}: Faust alone, {mode}: {floors[mode][-1]:,.0f} ev/s", err=True
                )
            if floor:
                engine_alone.append(_engine_alone(bus, resource, pool, batch))
                click.echo(f"run {run}: engine alone: {engine_alone[-1]:,.0f} ev/s", err=True)
    result: dict[str, Any] = {
        "benchmark": "router",
        "events": events,
        "deliveries_per_run": expected,
        "syncbus_eps": round(statistics.median(sy)),
        "baseline_eps": round(statistics.median(base)),
        "ratio": round(statistics.median(sy) / statistics.median(base), 3),
        "syncbus_runs": [round(x) for x in sy],
        "baseline_runs": [round(x) for x in base],
        "router_rss_mb": round(max(rss), 1),
    }
    for mode, values in floors.items():
        if values:
            result[f"faust_{mode}_eps"] = round(statistics.median(values))
    if engine_alone:
        result["engine_eps"] = round(statistics.median(engine_alone))
    if watched:
        result["monitored_eps"] = round(statistics.median(watched))
        result["monitored_runs"] = [round(x) for x in watched]
        result["monitored_ratio"] = round(statistics.median(watched) / statistics.median(sy), 3)
        # the monitor's own CPU over its runs: a cost figure a busy machine does not blur
        result["monitor_cpu_share"] = round(
            sum(c.cpu_seconds for c in costs) / sum(c.wall_seconds for c in costs), 3
        )
    if junked:
        result["junk"] = junk
        result["junk_eps"] = round(statistics.median(junked))
        result["junk_ratio"] = round(statistics.median(junked) / statistics.median(sy), 3)
    if scaled:
        result["workers_eps"] = {"1": result["syncbus_eps"],
                                 str(workers): round(statistics.median(scaled))}
        result["workers_runs"] = [round(x) for x in scaled]
    click.echo(f"syncbus router   {result['syncbus_eps']:>10,} ev/s (median of {runs})")
    click.echo(f"baseline loop    {result['baseline_eps']:>10,} ev/s")
    click.echo(f"ratio            {result['ratio']:>10}")
    click.echo(f"router rss       {result['router_rss_mb']:>10} MB")
    for mode in floors:
        if f"faust_{mode}_eps" in result:
            click.echo(f"Faust alone, {mode:<12} {result[f'faust_{mode}_eps']:>10,} ev/s")
    if "engine_eps" in result:
        click.echo(f"{'engine alone, no Kafka':<25} {result['engine_eps']:>10,} ev/s")
    if watched:
        click.echo(
            f"monitor watching {result['monitored_eps']:>10,} ev/s "
            f"({result['monitored_ratio']} of the router alone)"
        )
    if scaled:
        click.echo(f"{workers} workers        {result['workers_eps'][str(workers)]:>10,} ev/s")
    if as_json:
        click.echo(json.dumps(result))
