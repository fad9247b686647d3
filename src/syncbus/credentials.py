"""Where a principal's password comes from, and the secrets file ``apply`` writes.

A client logs in as one SASL/SCRAM user. Its name and password are found, first
match wins, in: the arguments (``--user``, ``--password-file``), the environment
(``SYNCBUS_USER`` with ``SYNCBUS_PASSWORD`` or ``SYNCBUS_PASSWORD_FILE``), a
connection file (``SYNCBUS_CONFIG``), and for the password last the secrets file of
``syncbus apply`` (``SYNCBUS_CREDENTIALS``). Passwords are read from files or the
environment, never from a command line (``ps`` shows those to every local user),
and never appear in a message of ours.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from syncbus import settings

CONFIG_KEYS = frozenset({"bootstrap", "user", "password", "password_file", "ca_file"})


class CredentialsError(ValueError):
    """A login cannot be put together; the message names what is missing and where to put it."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only: 0600 from creation, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def generate_password() -> str:
    """32 URL-safe characters from the OS's random source (192 bits)."""
    return secrets.token_urlsafe(24)


def read_password_file(path: Path | str) -> str:
    """The first line of ``path``; an empty or unreadable file is an error naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CredentialsError(f"cannot read the password file {path}: {exc.strerror}") from exc
    if not lines or not lines[0].strip():
        raise CredentialsError(f"the password file {path} is empty")
    return lines[0].strip()


def read_secrets(path: Path) -> dict[str, str]:
    """The secrets file: ``{principal: password}``; a missing file is empty."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"the secrets file {path} is not a JSON object: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise CredentialsError(f"the secrets file {path} must map each principal to a password")
    return dict(data)


def write_secrets(path: Path, passwords: dict[str, str]) -> None:
    write_private(path, json.dumps(dict(sorted(passwords.items())), indent=2) + "\n")


def load_config(path: Path | str) -> dict[str, str]:
    """A connection file (YAML or JSON); unknown keys are refused, so a typo never goes unseen."""
    try:
        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CredentialsError(f"cannot read the connection file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CredentialsError(
            f"the connection file {path} must be a mapping of {sorted(CONFIG_KEYS)}"
        )
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise CredentialsError(
            f"the connection file {path} has unknown keys {unknown}; known: {sorted(CONFIG_KEYS)}"
        )
    return {k: str(v) for k, v in data.items() if v is not None}


@dataclass(frozen=True)
class Login:
    """What a connection needs beyond its address; the password never shows in a repr."""

    bootstrap: str | None
    user: str | None
    password: str | None
    ca_file: str | None

    def __repr__(self) -> str:
        return f"Login(bootstrap={self.bootstrap!r}, user={self.user!r}, ca_file={self.ca_file!r})"


def _password(user: str, password_file: str | None, config: dict[str, str]) -> str:
    if password_file:
        return read_password_file(password_file)
    if settings.get("password"):
        return settings.get("password")
    if settings.get("password_file"):
        return read_password_file(settings.get("password_file"))
    if "password" in config:
        return config["password"]
    if "password_file" in config:
        return read_password_file(config["password_file"])
    found = read_secrets(Path(settings.get("credentials")))
    if user in found:
        return found[user]
    raise CredentialsError(
        f"no password for user {user!r}: give --password-file FILE, SYNCBUS_PASSWORD_FILE, "
        "SYNCBUS_PASSWORD, or the secrets file of `syncbus apply` in SYNCBUS_CREDENTIALS"
    )


def find_login(user: str | None = None, password_file: str | None = None) -> Login:
    """The login from arguments, environment and connection file (see the module doc)."""
    config_path = settings.get("config")
    config = load_config(config_path) if config_path else {}
    user = user or settings.get("user") or config.get("user") or None
    password = _password(user, password_file, config) if user else None
    stray = password_file or settings.get("password") or settings.get("password_file")
    if user is None and stray:
        raise CredentialsError("a password was given without a user: add --user or SYNCBUS_USER")
    return Login(config.get("bootstrap"), user, password,
                 settings.get("ca_file") or config.get("ca_file") or None)
