"""How adapters reach Kafka: one typed, frozen description turned into client configs.

Publisher, router, subscriber and admin all build their clients from a
:class:`Connection`, so security settings (SASL/SCRAM, TLS) are added in one place
later and never leak into reprs or logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from syncbus import settings


@dataclass(frozen=True)
class Connection:
    bootstrap: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, bootstrap: str | None = None) -> Connection:
        """``bootstrap`` if given, else SYNCBUS_BOOTSTRAP, else the local broker."""
        return cls(bootstrap=bootstrap or settings.default_bootstrap())

    def confluent(self, **overrides: Any) -> dict[str, Any]:
        """A confluent-kafka (librdkafka) configuration dict."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if self.username:
            config.update({
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": self.username,
                "sasl.password": self.password or "",
            })
        config.update(overrides)
        return config

    def aiokafka(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (Faust's driver)."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.username:
            kwargs.update({
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password or "",
            })
        kwargs.update(overrides)
        return kwargs
