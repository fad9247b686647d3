"""``syncbus apply``: topics, live policy and schemas from ``streams/`` and ``schemas/``."""

from __future__ import annotations

from pathlib import Path

import click

from syncbus import settings


@click.command(name="apply")
@click.option(
    "--streams",
    "streams_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=lambda: settings.get("streams"),
    show_default="streams",
)
@click.option(
    "--schemas",
    "schemas_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=lambda: settings.get("schemas"),
    show_default="schemas",
)
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (default: local broker).")
@click.option(
    "--partitions",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Partitions of new raw, share, dead-letter and audit topics.",
)
@click.option("--replication", type=click.IntRange(1, 10), default=1, show_default=True)
@click.option("--topic-prefix", default="", help="Prefix of every topic (benchmarks, tests).")
def apply(
    streams_dir: Path,
    schemas_dir: Path,
    bootstrap: str | None,
    partitions: int,
    replication: int,
    topic_prefix: str,
) -> None:
    """Create missing topics, publish the policy and every raw event schema (idempotent)."""
    from syncbus.admin.apply import apply_bus
    from syncbus.admin.names import TopicNames
    from syncbus.connection import Connection
    from syncbus.core.catalog import load_bus
    from syncbus.core.problems import BusDefinitionError

    try:
        bus = load_bus(streams_dir, schemas_dir)
    except BusDefinitionError as exc:
        raise click.ClickException(f"the bus definition has problems:\n{exc}") from exc
    report = apply_bus(
        bus, Connection.from_env(bootstrap), partitions, TopicNames(topic_prefix), replication
    )
    for line in report.lines():
        click.echo(line)
