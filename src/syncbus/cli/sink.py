"""``syncbus sink``: keep a subscriber's share as tables in its own database."""

from __future__ import annotations

import click

from syncbus.admin.names import TopicNames
from syncbus.cli.options import check_access, login_options
from syncbus.connection import Connection
from syncbus.core.problems import redact_url
from syncbus.subscriber.store import StoreUnavailable


@click.command("sink")
@login_options
@click.option("--as", "subscriber_id", required=True, help="Subscriber id, e.g. city.nanjing.")
@click.option(
    "--to",
    "database",
    required=True,
    help="sqlite:///path.db (a bare path means SQLite) or postgresql://user@host:port/db.",
)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="Resource id (repeatable); default: every resource the live policy grants it.",
)
@click.option("--group", default=None, help="Consumer group (default <subscriber>.sink).")
@click.option("--max", "max_events", type=int, default=None, help="Stop after N events.")
@click.option("--timeout", type=float, default=None, help="Stop after S seconds without events.")
@click.option("--topic-prefix", default="", help="Prefix of every topic (benchmarks, tests).")
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (SYNCBUS_BOOTSTRAP).")
def sink(
    subscriber_id: str,
    database: str,
    resources: tuple[str, ...],
    group: str | None,
    max_events: int | None,
    timeout: float | None,
    topic_prefix: str,
    bootstrap: str | None,
) -> None:
    """Upsert on key, delete on DELETE: one table per resource, equal to the share.

    Rows take only newer versions; a full resync's end drops what the share lost
    (README: "Versions and resyncs"); each resync's begin and completion are echoed."""
    from syncbus.sink import run_sink
    from syncbus.sink.grants import granted_resources

    connection = Connection.from_env(bootstrap)
    try:
        chosen = list(resources) or granted_resources(connection, subscriber_id, topic_prefix)
    except (ValueError, KeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sink {subscriber_id} -> {redact_url(database)}: {', '.join(chosen)}", err=True)
    shares = [TopicNames(topic_prefix).share(subscriber_id, r) for r in chosen]
    check_access(connection, read=shares, group=group or f"{subscriber_id}.sink")
    try:
        applied = run_sink(
            subscriber_id,
            database,
            chosen,
            connection=connection,
            group_id=group,
            max_events=max_events,
            idle_timeout=timeout,
            topic_prefix=topic_prefix,
            on_resync_begin=lambda info: click.echo(
                f"resync {info.resync} of {info.resource} ({info.kind}) began", err=True
            ),
            on_resync_end=lambda info: click.echo(
                f"resync {info.resync} of {info.resource} ({info.kind}) complete", err=True
            ),
        )
    except KeyboardInterrupt:
        return
    except (StoreUnavailable, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"applied {applied} events", err=True)
