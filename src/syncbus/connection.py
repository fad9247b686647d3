"""How adapters reach Kafka: one typed, frozen description turned into client configs.

Publisher, router, subscriber and admin all build their clients from a
:class:`Connection`, so the login (SASL/SCRAM-SHA-512 as one principal) and TLS are
set in this one place, for librdkafka, aiokafka and Faust alike, and the password
never shows in a repr, a log or an error of ours.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from syncbus import settings

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Connection:
    bootstrap: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    @classmethod
    def from_env(
        cls, bootstrap: str | None = None, user: str | None = None, password_file: str | None = None
    ) -> Connection:
        """``bootstrap`` if given, else SYNCBUS_BOOTSTRAP, else the connection file's, else
        the local broker; the login as :func:`syncbus.credentials.find_login` finds it."""
        from syncbus.credentials import find_login

        login = find_login(user, password_file)
        address = bootstrap or settings.get("bootstrap") or login.bootstrap
        return cls(address or settings.default_bootstrap(), login.user, login.password,
                   login.ca_file)

    def as_user(self, username: str, password: str) -> Connection:
        """The same broker, logged in as another principal."""
        return Connection(self.bootstrap, username, password, self.ca_file)

    def own_group(self, name: str) -> str:
        """A consumer group id under the principal's own prefix, the only groups its ACLs
        open (``city.nanjing.<name>``); ``syncbus-<name>`` for an anonymous client."""
        return f"{self.username}.{name}" if self.username else f"syncbus-{name}"

    def describe(self) -> str:
        """Who connects where, for error messages: ``user 'city.nanjing' at 127.0.0.1:9092``."""
        who = f"user {self.username!r}" if self.username else "an anonymous client"
        return f"{who} at {self.bootstrap}"

    @property
    def protocol(self) -> str:
        if self.username:
            return "SASL_SSL" if self.ca_file else "SASL_PLAINTEXT"
        return "SSL" if self.ca_file else "PLAINTEXT"

    def ssl_context(self) -> ssl.SSLContext | None:
        """For aiokafka and Faust: trust the CA of ``ca_file`` (None without TLS)."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def confluent(self, **overrides: Any) -> dict[str, Any]:
        """A confluent-kafka (librdkafka) configuration dict."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap}
        if self.protocol != "PLAINTEXT":
            config["security.protocol"] = self.protocol
        if self.username:
            config.update({
                "sasl.mechanisms": MECHANISM,
                "sasl.username": self.username,
                "sasl.password": self.password or "",
            })
        if self.ca_file:
            config["ssl.ca.location"] = self.ca_file
        config.update(overrides)
        return config

    def aiokafka(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.bootstrap,
                                  "security_protocol": self.protocol}
        if self.username:
            kwargs.update({
                "sasl_mechanism": MECHANISM,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password or "",
            })
        if self.ca_file:
            kwargs["ssl_context"] = self.ssl_context()
        kwargs.update(overrides)
        return kwargs
