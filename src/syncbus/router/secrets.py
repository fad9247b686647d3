"""Per-subscriber token secrets, from configuration only (never from ``streams/``).

``SYNCBUS_TOKEN_SECRETS`` holds a JSON object ``{"<subscriber>": "<secret>"}``, or
``--secrets FILE`` names a JSON or YAML file with the same mapping; the file wins
per subscriber. Secrets never appear in reprs or logs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

ENV = "SYNCBUS_TOKEN_SECRETS"


class MissingSecret(ValueError):
    """A grant tokenises values but its subscriber has no secret configured."""


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
            merged.update(_mapping(json.loads(env[ENV]), ENV))
        if path is not None:
            merged.update(_mapping(yaml.safe_load(path.read_text(encoding="utf-8")), str(path)))
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


def _mapping(data: object, where: str) -> dict[str, str]:
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{where} must map subscriber ids to secret strings")
    return {str(k): v for k, v in data.items()}
