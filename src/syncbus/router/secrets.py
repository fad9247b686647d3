"""Per-subscriber token secrets, from configuration only (never from ``streams/``).

``SYNCBUS_TOKEN_SECRETS`` holds a JSON object ``{"<subscriber>": "<secret>"}``, or
``--secrets FILE`` names a JSON or YAML file with the same mapping; the file wins
per subscriber. Secrets never appear in reprs, logs or errors: a malformed file is
reported by its name and line only (``SecretsError``), the variable by its name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from syncbus.core.sources import UnreadableInput, load_json, load_yaml, read_text

ENV = "SYNCBUS_TOKEN_SECRETS"


class MissingSecret(ValueError):
    """A grant tokenises values but its subscriber has no secret configured."""


class SecretsError(ValueError):
    """The secrets file or variable is malformed; the message names where, never what."""


class TokenSecrets:
    def __init__(self, secrets: Mapping[str, str]) -> None:
        self._secrets = {k: v.encode("utf-8") for k, v in secrets.items() if v}

    def __repr__(self) -> str:
        return f"TokenSecrets(<{len(self._secrets)} subscribers>)"

    @classmethod
    def load(
        cls, path: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> TokenSecrets:
        env = os.environ if environ is None else environ
        merged: dict[str, str] = {}
        if env.get(ENV):
            merged.update(_mapping(_parsed(lambda: load_json(env[ENV]), ENV), ENV))
        if path is not None:
            merged.update(_mapping(_parsed(lambda: load_yaml(read_text(path)), str(path)),
                                   str(path)))
        return cls(merged)

    def get(self, subscriber: str) -> bytes | None:
        return self._secrets.get(subscriber)

    def require(self, subscriber: str, why: str) -> bytes:
        secret = self._secrets.get(subscriber)
        if secret is None:
            raise MissingSecret(
                f"no token secret for subscriber {subscriber} ({why}); add it to {ENV} "
                f'(JSON {{"{subscriber}": "..."}}) or to the --secrets file'
            )
        return secret


def _parsed(parse: Callable[[], object], where: str) -> object:
    """What ``parse`` returns; its failure told by place only, since every line is a secret."""
    try:
        return parse()
    except UnreadableInput as exc:
        line = "" if exc.line is None else f"line {exc.line}: "
        what = "not UTF-8 text" if "UTF-8" in exc.reason else "malformed"
        if exc.reason == "file is missing" or exc.reason.startswith("cannot read"):
            what = exc.reason
        raise SecretsError(
            f"{where}: {line}{what}; it must map subscriber ids to secret strings "
            '(JSON {"<subscriber>": "<secret>"} or YAML "<subscriber>: <secret>")'
        ) from None


def _mapping(data: object, where: str) -> dict[str, str]:
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SecretsError(f"{where} must map subscriber ids to secret strings")
    return {str(k): v for k, v in data.items()}
