"""``syncbus kafka start | stop | status``: the local Apache Kafka, one node or a cluster."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from syncbus import settings
from syncbus.localkafka import broker, cluster

DIR_HELP = "Broker directory: data, logs, pid. [env SYNCBUS_KAFKA_DIR]"
F = TypeVar("F", bound=Callable[..., Any])


def _dir_option(func: F) -> F:
    return click.option(
        "--dir", "dir_", type=click.Path(file_okay=False, path_type=Path),
        default=lambda: settings.get("kafka_dir"), show_default="per-user state dir",
        help=DIR_HELP,
    )(func)


@click.group()
def kafka() -> None:
    """A local Apache Kafka 4.x (KRaft) from Maven Central: one node, or a cluster.

    \b
    syncbus kafka start --port 0 --dir /tmp/k   # prints the bootstrap address last
    syncbus kafka start --nodes 3 --dir /tmp/c  # three nodes, replication 3, min ISR 2
    syncbus kafka status --dir /tmp/k
    syncbus kafka stop --dir /tmp/k
    """


@kafka.command()
@_dir_option
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Client port; 0 picks a free one. [default: the dir's last port, else 9092]")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: settings.get("kafka_cache"), show_default="~/.cache/syncbus/kafka",
              help="Where the Kafka jars are cached. [env SYNCBUS_KAFKA_CACHE]")
@click.option("--timeout", type=float, default=broker.READY_TIMEOUT_S, show_default=True,
              help="Seconds to wait for the broker to answer.")
@click.option("--secure", is_flag=True, default=None,
              help="SASL/SCRAM logins and ACLs; the admin's password goes to <dir>/admin.password.")
@click.option("--tls", is_flag=True, default=None,
              help="--secure over TLS, with a CA and broker certificate made in <dir>/tls.")
@click.option("--nodes", type=int, default=None,
              help="3: a replicated cluster of three nodes (three JVMs, each in <dir>/node-N "
              "with ports of its own; replication 3, min.insync.replicas 2). "
              "[default: the dir's, else 1]")
def start(dir_: Path, port: int | None, cache: Path, timeout: float, secure: bool | None,
          tls: bool | None, nodes: int | None) -> None:
    """Start the broker in the background; the last line printed is its address.

    A directory once started --secure stays secure on later starts.
    """
    if nodes is None:
        nodes = 3 if cluster.is_cluster(dir_) else 1
    if nodes != 1 or cluster.is_cluster(dir_):
        _start_cluster(dir_, nodes, port, cache, timeout, bool(secure), bool(tls))
        return
    try:
        info, already = broker.start(dir_, port, cache, timeout,
                                     echo=lambda m: click.echo(m, err=True),
                                     secure_mode=secure, tls=tls)
    except broker.BrokerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if already:
        click.echo(f"already running in {info.dir} (pid {info.pid})", err=True)
    else:
        click.echo(f"Kafka {broker.KAFKA_VERSION} started in {info.dir} (pid {info.pid}); "
                   f"log: {info.dir / 'logs' / 'server.log'}", err=True)
    if info.secure:
        _echo_login(info.dir, info.tls)
    click.echo(info.address)


def _start_cluster(dir_: Path, nodes: int, port: int | None, cache: Path, timeout: float,
                   secure: bool, tls: bool) -> None:
    if port not in (None, 0):
        click.echo("error: --port names one port; a cluster picks a free one per node "
                   "(leave --port out)", err=True)
        sys.exit(2)
    try:
        info, already = cluster.start(dir_, nodes, cache, max(timeout, cluster.READY_TIMEOUT_S),
                                      echo=lambda m: click.echo(m, err=True),
                                      secure_mode=secure, tls=tls)
    except broker.BrokerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    state = "already running" if already else f"Kafka {broker.KAFKA_VERSION} started"
    for n, node in enumerate(info.nodes, start=1):
        click.echo(f"{state}: node {n} at {node.address} (pid {node.pid}; "
                   f"log: {node.dir / 'logs' / 'server.log'})", err=True)
    if info.secure:
        _echo_login(info.dir, info.tls)
    click.echo(info.bootstrap)


def _echo_login(dir_: Path, tls: bool) -> None:
    """How to log in as the admin: the same files for one broker and for a cluster."""
    from syncbus.core.access import ADMIN
    from syncbus.localkafka.secure import admin_password_file, ca_file

    click.echo(f"secure: SASL/SCRAM-SHA-512{' over TLS' if tls else ''}; admin: "
               f"--user {ADMIN} --password-file {admin_password_file(dir_)}"
               + (f"; CA: {ca_file(dir_)}" if tls else ""), err=True)


@kafka.command()
@_dir_option
def stop(dir_: Path) -> None:
    """Stop the broker (or every node of the cluster) of --dir."""
    if cluster.is_cluster(dir_):
        stopped = cluster.stop(dir_)
        click.echo(f"stopped the cluster in {dir_.resolve()}" if stopped
                   else f"no node running in {dir_.resolve()}")
        return
    if broker.stop(dir_):
        click.echo(f"stopped the broker in {dir_.resolve()}")
    else:
        click.echo(f"no broker running in {dir_.resolve()}")


@kafka.command()
@_dir_option
def status(dir_: Path) -> None:
    """Say whether the broker of --dir runs; exit 0 if it does (a cluster: every node),
    1 if not."""
    if cluster.is_cluster(dir_):
        found = cluster.status(dir_.resolve())
        if found is None or not found.running:
            click.echo(f"not running ({dir_.resolve()})")
            sys.exit(1)
        for n, node in enumerate(found.nodes, start=1):
            state = f"running (pid {node.pid})" if node.pid else "DOWN"
            click.echo(f"node {n} at {node.address}: {state}")
        click.echo(found.bootstrap)
        sys.exit(0 if len(found.running) == len(found.nodes) else 1)
    info = broker.status(dir_.resolve())
    if info is None or info.pid is None:
        click.echo(f"not running ({dir_.resolve()})")
        sys.exit(1)
    click.echo(f"running in {info.dir} (pid {info.pid})")
    click.echo(info.address)
