"""``syncbus monitor``: the sharing SLAs of every route, measured live from the central side.

Reads offsets, committed offsets, the newest records and the dead-letter topics from
the brokers every ``--interval`` seconds; serves ``/metrics`` (``syncbus_route_*``,
``syncbus_sla_ok``), the status page ``/`` and its JSON ``/api/routes``.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click


@click.command()
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (SYNCBUS_BOOTSTRAP).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9308,
    show_default=True,
    help="HTTP port (0: a free one, printed).",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 3600),
    default=5.0,
    show_default=True,
    help="Seconds between two reads of the cluster.",
)
@click.option(
    "--router-group",
    default="syncbus-router",
    show_default=True,
    help="The routers' --id: its consumer group tells whether a router is up.",
)
@click.option("--topic-prefix", default="", help="Prefix of every topic (benchmarks, tests).")
@click.option("--loglevel", default="WARNING", show_default=True)
def monitor(
    bootstrap: str | None,
    host: str,
    port: int,
    interval: float,
    router_group: str,
    topic_prefix: str,
    loglevel: str,
) -> None:
    """Measure every route's SLA live; serve Prometheus metrics and a status page."""
    from confluent_kafka import KafkaException
    from prometheus_client import CollectorRegistry

    from syncbus.admin.names import TopicNames
    from syncbus.connection import Connection
    from syncbus.monitor.exporter import MonitorCollector
    from syncbus.monitor.monitor import Monitor
    from syncbus.monitor.server import serve

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        meter = Monitor(Connection.from_env(bootstrap), TopicNames(topic_prefix), router_group)
    except (RuntimeError, KafkaException) as exc:
        raise click.ClickException(f"cannot read the bus: {exc}") from exc
    registry = CollectorRegistry()
    registry.register(MonitorCollector(meter))
    try:
        server = serve(meter, registry, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror}") from exc
    bound = server.server_address[1]
    click.echo(
        f"syncbus monitor: status page http://{host}:{bound}/ metrics http://{host}:{bound}/metrics",
        err=True,
    )
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop.is_set():
            try:
                meter.cycle()
            except KafkaException as exc:  # the cluster is away: keep serving the last figures
                logging.getLogger("syncbus.monitor").warning("cycle skipped: %s", exc)
            except Exception:  # a monitor that stops hides every SLA: log it, go on
                logging.getLogger("syncbus.monitor").exception(
                    "cycle failed; next one in %ss", interval
                )
            stop.wait(interval)
    finally:
        server.shutdown()
        meter.close()
