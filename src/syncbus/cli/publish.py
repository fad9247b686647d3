"""``syncbus publish``: publish a file of JSON-lines changes as a department.

Each line is one change (``{"op": "UPDATE", "before": {...}, "after": {...}}``,
optional ``occurred_at``). Good lines are published, each bad line is reported
by number with the field and reason, and the exit code says whether any line was
refused (1) or events are still spooled because the broker did not confirm them
in time (3); they are sent by the next run on the same spool.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from syncbus import settings
from syncbus.cli.options import check_access, login_options
from syncbus.connection import Connection
from syncbus.core.catalog import BusDefinitionError, load_bus
from syncbus.core.topics import raw_topic
from syncbus.publisher import ChangeRejected, Publisher, PublishError
from syncbus.publisher.changes import Change

CHUNK = 5000
PROGRESS_MIN_BYTES = 1 << 20


def _lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


def _size(stream: IO[str]) -> int:
    try:
        return os.fstat(stream.fileno()).st_size if stream.seekable() else 0
    except (OSError, ValueError):
        return 0


class Run:
    """One run's counts, and the reporting of rejected lines."""

    def __init__(self, publisher: Publisher, resource: str) -> None:
        self.publisher = publisher
        self.resource = resource
        self.writer = publisher.writer(resource)
        self.accepted = 0
        self.rejected = 0
        self._refused: list[tuple[int, str]] = []

    def refuse(self, number: int, reason: str) -> None:
        self.rejected += 1
        self._refused.append((number, reason))

    def chunk(self, lines: list[tuple[int, str]]) -> None:
        numbers: list[int] = []
        changes: list[Change] = []
        for number, line in lines:
            try:
                changes.append(self.writer.from_json(json.loads(line)))
                numbers.append(number)
            except json.JSONDecodeError as exc:
                self.refuse(number, f"not JSON: {exc}")
            except ChangeRejected as exc:
                self.refuse(number, "; ".join(str(e) for e in exc.errors))

        def on_reject(index: int, exc: ChangeRejected) -> None:
            self.refuse(numbers[index], "; ".join(str(e) for e in exc.errors))

        ids = self.publisher.publish_many(self.resource, changes, on_reject=on_reject)
        self.accepted += len(ids)
        for number, reason in sorted(self._refused):
            click.echo(f"line {number}: {reason}", err=True)
        self._refused.clear()


@click.command("publish")
@login_options
@click.option("--as", "department", required=True, help="Publishing department id.")
@click.option("--resource", required=True, help="Catalog resource id, e.g. legal.company.")
@click.option("--file", "file", type=click.File("r", encoding="utf-8"), default=None,
              help="JSON lines to publish; '-' or no file reads standard input.")
@click.argument("stdin_marker", required=False, type=click.Choice(["-"]), metavar="[-]")
@click.option("--bootstrap", default=None, help="Kafka bootstrap; default SYNCBUS_BOOTSTRAP, "
              "then the local broker.")
@click.option("--spool", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Spool file (default ~/.local/state/syncbus/spool/<department>.db).")
@click.option("--streams", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: settings.get("streams"), show_default="streams")
@click.option("--schemas", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: settings.get("schemas"), show_default="schemas")
@click.option("--timeout", default=60.0, show_default=True,
              help="Seconds to wait for the broker to confirm everything.")
def publish(
    department: str, resource: str, file: IO[str] | None, stdin_marker: str | None,
    bootstrap: str | None, spool: Path | None, streams: Path, schemas: Path, timeout: float,
) -> None:
    """Publish JSON-lines changes of RESOURCE as department --as."""
    try:
        bus = load_bus(streams, schemas)
    except BusDefinitionError as exc:
        raise click.ClickException(f"the bus definition has problems:\n{exc}") from exc
    stream = file or sys.stdin
    connection = Connection.from_env(bootstrap)
    check_access(connection, write=[raw_topic(resource)] if resource in bus.resources else [])
    try:
        publisher = Publisher(department, bus, connection, spool_path=spool)
    except PublishError as exc:
        raise click.ClickException(str(exc)) from exc
    with publisher:
        try:
            run = Run(publisher, resource)
        except (PublishError, KeyError) as exc:
            raise click.ClickException(str(exc)) from exc
        _feed(run, stream)
        left = publisher.flush(timeout)
    delivered = max(run.accepted - left, 0)
    click.echo(f"accepted {run.accepted}, rejected {run.rejected}, delivered {delivered}")
    if left:
        click.echo(f"{left} events are still spooled in {publisher.spool.path}; "
                   "the next run on this spool sends them", err=True)
    if run.rejected:
        sys.exit(1)
    if left:
        sys.exit(3)


def _feed(run: Run, stream: IO[str]) -> None:
    size = _size(stream)
    bar = None
    if size >= PROGRESS_MIN_BYTES and sys.stderr.isatty():
        bar = click.progressbar(length=size, label="publishing", file=sys.stderr)
    chunk: list[tuple[int, str]] = []
    done = 0
    for number, line in _lines(stream):
        chunk.append((number, line))
        if bar is not None:
            done += len(line.encode())
        if len(chunk) >= CHUNK:
            run.chunk(chunk)
            chunk = []
            if bar is not None:
                bar.update(done - bar.pos)
    if chunk:
        run.chunk(chunk)
    if bar is not None:
        bar.update(size - bar.pos)
        bar.render_finish()
