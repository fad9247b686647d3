"""``syncbus bench resync --records N``: a grant approved over N existing records.

The shipped bus under a fresh topic prefix, with Wuxi's resident grant pending;
N distinct Wuxi residents are written to the raw topic (as a publisher would, one
record per key), a router worker starts and routes them to the province, then
live traffic of other residents runs at ``--rate`` events/s while ``apply``
approves Wuxi's grant. The figure is the time from the apply to the resync's
``done`` record (its end markers and audit record confirmed), and the p99 latency
of the live events (published -> in the province's share) during that time. One
JSON line with ``--json``: {"benchmark": "resync", "records", "seconds",
"records_per_s", "live_p99_ms"}.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from stdnum.cn import ric

from syncbus import settings
from syncbus.admin.apply import apply_bus
from syncbus.admin.compacted import read_compacted
from syncbus.admin.names import TopicNames
from syncbus.bench.router import _bus_topics, _router_process
from syncbus.cli.options import login_options
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.model import Bus
from syncbus.router import RESYNC_CHUNK, RESYNC_REST

RES = "population.resident"
WUXI, LIVE_REGION = "320205", "320102"


def _encoder(bus: Bus) -> tuple[Codec, bytes, list[str]]:
    codec = Codec()
    schema = bus.resource(RES).schema
    fp = codec.register(bus.schemas.event_schema(schema))
    return codec, fp, [f["name"] for f in bus.schemas.latest(schema)["fields"]]


def _event(codec: Codec, fp: bytes, record: dict[str, Any], seq: int) -> tuple[bytes, bytes]:
    micros = int(time.time() * 1_000_000)
    event = {"event_id": str(uuid.uuid4()), "source": "js-gaj", "resource": RES, "op": "CREATE",
             "key": record["id_number"], "region": record["region"], "sequence": seq,
             "occurred_at": micros, "published_at": micros, "before": None, "after": record}
    return record["id_number"].encode(), codec.encode(fp, event)


def _residents(bus: Bus, n: int) -> Any:
    """N distinct valid Wuxi residents: a pool of faked ones, each given its own citizen
    ID (birth date and order number vary, check digit and gender agree)."""
    codec, fp, fields = _encoder(bus)
    pool = [make_record(RES, region=WUXI, seed=i) for i in range(500)]
    pool = [{f: r.get(f) for f in fields} for r in pool]
    born0 = dt.date(1980, 1, 1)
    for i in range(n):
        record = dict(pool[i % len(pool)])
        born = born0 + dt.timedelta(days=i // 500)
        female = record["gender"] == "F"
        body = f"{WUXI}{born:%Y%m%d}{(i % 500) * 2 + (0 if female else 1):03d}"
        record.update(id_number=body + ric.calc_check_digit(body + "0"), birth_date=born,
                      registered_on=born + dt.timedelta(days=400))
        yield _event(codec, fp, record, i + 1)


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


class _Live:
    """Residents of another city at ``rate``/s, and their latency into the province's share."""

    def __init__(self, conn: Connection, names: TopicNames, bus: Bus, rate: float) -> None:
        self.conn, self.names, self.bus, self.rate = conn, names, bus, rate
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (arrival monotonic, latency ms)
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._watch, daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        codec, fp, fields = _encoder(self.bus)
        pool = [{f: r.get(f) for f in fields}
                for r in (make_record(RES, region=LIVE_REGION, seed=10_000 + i)
                          for i in range(200))]
        producer = Producer(self.conn.confluent(**{"linger.ms": 1}))
        n, start = 0, time.monotonic()
        while not self.stop.is_set():
            key, value = _event(codec, fp, pool[n % len(pool)], n + 1)
            _produce(producer, self.names.raw(RES), key, value)
            producer.poll(0)
            n += 1
            time.sleep(max(0.0, start + n / self.rate - time.monotonic()))
        producer.flush(30)

    def _watch(self) -> None:
        topic = self.names.share("province.jiangsu", RES)
        consumer = Consumer(self.conn.confluent(**{"group.id": f"bench-{uuid.uuid4()}",
                                                   "enable.auto.commit": False}))
        parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
        codec = Codec()
        for value in read_compacted(self.conn, self.names.schemas).values():
            codec.register(json.loads(value))
        while not self.stop.is_set():
            for message in consumer.consume(500, timeout=0.2):
                body = message.value()
                if message.error() is not None or body is None:  # a marker has no value
                    continue
                event = codec.decode(body)[0]
                if event["region"] != LIVE_REGION:
                    continue
                published = event["published_at"].timestamp()  # timestamp-micros: datetime
                self.latencies.append((time.monotonic(), (time.time() - published) * 1000))
        consumer.close()

    def p99(self, since: float, until: float) -> float:
        values = sorted(ms for at, ms in self.latencies if since <= at <= until)
        if len(values) < 2:
            return float("nan")
        return statistics.quantiles(values, n=100)[98]


def _approved(bus: Bus) -> Bus:
    grants = tuple(dataclasses.replace(g, state="approved", approved_by="js-gaj")
                   if g.key == f"city.wuxi/{RES}" else g for g in bus.grants)
    return dataclasses.replace(bus, grants=grants)


def _done(conn: Connection, names: TopicNames, deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        for key, value in read_compacted(conn, names.resync).items():
            if key.startswith("done/"):
                audit: dict[str, Any] = json.loads(value)
                if audit["subscriber"] == "city.wuxi":
                    return audit
        time.sleep(0.5)
    raise click.ClickException("the resync did not finish in time; see the router's log")


def _wait_routed(conn: Connection, names: TopicNames, n: int, deadline: float) -> None:
    """Until the province's share holds the N residents: the router has caught up."""
    topic = names.share("province.jiangsu", RES)
    consumer = Consumer(conn.confluent(**{"group.id": f"bench-{uuid.uuid4()}"}))
    parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    try:
        while time.monotonic() < deadline:
            total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                        for p in parts)
            if total >= n:
                return
            time.sleep(0.5)
    finally:
        consumer.close()
    raise click.ClickException("the router did not route the existing records in time")


@click.command(name="resync")
@login_options
@click.option("--records", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--rate", type=click.FloatRange(1), default=1000.0, show_default=True,
              help="Live events/s beside the resync.")
@click.option("--partitions", type=click.IntRange(1), default=3, show_default=True)
@click.option("--chunk", type=click.IntRange(1), default=RESYNC_CHUNK, show_default=True)
@click.option("--rest", type=click.FloatRange(0), default=RESYNC_REST, show_default=True)
@click.option("--bootstrap", default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON line.")
def command(records: int, rate: float, partitions: int, chunk: int, rest: float,
            bootstrap: str | None, as_json: bool) -> None:
    """A resync of N existing records to one newly approved subscriber, live traffic beside."""
    conn = Connection.from_env(bootstrap)
    bus = load_bus(Path(settings.get("streams")), Path(settings.get("schemas")))
    with tempfile.TemporaryDirectory(prefix="syncbus-bench-resync-") as tmp, \
            _bus_topics(bus, conn, partitions) as names:
        secrets = Path(tmp, "secrets.json")
        secrets.write_text(json.dumps({s: uuid.uuid4().hex for s in bus.subscribers}))
        click.echo(f"writing {records:,} Wuxi residents ...", err=True)
        producer = Producer(conn.confluent(**{"linger.ms": 20, "batch.size": 1 << 20}))
        for key, value in _residents(bus, records):
            _produce(producer, names.raw(RES), key, value)
        producer.flush(300)
        router = _router_process(conn, names, secrets, Path(tmp, "router"), 5000,
                                 "--resync-chunk", str(chunk), "--resync-rest", str(rest))
        live = _Live(conn, names, bus, rate)
        try:
            _wait_routed(conn, names, records, time.monotonic() + 600 + records / 1000)
            live.start()
            time.sleep(3)  # live latency settles before the clock starts
            started = time.monotonic()
            apply_bus(_approved(bus), conn, partitions, names)
            audit = _done(conn, names, started + 600 + records / 500)
            seconds = time.monotonic() - started
            p99 = live.p99(started, time.monotonic())
        finally:
            live.stop.set()
            router.terminate()
            router.wait(60)
    result = {"benchmark": "resync", "records": records, "seconds": round(seconds, 2),
              "records_per_s": round(audit["snapshots"] / seconds),
              "live_p99_ms": round(p99, 1)}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"resync of {audit['snapshots']:,} records in {seconds:.1f} s: "
                   f"{result['records_per_s']:,} records/s; live p99 {p99:.0f} ms at "
                   f"{rate:g} ev/s beside it")
