"""``syncbus kafka start | stop | status``: the local single-node Apache Kafka."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from syncbus import settings
from syncbus.localkafka import broker

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
    """A local single-node Apache Kafka 4.x (KRaft) from Maven Central.

    \b
    syncbus kafka start --port 0 --dir /tmp/k   # prints the bootstrap address last
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
def start(dir_: Path, port: int | None, cache: Path, timeout: float, secure: bool | None,
          tls: bool | None) -> None:
    """Start the broker in the background; the last line printed is its address.

    A directory once started --secure stays secure on later starts.
    """
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
        from syncbus.core.access import ADMIN
        from syncbus.localkafka.secure import admin_password_file, ca_file

        click.echo(f"secure: SASL/SCRAM-SHA-512{' over TLS' if info.tls else ''}; admin: "
                   f"--user {ADMIN} --password-file {admin_password_file(info.dir)}"
                   + (f"; CA: {ca_file(info.dir)}" if info.tls else ""), err=True)
    click.echo(info.address)


@kafka.command()
@_dir_option
def stop(dir_: Path) -> None:
    """Stop the broker of --dir (SIGTERM, then SIGKILL after 30 s)."""
    if broker.stop(dir_):
        click.echo(f"stopped the broker in {dir_.resolve()}")
    else:
        click.echo(f"no broker running in {dir_.resolve()}")


@kafka.command()
@_dir_option
def status(dir_: Path) -> None:
    """Say whether the broker of --dir runs; exit 0 if it does, 1 if not."""
    info = broker.status(dir_.resolve())
    if info is None or info.pid is None:
        click.echo(f"not running ({dir_.resolve()})")
        sys.exit(1)
    click.echo(f"running in {info.dir} (pid {info.pid})")
    click.echo(info.address)
