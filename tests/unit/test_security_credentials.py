"""Where a login comes from, in order, and that a password never shows."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from syncbus.connection import Connection
from syncbus.credentials import (
    CredentialsError,
    find_login,
    read_secrets,
    write_secrets,
)

ENV = ("SYNCBUS_USER", "SYNCBUS_PASSWORD", "SYNCBUS_PASSWORD_FILE", "SYNCBUS_CONFIG",
       "SYNCBUS_CA_FILE", "SYNCBUS_BOOTSTRAP")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNCBUS_CREDENTIALS", str(tmp_path / "none.json"))


def test_no_user_means_no_login() -> None:
    login = find_login()
    assert login.user is None and login.password is None


def test_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\nignored\n")
    monkeypatch.setenv("SYNCBUS_USER", "js-gaj")
    monkeypatch.setenv("SYNCBUS_PASSWORD", "from-env")
    assert find_login().password == "from-env"
    login = find_login("city.nanjing", str(tmp_path / "pw"))
    assert (login.user, login.password) == ("city.nanjing", "from-file")


def test_config_file_then_secrets_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "conn.yaml"
    config.write_text("bootstrap: 10.0.0.1:9093\nuser: city.suzhou\nca_file: /ca.pem\n")
    monkeypatch.setenv("SYNCBUS_CONFIG", str(config))
    secrets = tmp_path / "secrets.json"
    write_secrets(secrets, {"city.suzhou": "issued"})
    monkeypatch.setenv("SYNCBUS_CREDENTIALS", str(secrets))
    connection = Connection.from_env()
    assert connection.bootstrap == "10.0.0.1:9093"
    assert (connection.username, connection.password) == ("city.suzhou", "issued")
    assert connection.confluent()["security.protocol"] == "SASL_SSL"
    assert "issued" not in repr(connection) + repr(find_login())


def test_bad_inputs_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"no password for user 'city\.wuxi'"):
        find_login("city.wuxi")
    monkeypatch.setenv("SYNCBUS_PASSWORD", "orphan")
    with pytest.raises(CredentialsError, match="without a user"):
        find_login()
    monkeypatch.delenv("SYNCBUS_PASSWORD")
    config = tmp_path / "conn.yaml"
    config.write_text("usr: typo\n")
    monkeypatch.setenv("SYNCBUS_CONFIG", str(config))
    with pytest.raises(CredentialsError, match="unknown keys \\['usr'\\]"):
        find_login()
    monkeypatch.delenv("SYNCBUS_CONFIG")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(CredentialsError, match="is empty"):
        find_login("x", str(empty))


def test_secrets_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    write_secrets(path, {"b": "2", "a": "1"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secrets(path) == {"a": "1", "b": "2"}
