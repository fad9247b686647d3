"""``syncbus dlq``: what the router dead-lettered, and replaying it once fixed."""

from __future__ import annotations

import click

from syncbus.cli.options import login_options


@click.group(name="dlq")
def dlq() -> None:
    """Dead letters of the router (syncbus.dlq, syncbus.quarantine)."""


@dlq.command(name="redrive")
@login_options
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (default: local broker).")
@click.option("--topic-prefix", default="", help="Prefix of every topic (benchmarks, tests).")
@click.option("--timeout", type=click.FloatRange(1, 600), default=30.0, show_default=True,
              help="Seconds to wait for the policy and the quarantine to be read.")
def redrive(bootstrap: str | None, topic_prefix: str, timeout: float) -> None:
    """Route again the dead-lettered events whose cause is fixed.

    Every event the router dead-lettered is kept as it was read in
    syncbus.quarantine (readable by the admin principal only; syncbus.dlq holds
    its origin, reason and masked record). For each, this asks the routing
    engine, with the live policy and schemas, whether it would route now (after
    `syncbus apply` registered its missing schema, for example). Those that would
    are written again to their raw topic, where the router routes them, and are
    then removed from the quarantine. Those that still fail stay there, counted
    by reason in the report, for a later run.

    Idempotent: a second run replays nothing the first one replayed. If a run is
    interrupted between the two steps, the next one may replay an event again;
    subscribers drop duplicates by event id. Run it as the admin principal.
    """
    from syncbus.admin.names import TopicNames
    from syncbus.connection import Connection
    from syncbus.router.redrive import redrive as run_redrive

    try:
        report = run_redrive(Connection.from_env(bootstrap), TopicNames(topic_prefix), timeout)
    except (RuntimeError, TimeoutError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for line in report.lines():
        click.echo(line)
