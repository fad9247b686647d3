"""``syncbus publish``: publish a file of JSON-lines changes as a department.

Each line is one change (``{"op": "UPDATE", "before": {...}, "after": {...}}``,
optional ``occurred_at``). Good lines are published, each bad line is reported
by number with the field and reason (an event over the size limit, too), and the
exit code says whether any line was refused (1) or events are still spooled
because the broker did not confirm them in time (3); they are sent by the next run
on the same spool. A line the broker refused for good (a topic with a smaller size
limit, a missing ACL or topic) is reported by number too; the spool keeps its event
(``Publisher.refused()``) and the lines after it are delivered.
"""

from __future__ import annotations

import json
import os
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from syncbus import settings
from syncbus.cli.options import CHECK_TIMEOUT_S, check_access, login_options
from syncbus.connection import Connection
from syncbus.core.catalog import BusDefinitionError, load_bus
from syncbus.core.topics import raw_topic
from syncbus.publisher import ChangeRejected, Publisher, PublishError
from syncbus.publisher.changes import Change
from syncbus.publisher.refused import RefusedEvent

CHUNK = 5000
PROGRESS_MIN_BYTES = 1 << 20


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


def _size(stream: IO[bytes]) -> int:
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
        # the line of each accepted event, by its sequence number: this run holds the
        # spool alone, so the numbers it is given are consecutive from here
        self._first_seq = publisher.sequence(resource) + 1
        self._line_of = array("l")

    def refuse(self, number: int, reason: str) -> None:
        self.rejected += 1
        self._refused.append((number, reason))

    def chunk(self, lines: list[tuple[int, bytes]]) -> None:
        numbers: list[int] = []
        changes: list[Change] = []
        for number, line in lines:
            try:  # bytes, so that a line that is not UTF-8 is refused alone
                parsed = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                self.refuse(number, f"not UTF-8 text (byte {exc.start + 1} of the line)")
                continue
            except (ValueError, RecursionError) as exc:  # also 5,000-digit and deep values
                self.refuse(number, f"not JSON: {_not_json(exc)}")
                continue
            try:
                changes.append(self.writer.from_json(parsed))
                numbers.append(number)
            except ChangeRejected as exc:
                self.refuse(number, "; ".join(str(e) for e in exc.errors))

        refused_at: set[int] = set()

        def on_reject(index: int, exc: ChangeRejected) -> None:
            refused_at.add(index)
            self.refuse(numbers[index], "; ".join(str(e) for e in exc.errors))

        try:
            ids = self.publisher.publish_many(self.resource, changes, on_reject=on_reject)
        except PublishError as exc:  # e.g. SpoolFull: nothing of the chunk was accepted
            ids = []
            for number in numbers:
                self.refuse(number, f"not accepted: {exc}")
        self.accepted += len(ids)
        if ids:
            self._line_of.extend(n for i, n in enumerate(numbers) if i not in refused_at)
        for number, reason in sorted(self._refused):
            click.echo(f"line {number}: {reason}", err=True)
        self._refused.clear()

    def line_of(self, event: RefusedEvent) -> str:
        """``line N`` of an event this run accepted, else its event id."""
        index = event.sequence - self._first_seq
        if event.resource == self.resource and 0 <= index < len(self._line_of):
            return f"line {self._line_of[index]}"
        return f"event {event.event_id}"


def _not_json(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return str(exc)
    return "a number with too many digits"  # int() refuses over 4,300 digits


@click.command("publish")
@login_options
@click.option("--as", "department", required=True, help="Publishing department id.")
@click.option("--resource", required=True, help="Catalog resource id, e.g. legal.company.")
@click.option("--file", "file", type=click.File("rb"), default=None,
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
@click.option("--resend-refused", is_flag=True,
              help="First queue again the events the broker refused for good (kept in "
              "the spool), once their cause is fixed; without --file or '-', read nothing.")
def publish(
    department: str, resource: str, file: IO[bytes] | None, stdin_marker: str | None,
    bootstrap: str | None, spool: Path | None, streams: Path, schemas: Path, timeout: float,
    resend_refused: bool,
) -> None:
    """Publish JSON-lines changes of RESOURCE as department --as."""
    try:
        bus = load_bus(streams, schemas)
    except BusDefinitionError as exc:
        raise click.ClickException(f"the bus definition has problems:\n{exc}") from exc
    stream = file or (None if resend_refused and not stdin_marker else sys.stdin.buffer)
    refused: list[RefusedEvent] = []  # appended to by the publisher's sending thread
    connection = Connection.from_env(bootstrap)
    check_access(connection, write=[raw_topic(resource)] if resource in bus.resources else [],
                 timeout=min(CHECK_TIMEOUT_S, timeout), unreachable_ok=True)
    try:
        publisher = Publisher(department, bus, connection, spool_path=spool,
                              on_refused=refused.extend)
    except PublishError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        try:
            run = Run(publisher, resource)
        except (PublishError, KeyError) as exc:
            raise click.ClickException(str(exc)) from exc
        if resend_refused:
            click.echo(f"queued {publisher.resend_refused()} refused events again", err=True)
        if stream is not None:
            _feed(run, stream)
    finally:
        left = publisher.close(timeout)  # waits for the broker's confirmations once
    for event in refused:
        run.rejected += 1
        click.echo(f"{run.line_of(event)}: refused by the broker: {event.error}: "
                   f"{event.reason} ({len(event.value):,} bytes); kept in the spool's "
                   "refused events; once the cause is fixed, --resend-refused sends them", err=True)
    delivered = max(run.accepted - left - len(refused), 0)
    click.echo(f"accepted {run.accepted}, rejected {run.rejected}, delivered {delivered}")
    if left:
        click.echo(f"{left} events are still spooled in {publisher.spool.path}; "
                   "the next run on this spool sends them", err=True)
    if run.rejected:
        sys.exit(1)
    if left:
        sys.exit(3)


def _feed(run: Run, stream: IO[bytes]) -> None:
    size = _size(stream)
    bar = None
    if size >= PROGRESS_MIN_BYTES and sys.stderr.isatty():
        bar = click.progressbar(length=size, label="publishing", file=sys.stderr)
    chunk: list[tuple[int, bytes]] = []
    done = 0
    for number, line in _lines(stream):
        chunk.append((number, line))
        if bar is not None:
            done += len(line)
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
