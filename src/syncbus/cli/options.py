"""The login options every command that talks to Kafka shares, and its one-line refusals.

``@login_options`` adds ``--user``, ``--password-file`` and ``--config``. They are
put where :meth:`Connection.from_env` looks (``SYNCBUS_USER``,
``SYNCBUS_PASSWORD_FILE``, ``SYNCBUS_CONFIG``) for the command's duration, so every
client the command builds, and every child process it starts (the benchmark's
routers), logs in the same way; the password itself never enters the environment or
a command line. A wrong password, an unknown user or a denied topic or group ends
the command with one line naming the principal, the broker and what was refused,
and exit status 2 (``AccessRefused``), never an endless retry.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from syncbus.connection import Connection
from syncbus.credentials import CredentialsError

EXIT_REFUSED = 2
CHECK_TIMEOUT_S = 10.0
F = TypeVar("F", bound=Callable[..., Any])
_ENV = {
    "user": "SYNCBUS_USER",
    "password_file": "SYNCBUS_PASSWORD_FILE",
    "config": "SYNCBUS_CONFIG",
}


class AccessRefused(RuntimeError):
    """The broker refused the login or an operation; the message is the one line to show."""


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or param.name is None:
        return
    variable = _ENV[param.name]
    before = os.environ.get(variable)
    os.environ[variable] = str(value)

    def restore() -> None:  # in-process callers (tests, CliRunner) get their env back
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before

    ctx.call_on_close(restore)


def login_options(func: F) -> F:
    """``--user``, ``--password-file``, ``--config``; and refusals as one line, exit 2."""

    @functools.wraps(func)
    def refusing(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (AccessRefused, CredentialsError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_REFUSED)
        except Exception as exc:
            refused = refusal(exc)
            if refused is None:
                raise
            click.echo(f"error: {refused}: {exc.__class__.__name__}", err=True)
            sys.exit(EXIT_REFUSED)

    options = [
        click.option("--config", type=click.Path(dir_okay=False, exists=True), default=None,
                     expose_value=False, callback=_remember, is_eager=True,
                     help="Connection file (YAML): bootstrap, user, password_file, ca_file. "
                     "[env SYNCBUS_CONFIG]"),
        click.option("--password-file", type=click.Path(dir_okay=False, exists=True), default=None,
                     expose_value=False, callback=_remember, is_eager=True,
                     help="File whose first line is the password of --user. "
                     "[env SYNCBUS_PASSWORD_FILE or SYNCBUS_PASSWORD]"),
        click.option("--user", default=None, expose_value=False, callback=_remember,
                     is_eager=True,
                     help="SASL/SCRAM principal on a secure broker. [env SYNCBUS_USER]"),
    ]
    wrapped: Any = refusing
    for option in options:
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


_CODES = {
    "_AUTHENTICATION": "authentication failed (wrong password or unknown user)",
    "SASL_AUTHENTICATION_FAILED": "authentication failed (wrong password or unknown user)",
    "TOPIC_AUTHORIZATION_FAILED": "a topic was denied",
    "GROUP_AUTHORIZATION_FAILED": "the consumer group was denied",
    "CLUSTER_AUTHORIZATION_FAILED": "a cluster operation was denied",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": "the transactional id was denied",
}


def refusal(exc: BaseException) -> str | None:
    """What a confluent-kafka error says was refused, or None when it is no refusal."""
    error = exc.args[0] if exc.args else None
    name = getattr(error, "name", None)
    return _CODES.get(name()) if callable(name) else None


def check_access(
    connection: Connection,
    read: Iterable[str] = (),
    write: Iterable[str] = (),
    group: str | None = None,
    timeout: float = CHECK_TIMEOUT_S,
    unreachable_ok: bool = False,
) -> None:
    """Log in and look at the named topics and group before a command starts its work.

    Raises AccessRefused with one line when the login fails within ``timeout`` or a
    topic or the group is denied (a denied topic is invisible in the metadata).
    ``unreachable_ok``: a broker that does not answer is no refusal (``publish`` spools
    what it accepts until the broker is back), only a refused login is.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    who = connection.describe()
    failures: list[str] = []

    def on_error(error: Any) -> None:
        if error.name() in ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED"):
            failures.append(error.str())

    admin = AdminClient(connection.confluent(error_cb=on_error, log_level=0))
    metadata = None
    deadline = time.monotonic() + timeout
    while metadata is None and not failures and time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(timeout=1.0)
        except KafkaException:
            admin.poll(0.1)  # serves error_cb: a refused login shows there, not in the exception
    if failures:
        raise AccessRefused(f"{who}: authentication failed (wrong password or unknown user)")
    if metadata is None and unreachable_ok:
        return
    if metadata is None:
        hint = "" if connection.username else " (a secure broker needs --user)"
        raise AccessRefused(f"{who}: no answer within {timeout:.0f} s{hint}")
    for verb, names in (("read", read), ("write", write)):
        for topic in names:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                raise AccessRefused(f"{who} may not {verb} topic {topic} (denied or missing; "
                                    "a grant in streams/ and `syncbus apply` give the right)")
    if group is not None:
        _check_group(admin, who, group, deadline)


def _check_group(admin: Any, who: str, group: str, deadline: float) -> None:
    """Refuse a denied group; anything else (a coordinator still loading) is the client's
    own business later, so it never blocks the command."""
    from confluent_kafka import KafkaException

    while time.monotonic() < deadline:
        described = admin.describe_consumer_groups([group], request_timeout=CHECK_TIMEOUT_S)
        try:
            described[group].result(CHECK_TIMEOUT_S)
            return
        except TimeoutError:  # a slow coordinator is no refusal: the client finds out later
            return
        except KafkaException as exc:
            if refusal(exc):
                raise AccessRefused(
                    f"{who} may not use consumer group {group!r} "
                    "(a subscriber's groups are named <subscriber>[.<name>])"
                ) from None
            if not exc.args[0].retriable():
                return
            time.sleep(0.2)
