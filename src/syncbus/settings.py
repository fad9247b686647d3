"""Every environment setting of syncbus, declared once: its variable, default and meaning.

Commands and adapters read settings through :func:`get` so that a reader finds the
name, the default and the documentation of each in this one table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    doc: str


def _user_dir(xdg_var: str, fallback: str, *parts: str) -> str:
    base = os.environ.get(xdg_var) or str(Path.home() / fallback)
    return str(Path(base, *parts))


SETTINGS: dict[str, Setting] = {
    "bootstrap": Setting(
        "SYNCBUS_BOOTSTRAP",
        "",
        "Kafka bootstrap servers; empty means the local broker of `syncbus kafka start`.",
    ),
    "kafka_dir": Setting(
        "SYNCBUS_KAFKA_DIR",
        _user_dir("XDG_STATE_HOME", ".local/state", "syncbus", "kafka"),
        "Data, logs and pid file of the local broker.",
    ),
    "kafka_cache": Setting(
        "SYNCBUS_KAFKA_CACHE",
        _user_dir("XDG_CACHE_HOME", ".cache", "syncbus", "kafka"),
        "Where the Apache Kafka jars from Maven Central are cached.",
    ),
    "state_dir": Setting(
        "XDG_STATE_HOME",
        str(Path.home() / ".local" / "state"),
        "Base of per-user state: publisher spools, subscriber dedupe stores, router tables.",
    ),
    "token_secrets": Setting(
        "SYNCBUS_TOKEN_SECRETS",
        "",
        'Router: per-subscriber HMAC secrets as JSON {"<subscriber>": "<secret>"}; '
        "never in streams/ (--secrets FILE adds to it).",
    ),
    "user": Setting(
        "SYNCBUS_USER", "", "SASL/SCRAM user (principal) on a secure broker; empty: no login."
    ),
    "password": Setting(
        "SYNCBUS_PASSWORD", "", "Its password (better SYNCBUS_PASSWORD_FILE: children see env)."
    ),
    "password_file": Setting(
        "SYNCBUS_PASSWORD_FILE", "", "A file whose first line is the password of SYNCBUS_USER."
    ),
    "credentials": Setting(
        "SYNCBUS_CREDENTIALS",
        _user_dir("XDG_STATE_HOME", ".local/state", "syncbus", "credentials.json"),
        "The secrets file `syncbus apply` writes (JSON {principal: password}, mode 0600); "
        "a user given without password takes its password from there.",
    ),
    "ca_file": Setting(
        "SYNCBUS_CA_FILE", "", "PEM CA that signed the broker's certificate: TLS when set."
    ),
    "config": Setting(
        "SYNCBUS_CONFIG",
        "",
        "A YAML/JSON connection file: bootstrap, user, password_file (or password), ca_file.",
    ),
    "streams": Setting("SYNCBUS_STREAMS", "streams", "The bus definition (YAML)."),
    "schemas": Setting("SYNCBUS_SCHEMAS", "schemas", "The Avro schemas (.avsc)."),
}


def get(name: str) -> str:
    """The value of setting ``name``: its environment variable if set, else its default."""
    setting = SETTINGS[name]
    return os.environ.get(setting.env) or setting.default


def default_bootstrap() -> str:
    """SYNCBUS_BOOTSTRAP, else the address of the local broker, else 127.0.0.1:9092."""
    explicit = get("bootstrap")
    if explicit:
        return explicit
    from syncbus.localkafka.broker import recorded_address
    from syncbus.localkafka.cluster import recorded_bootstrap

    directory = Path(get("kafka_dir"))
    return recorded_bootstrap(directory) or recorded_address(directory) or "127.0.0.1:9092"
