"""``syncbus router``: one router worker in the foreground (run several to share partitions)."""

from __future__ import annotations

from pathlib import Path

import click

from syncbus import settings
from syncbus.cli.options import check_access, login_options
from syncbus.router import DEFAULT_MAX_CONSECUTIVE_DEAD, RESYNC_CHUNK, RESYNC_REST


def _default_workdir() -> str:
    return str(Path(settings.get("kafka_dir")).parent / "router")


@click.command(name="router")
@login_options
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (default: local broker).")
@click.option(
    "--secrets",
    "secrets_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="JSON/YAML {subscriber: secret} for keyed tokens (else SYNCBUS_TOKEN_SECRETS).",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=_default_workdir,
    help="Faust's data directory.",
)
@click.option(
    "--id",
    "app_id",
    default="syncbus-router",
    show_default=True,
    help="Faust app id; workers with the same id share the partitions.",
)
@click.option("--topic-prefix", default="", help="Prefix of every topic (benchmarks, tests).")
@click.option("--batch", type=click.IntRange(1, 100_000), default=5000, show_default=True)
@click.option(
    "--replication",
    type=click.IntRange(1, 10),
    default=None,
    help="Replication of the router's own changelog topic. [default: one per broker, "
    "at most 3]",
)
@click.option(
    "--max-consecutive-dead",
    type=click.IntRange(1),
    default=DEFAULT_MAX_CONSECUTIVE_DEAD,
    show_default=True,
    help="Stop (before acking) when this many valid events in a row fail to route: "
    "a broken router. Bad input never counts: it is dead-lettered and quarantined.",
)
@click.option("--resync-chunk", type=click.IntRange(1), default=RESYNC_CHUNK, show_default=True,
              help="Records a resync reads and sends at a time (issue #17).")
@click.option("--resync-rest", type=click.FloatRange(0), default=RESYNC_REST, show_default=True,
              help="After each resync chunk, rest this many times the chunk's own time, so "
              "live routing keeps its latency.")
@click.option("--resync-pause", type=click.FloatRange(0), default=0.0, show_default=True,
              help="And this many seconds more (tests slow a resync down with it).")
@click.option("--metrics-port", type=int, default=0, help="Serve Prometheus metrics (0: off).")
@click.option("--loglevel", default="WARNING", show_default=True)
def router(
    bootstrap: str | None,
    secrets_file: Path | None,
    workdir: Path,
    app_id: str,
    topic_prefix: str,
    batch: int,
    replication: int | None,
    max_consecutive_dead: int,
    resync_chunk: int,
    resync_rest: float,
    resync_pause: float,
    metrics_port: int,
    loglevel: str,
) -> None:
    """Route raw events to subscribers under the live policy of syncbus.policy."""
    from prometheus_client import REGISTRY, start_http_server

    from syncbus.admin.names import TopicNames
    from syncbus.connection import Connection
    from syncbus.router.app import RouterConfig, run
    from syncbus.router.resync import Pacing
    from syncbus.router.secrets import MissingSecret, SecretsError, TokenSecrets

    # Faust creates only the last level of its data directory, and resolves a relative
    # one against its own idea of the current directory: give it an absolute, existing one.
    workdir = workdir.expanduser().resolve()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"cannot create the router work directory {workdir}: {exc.strerror}; "
            "pass a writable --workdir"
        ) from exc
    try:
        secrets = TokenSecrets.load(secrets_file)
    except SecretsError as exc:
        raise click.ClickException(str(exc)) from None
    connection = Connection.from_env(bootstrap)
    check_access(connection, read=[TopicNames(topic_prefix).policy])
    config = RouterConfig(
        connection=connection,
        secrets=secrets,
        workdir=workdir,
        app_id=app_id,
        names=TopicNames(topic_prefix),
        batch_size=batch,
        replication=replication,
        max_consecutive_dead=max_consecutive_dead,
        loglevel=loglevel,
        resync=Pacing(resync_chunk, resync_rest, resync_pause),
    )
    if metrics_port:
        start_http_server(metrics_port, registry=REGISTRY)
    try:
        run(config, REGISTRY)
    except (MissingSecret, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
