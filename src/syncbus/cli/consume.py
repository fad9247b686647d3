"""``syncbus consume``: print what one subscriber receives, for operators and scripts.

It reads through the Subscriber SDK with a consumer group of its own under the
subscriber's prefix and an in-memory dedupe store, so looking at a share never
moves the offsets of the subscriber's real application.
"""

from __future__ import annotations

import contextlib
import json
import uuid

import click

from syncbus.admin.names import TopicNames
from syncbus.cli.options import check_access, login_options
from syncbus.connection import Connection
from syncbus.core.regions import region_name
from syncbus.subscriber import Event, Subscriber


def human(event: Event) -> str:
    """One readable line: op, resource, key, region (with its name), the record."""
    region = event.region or "-"
    try:
        place = region_name(region) if event.region else ""
    except (KeyError, ValueError):
        place = ""
    record = json.dumps(
        event.to_json()["after" if event.op != "DELETE" else "before"], ensure_ascii=False
    )
    return (
        f"{event.occurred_at:%Y-%m-%d %H:%M:%S} {event.op:<9} {event.resource} "
        f"key={event.key} region={region}{f' ({place})' if place else ''} "
        f"delivery={event.delivery_sequence} {record}"
    )


@click.command("consume")
@login_options
@click.option("--as", "subscriber_id", required=True, help="Subscriber id, e.g. city.nanjing.")
@click.option(
    "--resource",
    "resources",
    multiple=True,
    required=True,
    help="Resource id (repeatable), e.g. population.resident.",
)
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained event.")
@click.option("--max", "max_events", type=int, default=None, help="Stop after N events.")
@click.option("--timeout", type=float, default=None, help="Stop after S seconds without events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (SYNCBUS_BOOTSTRAP).")
def consume(
    subscriber_id: str,
    resources: tuple[str, ...],
    from_beginning: bool,
    max_events: int | None,
    timeout: float | None,
    as_json: bool,
    bootstrap: str | None,
) -> None:
    """Print the events SUBSCRIBER receives on its share topics."""

    def show(event: Event) -> None:
        line = json.dumps(event.to_json(), ensure_ascii=False) if as_json else human(event)
        click.echo(line)

    connection = Connection.from_env(bootstrap)
    group = f"{subscriber_id}.consume-{uuid.uuid4().hex[:8]}"
    check_access(connection, read=[TopicNames().share(subscriber_id, r) for r in resources],
                 group=group)
    subscriber = Subscriber(
        subscriber_id,
        resources,
        connection=connection,
        group_id=group,
        store=":memory:",
        start="beginning" if from_beginning else "committed",
        consumer_config={} if from_beginning else {"auto.offset.reset": "latest"},
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a look, not an error
            subscriber.run(show, max_events=max_events, idle_timeout=timeout)
    finally:
        subscriber.close()
