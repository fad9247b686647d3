"""``syncbus demo``: the whole bus, live, on this machine.

The scenario: a local Kafka (the demo's own, unless ``--bootstrap`` names one),
``apply`` of a copy of ``streams/`` (so approving Wuxi never edits the
repository's), a router, the SLA monitor, one SQLite sink per subscriber, and the
departments publishing every resource (``demo.traffic``). Partway through, the
owner approves Wuxi's pending grant for residents and ``apply`` puts it in force:
Wuxi's sink, empty until then, fills. A table per route refreshes every two
seconds. Ctrl-C, or the end of ``--duration``, stops everything the demo started;
a bounded run ends with a summary and succeeds only when every route in force
delivered and Wuxi's sink filled after the approval.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from syncbus.admin.apply import AccessPlan, apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.model import Bus
from syncbus.credentials import read_secrets
from syncbus.demo.stack import Stack
from syncbus.demo.view import RouteFigures, Watcher, render
from syncbus.localkafka.broker import BrokerError
from syncbus.router.readiness import RouterNotReady, wait_until_routing

WUXI, RESIDENT = "city.wuxi", "population.resident"
ROUTER_ID = "syncbus-router-demo"  # the router principal owns ids starting syncbus-router
REFRESH_S = 2.0


@dataclass(frozen=True)
class DemoOptions:
    dir: Path
    streams: Path
    schemas: Path
    duration: float | None = None  # None: until Ctrl-C
    rate: float = 2.0  # events a second per resource, outside bursts
    approve_after: float | None = None  # default: half the duration, or 30 s
    bootstrap: str | None = None

    def approval_time(self) -> float:
        if self.approve_after is not None:
            return self.approve_after
        return self.duration / 2 if self.duration else 30.0


class Stopped(Exception):
    """SIGTERM: end as Ctrl-C does."""


def run_demo(options: DemoOptions, echo: Callable[[str], None] = print) -> int:
    """Run the scenario; the exit status (0: every route delivered, Wuxi filled)."""
    stack = Stack(options.dir)
    signal.signal(signal.SIGTERM, _raise_stopped)
    streams = options.dir / "streams"
    shutil.rmtree(streams, ignore_errors=True)  # each run starts from the shipped grants
    shutil.copytree(options.streams, streams)
    watcher: Watcher | None = None
    outcome: dict[str, Any] = {}
    failed = False
    try:
        bootstrap = options.bootstrap or stack.start_broker()
        logins = Logins(options.dir, stack.kafka_dir if options.bootstrap is None else None)
        echo(f"Kafka at {bootstrap}" + (" (SASL/SCRAM and ACLs: every part logs in as its "
                                        "own principal)" if logins.secure else ""))
        admin = logins.admin(bootstrap)
        bus = load_bus(streams, options.schemas)
        apply_bus(bus, admin, partitions=3, access=logins.access())
        monitor_url = _start(stack, options, bus, bootstrap, streams, logins)
        echo(f"status page: {monitor_url or '(the SLA monitor is not installed)'}")
        watcher = Watcher(admin, TopicNames(), options.dir / "sinks", monitor_url)
        context = _Context(options, stack, streams, bootstrap, admin, logins)
        outcome = _watch(context, bus, watcher, echo)
    except (KeyboardInterrupt, Stopped):
        echo("stopping ...")
    except (RouterNotReady, BrokerError) as exc:
        echo(f"error: {exc} (logs: {options.dir / 'logs'})")
        failed = True
    finally:
        if watcher is not None:
            watcher.close()
        stack.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if failed:
        return 1
    if not outcome or options.duration is None:
        return 0 if outcome or options.duration is None else 1
    return _summary(outcome, echo)


class Logins:
    """Who each part of the demo logs in as: on the demo's own secure broker, the
    admin (``apply``, the monitor, the view) with the broker's admin password, and
    every department, subscriber and the router as itself, with the password
    ``apply`` issued into ``<dir>/credentials.json``. Against ``--bootstrap``: none."""

    def __init__(self, directory: Path, kafka_dir: Path | None) -> None:
        self.credentials = directory / "credentials.json"
        self.kafka_dir = kafka_dir

    @property
    def secure(self) -> bool:
        return self.kafka_dir is not None

    def admin(self, bootstrap: str) -> Connection:
        if self.kafka_dir is None:
            return Connection(bootstrap)
        from syncbus.core.access import ADMIN
        from syncbus.localkafka.secure import admin_password

        return Connection(bootstrap, ADMIN, admin_password(self.kafka_dir))

    def access(self) -> AccessPlan:
        return AccessPlan(secrets_path=self.credentials)

    def env(self, principal: str) -> dict[str, str]:
        """The environment of a child that logs in as ``principal``."""
        if self.kafka_dir is None:
            return {}
        from syncbus.core.access import ADMIN
        from syncbus.localkafka.secure import admin_password_file

        if principal == ADMIN:
            return {"SYNCBUS_USER": ADMIN,
                    "SYNCBUS_PASSWORD_FILE": str(admin_password_file(self.kafka_dir))}
        return {"SYNCBUS_USER": principal, "SYNCBUS_CREDENTIALS": str(self.credentials)}


@dataclass
class _Context:
    options: DemoOptions
    stack: Stack
    streams: Path
    bootstrap: str
    admin: Connection
    logins: Logins


def _raise_stopped(*_: Any) -> None:
    raise Stopped()


def _start(stack: Stack, options: DemoOptions, bus: Bus, bootstrap: str,
           streams: Path, logins: Logins) -> str | None:
    """Router, monitor, sinks and departments; the monitor's URL when it runs."""
    from syncbus.core.access import ADMIN, ROUTER

    token_file = options.dir / "secrets.json"
    if not token_file.exists():
        token_file.write_text(json.dumps({s: secrets.token_hex(32) for s in bus.subscribers}))
        token_file.chmod(0o600)
    router = stack.spawn("router", "-m", "syncbus", "router", "--bootstrap", bootstrap,
                         "--id", ROUTER_ID, "--secrets", str(token_file),
                         "--workdir", str((options.dir / "router").resolve()),
                         env=logins.env(ROUTER))
    # the departments start once the router routes: its start-up is not the bus's latency
    wait_until_routing(logins.admin(bootstrap), ROUTER_ID, TopicNames().raw(RESIDENT),
                       router.alive, timeout=180)
    monitor_url = None
    with contextlib.suppress(ImportError):
        import syncbus.monitor  # noqa: F401  (the SLA monitor, where installed)
        from syncbus.localkafka.broker import free_port

        port = free_port()
        stack.spawn("monitor", "-m", "syncbus", "monitor", "--bootstrap", bootstrap,
                    "--port", str(port), "--interval", "2", "--router-group", ROUTER_ID,
                    env=logins.env(ADMIN))
        monitor_url = f"http://127.0.0.1:{port}/"
    (options.dir / "sinks").mkdir(parents=True, exist_ok=True)
    for subscriber in sorted(bus.subscribers):
        _start_sink(stack, options, bus, bootstrap, logins, subscriber)
    traffic = {"bootstrap": bootstrap, "streams": str(streams),
               "schemas": str(options.schemas), "rate": options.rate,
               "spools": str(options.dir / "spools"), "secure": logins.secure,
               "counts": str(options.dir / "published.json")}
    stack.spawn("departments", "-m", "syncbus.demo.traffic", json.dumps(traffic),
                env={"SYNCBUS_CREDENTIALS": str(logins.credentials)} if logins.secure else {})
    return monitor_url


def _start_sink(stack: Stack, options: DemoOptions, bus: Bus, bootstrap: str, logins: Logins,
                subscriber: str) -> None:
    """The subscriber's SQLite sink over the resources it holds a grant in force for
    (a pending grant's share is closed to it on a secure bus)."""
    now = datetime.now(UTC)
    resources = sorted({g.resource for g in bus.grants if g.subscriber == subscriber
                        and bus.resources[g.resource].sharing != "not_shared"
                        and g.effective(bus.resources[g.resource], now)})
    if resources:
        stack.spawn(f"sink-{subscriber}", "-m", "syncbus", "sink", "--as", subscriber,
                    "--to", str(options.dir / "sinks" / f"{subscriber}.db"),
                    "--group", subscriber, "--bootstrap", bootstrap,
                    *[arg for r in resources for arg in ("--resource", r)],
                    env=logins.env(subscriber))


def _routes(bus: Bus) -> list[tuple[str, str, str]]:
    now = datetime.now(UTC)
    return sorted(
        (g.subscriber, g.resource, "approved" if g.effective(bus.resources[g.resource], now)
         else g.state)
        for g in bus.grants if bus.resources[g.resource].sharing != "not_shared"
    )


def _watch(context: _Context, bus: Bus, watcher: Watcher,
           echo: Callable[[str], None]) -> dict[str, Any]:
    """Refresh the table until the end; approve Wuxi on the way. What the summary needs."""
    options = context.options
    start = time.monotonic()
    approved_at: float | None = None
    wuxi_before = 0
    notes = ["Ctrl-C stops everything the demo started."]
    if context.logins.secure:
        notes.append(_refusal(context, WUXI, RESIDENT))
        notes.append(_refusal(context, "city.nanjing", RESIDENT, other="city.suzhou"))
    live = sys.stdout.isatty()
    last_print = 0.0
    rows: list[RouteFigures] = []
    while options.duration is None or time.monotonic() - start < options.duration:
        elapsed = time.monotonic() - start
        if approved_at is None and elapsed >= options.approval_time():
            wuxi_before = _rows_of(watcher.figures(_routes(bus)), WUXI, RESIDENT)
            bus = _approve_wuxi(context)
            approved_at = elapsed
            notes.append(f"{elapsed:.0f} s: js-gaj approved Wuxi's grant for residents "
                         f"(Wuxi's sink held {wuxi_before} rows); apply put it in force")
        rows = watcher.figures(_routes(bus))
        if live:
            echo("\x1b[H\x1b[2J" + render(rows, elapsed, notes))
        elif elapsed - last_print >= 10:
            echo(render(rows, elapsed, notes[-1:]))
            last_print = elapsed
        time.sleep(REFRESH_S)
    time.sleep(REFRESH_S * 2)  # let the last events reach the sinks before counting
    rows = watcher.figures(_routes(bus))
    return {"rows": rows, "approved_at": approved_at, "wuxi_before": wuxi_before,
            "elapsed": time.monotonic() - start, "notes": notes}


def _refusal(context: _Context, subscriber: str, resource: str, other: str | None = None) -> str:
    """What the broker answers ``subscriber`` reading a share it may not read: its own
    under a pending grant, or ``other``'s."""
    from syncbus.cli.options import AccessRefused, check_access

    topic = TopicNames().share(other or subscriber, resource)
    passwords = read_secrets(context.logins.credentials)
    connection = Connection(context.bootstrap, subscriber, passwords[subscriber])
    try:
        check_access(connection, read=[topic])
    except AccessRefused as exc:
        return f"refused, as it must be: {exc}"
    return f"NOT REFUSED: {subscriber} may read {topic}"


def _rows_of(rows: list[RouteFigures], subscriber: str, resource: str) -> int:
    return next((r.rows or 0 for r in rows
                 if (r.subscriber, r.resource) == (subscriber, resource)), 0)


def _approve_wuxi(context: _Context) -> Bus:
    """What the owner does: approve the pending grant in streams/, then ``apply``; and
    Wuxi's sink now takes the residents its ACLs open to it."""
    path = context.streams / "grants.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for grant in document["grants"]:
        if (grant["subscriber"], grant["resource"]) == (WUXI, RESIDENT):
            grant.update(state="approved", approved_by="js-gaj")
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    bus = load_bus(context.streams, context.options.schemas)
    apply_bus(bus, context.admin, partitions=3, access=context.logins.access())
    context.stack.stop_child(f"sink-{WUXI}")
    _start_sink(context.stack, context.options, bus, context.bootstrap, context.logins, WUXI)
    return bus


def _summary(outcome: dict[str, Any], echo: Callable[[str], None]) -> int:
    rows: list[RouteFigures] = outcome["rows"]
    live = [r for r in rows if r.state == "approved"]
    silent = [f"{r.subscriber}/{r.resource}" for r in live if r.delivered == 0]
    wuxi_after = _rows_of(rows, WUXI, RESIDENT)
    filled = outcome["approved_at"] is not None and wuxi_after > outcome["wuxi_before"]
    echo(render(rows, outcome["elapsed"], outcome["notes"][1:]))
    echo(f"routes in force: {len(live)}, delivered: {len(live) - len(silent)}"
         + (f"; silent: {', '.join(silent)}" if silent else ""))
    if outcome["approved_at"] is None:
        echo("Wuxi's grant was not approved before the end (raise --duration)")
    else:
        echo(f"Wuxi's resident sink: {outcome['wuxi_before']} rows before the approval "
             f"at {outcome['approved_at']:.0f} s, {wuxi_after} at the end")
    ok = not silent and filled
    echo("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1
