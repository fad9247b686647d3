"""``syncbus resync --as SUBSCRIBER --resource R``: resend a subscriber's whole share.

A city that lost its database asks for a ``full`` resync (contract §4): every key of
its current share as a SNAPSHOT between begin and end markers, after which its sink
drops the rows the resync did not send.

The command does not run the resync itself: it checks the request against the live
policy (``syncbus.policy``) and writes a job to ``syncbus.resync``, which the router
worker owning the resource runs like any other. Why through the router: the router
holds the subscribers' token secrets (keyed tokens are part of the view; an admin
shell must not need them), its resync is paced beside live routing, resumable after
a crash, and never runs twice beside itself; a second runner in a shell would have
none of that. ``--wait`` follows the job to its end and prints its audit record.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from typing import NoReturn

import click

from syncbus.cli.options import EXIT_REFUSED, login_options


def _refuse(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_REFUSED)


@click.command(name="resync")
@login_options
@click.option("--as", "subscriber", required=True, help="The subscriber whose share is resent.")
@click.option("--resource", required=True, help="The resource id, e.g. population.resident.")
@click.option("--bootstrap", default=None, help="Kafka bootstrap servers (default: local broker).")
@click.option("--topic-prefix", default="", help="Prefix of every topic (benchmarks, tests).")
@click.option("--wait", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds to wait for the router to finish it (0: return once requested).")
def resync(subscriber: str, resource: str, bootstrap: str | None, topic_prefix: str,
           wait: float) -> None:
    """Ask the router to resend SUBSCRIBER's whole current share of RESOURCE."""
    from confluent_kafka import Producer

    from syncbus.admin.compacted import read_compacted
    from syncbus.admin.names import TopicNames
    from syncbus.connection import Connection
    from syncbus.core.entitlement import effective_grant
    from syncbus.core.policy import RoutingTable, bus_from_records
    from syncbus.router.resync_jobs import DONE, JOB, ResyncJob, request_id

    names = TopicNames(topic_prefix)
    connection = Connection.from_env(bootstrap)
    try:
        bus = bus_from_records(read_compacted(connection, names.policy))
    except ValueError as exc:
        _refuse(str(exc))
    if subscriber not in bus.subscribers:
        _refuse(f"unknown subscriber {subscriber!r}: the bus declares "
                f"{', '.join(sorted(bus.subscribers))} (streams/subscribers.yaml)")
    if resource not in bus.resources:
        _refuse(f"unknown resource {resource!r}: the bus declares "
                f"{', '.join(sorted(bus.resources))} (streams/resources.yaml)")
    now = datetime.now(UTC)
    grant = effective_grant(RoutingTable(bus), subscriber, resource, now)
    if grant is None:
        _refuse(f"{subscriber} has no grant in force on {resource} (none, pending, not "
                f"approved by the owner, or expired): it has no share to resend; grant it "
                f"in streams/grants.yaml and run `syncbus apply`")
    scoped = dataclasses.replace(grant, regions=bus.scopes(grant))  # as routed now
    job = ResyncJob.of(request_id(), subscriber, resource, "full", "request", "requested",
                       scoped, scoped, now, now, True, now)
    producer = Producer(connection.confluent(**{"enable.idempotence": True, "acks": "all"}))
    producer.produce(names.resync, job.to_bytes(), (JOB + job.id).encode())
    if producer.flush(60) > 0:
        _refuse(f"the broker did not confirm the request in {names.resync} within 60 s")
    click.echo(f"resync {job.id} requested: the whole share of {resource} for {subscriber}")
    if not wait:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        done = read_compacted(connection, names.resync).get(DONE + job.id)
        if done is not None:
            click.echo(json.dumps(json.loads(done), ensure_ascii=False))
            return
        time.sleep(1.0)
    click.echo(f"error: resync {job.id} not finished within {wait:g} s (is a router "
               "running?); it stays requested", err=True)
    sys.exit(1)
