"""``syncbus bench latency``: how long a department's change takes to reach a city's handler.

Three processes, as in production: a publisher (the Publisher SDK, open loop at a
fixed offered rate, ``bench.latency_roles``), a ``syncbus router`` and a subscriber
(the Subscriber SDK as ``city.nanjing``, handling Nanjing residents). Each run gets
topics of its own (a uuid prefix). The router and the subscriber are started first
and the clock starts when both are ready (the subscriber holds its partitions and
a probe went through the router); how long that took is reported as
``startup_s``. Then the publisher offers ``rate`` events a second for ``duration``
seconds, each with ``occurred_at`` = the time it was due, so a publisher falling
behind shows as latency rather than as a lower rate.

Latency is ``handled - occurred_at`` per event, in stages from the envelope's
timestamps: publisher (``occurred_at`` -> ``published_at``: validate, encode,
spool), router (``published_at`` -> ``routed_at``: the raw topic and the router)
and share (``routed_at`` -> handled: the share topic and the subscriber SDK). The
first ``--warmup`` seconds are reported apart from the steady state, and the
whole run as the headline, the first seconds included. All clocks are this
machine's.

Baseline: there is no framework-free equivalent of three processes and a policy,
so each figure stands against the offered interval (``1/rate``) and the issue's
targets; the publish and router benchmarks carry the throughput baselines.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

from syncbus import settings
from syncbus.bench.latency_roles import RESOURCE
from syncbus.bench.router import _bus_topics
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.router.readiness import RouterNotReady, wait_until_routing

ROLES = "syncbus.bench.latency_roles"


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"count": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99),
            "p999_ms": at(0.999), "max_ms": round(ordered[-1] * 1000, 2)}


def _role(role: str, args: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", ROLES, role, json.dumps(args)],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
    )


def _wait(path: Path, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise click.ClickException(f"{what}: its process ended (exit {proc.returncode})")
        if time.monotonic() > deadline:
            raise click.ClickException(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.05)


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(conn: Connection, rate: float, duration: float, warmup: float,
            workdir: Path) -> dict[str, Any]:
    """One run: start router and subscriber, offer the load, return the figures."""
    bus = load_bus(Path(settings.get("streams")), Path(settings.get("schemas")))
    secrets = workdir / "secrets.json"
    secrets.write_text(json.dumps({s: uuid.uuid4().hex for s in bus.subscribers}))
    with _bus_topics(bus, conn, 3) as names:
        common: dict[str, Any] = {"bootstrap": conn.bootstrap, "prefix": names.prefix,
                  "streams": settings.get("streams"), "schemas": settings.get("schemas")}
        began = time.monotonic()
        router = subprocess.Popen(
            [sys.executable, "-m", "syncbus", "router", "--bootstrap", conn.bootstrap,
             "--id", f"{names.prefix}router", "--topic-prefix", names.prefix,
             "--secrets", str(secrets), "--workdir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "router.log", "wb"),  # noqa: SIM115
        )
        sub_args: dict[str, Any] = {
            **common, "group": f"{names.prefix}nanjing", "store": str(workdir / "sub.db"),
            "ready": str(workdir / "sub.ready"), "first": str(workdir / "sub.first"),
            "done": str(workdir / "pub.done"), "out": str(workdir / "sub.json"), "idle": 3.0,
        }
        subscriber = _role("subscriber", sub_args, workdir / "subscriber.log")
        publisher = None
        try:
            _wait(Path(sub_args["ready"]), subscriber, 120, "the subscriber")
            try:
                wait_until_routing(conn, f"{names.prefix}router", names.raw(RESOURCE),
                                   lambda: router.poll() is None)
            except RouterNotReady as exc:
                raise click.ClickException(str(exc)) from None
            startup = time.monotonic() - began
            pub_args: dict[str, Any] = {**common, "rate": rate, "duration": duration,
                        "start_at": time.time() + 2.0, "spool": str(workdir / "pub.db"),
                        "out": str(workdir / "pub.json")}
            publisher = _role("publisher", pub_args, workdir / "publisher.log")
            publisher.wait(duration + 180)
            Path(sub_args["done"]).write_text("1")
            subscriber.wait(duration + 120)
        finally:
            _stop(*(p for p in (publisher, subscriber, router) if p is not None))
        if not Path(sub_args["out"]).exists() or not Path(pub_args["out"]).exists():
            raise click.ClickException(f"a process of the run wrote no result; see {workdir}")
        published = json.loads(Path(pub_args["out"]).read_text())["published"]
        seen = json.loads(Path(sub_args["out"]).read_text())["seen"]
    return _figures(rate, warmup, pub_args["start_at"], published, seen, startup)


def _figures(rate: float, warmup: float, start: float, published: list[Any],
             seen: list[Any], startup: float) -> dict[str, Any]:
    ids = {event_id for event_id, _ in published}
    mine = [s for s in seen if s[0] in ids]
    delivered = {s[0] for s in mine}
    total = [handled - occurred for _, handled, occurred, _, _ in mine]
    first = [h - o for _, h, o, _, _ in mine if o - start < warmup]
    steady = [h - o for _, h, o, _, _ in mine if o - start >= warmup]
    stages = {
        "publisher": _percentiles([p - o for _, _, o, p, _ in mine]),
        "router": _percentiles([r - p for _, _, _, p, r in mine if r]),
        "share_to_handler": _percentiles([h - r for _, h, _, _, r in mine if r]),
    }
    whole = _percentiles(total)
    return {
        "benchmark": "latency", "rate": rate, "published": len(ids),
        "delivered": len(delivered), "missing": len(ids - delivered),
        "p50_ms": whole.get("p50_ms"), "p99_ms": whole.get("p99_ms"),
        "p999_ms": whole.get("p999_ms"), "max_ms": whole.get("max_ms"),
        "first_seconds": {"seconds": warmup, **_percentiles(first)},
        "steady": _percentiles(steady), "stages": stages, "startup_s": round(startup, 2),
    }


@click.command("latency")
@click.option("--rate", default=2000.0, show_default=True, help="Events offered per second.")
@click.option("--duration", default=30.0, show_default=True, help="Seconds of offered load.")
@click.option("--warmup", default=5.0, show_default=True,
              help="The first seconds, reported apart (and included in the headline).")
@click.option("--bootstrap", default=None, help="Default SYNCBUS_BOOTSTRAP, then the local broker.")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the results.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the run's logs, stores and results in this directory.")
def command(rate: float, duration: float, warmup: float, bootstrap: str | None,
            as_json: bool, keep: Path | None) -> None:
    """End-to-end latency, a department's change to a city's handler, at a fixed rate."""
    if rate <= 0 or duration <= 0:
        raise click.UsageError("--rate and --duration must be above 0")
    conn = Connection.from_env(bootstrap)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    workdir = (contextlib.nullcontext(tempfile.mkdtemp(prefix="run-", dir=keep)) if keep
               else tempfile.TemporaryDirectory(prefix="syncbus-bench-latency-"))
    with workdir as tmp:
        try:
            result = measure(conn, rate, duration, warmup, Path(tmp))
        except click.ClickException:
            for log in sorted(Path(tmp).glob("*.log")):
                tail = log.read_bytes()[-1500:].decode(errors="replace")
                click.echo(f"--- {log.name} ---\n{tail}", err=True)
            raise
    click.echo(f"offered {rate:,.0f} ev/s for {duration:.0f} s; router and subscriber ready "
               f"after {result['startup_s']} s")
    click.echo(f"published {result['published']}, delivered {result['delivered']}, "
               f"missing {result['missing']}")
    click.echo(f"{'':<20}{'p50 ms':>10}{'p99 ms':>10}{'p99.9 ms':>10}{'max ms':>10}")
    rows = [("whole run", result), (f"first {warmup:g} s", result["first_seconds"]),
            ("steady", result["steady"])]
    rows += [(f"stage {k}", v) for k, v in result["stages"].items()]
    for name, row in rows:
        click.echo(f"{name:<20}{row.get('p50_ms', '-'):>10}{row.get('p99_ms', '-'):>10}"
                   f"{row.get('p999_ms', '-'):>10}{row.get('max_ms', '-'):>10}")
    if as_json:
        click.echo(json.dumps(result))
    if result["missing"]:
        raise SystemExit(1)

