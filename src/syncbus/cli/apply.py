"""``syncbus apply``: topics, live policy and schemas from ``streams/`` and ``schemas/``."""

from __future__ import annotations

from pathlib import Path

import click

from syncbus import settings
from syncbus.cli.options import check_access, login_options


@click.command(name="apply")
@login_options
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
@click.option("--replication", type=click.IntRange(1, 10), default=None,
              help="Copies of each new topic. [default: one per broker, at most 3]")
@click.option("--topic-prefix", default="", help="Prefix of every topic (benchmarks, tests).")
@click.option("--dry-run", is_flag=True, help="Print the user and ACL changes; change nothing.")
@click.option(
    "--secrets",
    "secrets_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: settings.get("credentials"),
    show_default="~/.local/state/syncbus/credentials.json",
    help="Passwords of the principals (JSON, mode 0600): new users get theirs here. "
    "[env SYNCBUS_CREDENTIALS]",
)
@click.option(
    "--rotate", multiple=True, help="Issue a new password to this principal (repeatable)."
)
def apply(
    streams_dir: Path,
    schemas_dir: Path,
    bootstrap: str | None,
    partitions: int,
    replication: int | None,
    topic_prefix: str,
    dry_run: bool,
    secrets_path: Path,
    rotate: tuple[str, ...],
) -> None:
    """Create missing topics, publish the policy and every raw event schema (idempotent).

    On a secure broker (run it as the admin: --user syncbus-admin) it also creates the
    SCRAM users of every department, subscriber and the router, and makes the ACLs
    equal to what streams/ grants, removing those of grants and principals gone.
    """
    from confluent_kafka import KafkaException

    from syncbus.admin.apply import AccessPlan, apply_bus
    from syncbus.admin.names import TopicNames
    from syncbus.connection import Connection
    from syncbus.core.catalog import load_bus
    from syncbus.core.problems import BusDefinitionError

    try:
        bus = load_bus(streams_dir, schemas_dir)
    except BusDefinitionError as exc:
        raise click.ClickException(f"the bus definition has problems:\n{exc}") from exc
    connection = Connection.from_env(bootstrap)
    check_access(connection)
    access = AccessPlan(secrets_path, tuple(rotate), dry_run)
    try:
        report = apply_bus(
            bus, connection, partitions, TopicNames(topic_prefix), replication, access
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except (RuntimeError, KafkaException) as exc:
        hint = ""
        if "_TIMED_OUT" in str(exc) or "controller" in str(exc).lower():
            hint = ("; the cluster's controllers did not answer: is a majority of its nodes "
                    "running? (syncbus kafka status --dir ...)")
        raise click.ClickException(f"apply stopped at {connection.describe()}: {exc}{hint}") \
            from None
    for line in report.lines(dry_run):
        click.echo(line)
