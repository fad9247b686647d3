"""Errors about secrets files and database URLs name the file, line or host, never the
secret itself (issue 22)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncbus.cli.router import router
from syncbus.cli.sink import sink
from syncbus.core.problems import redact_url
from syncbus.router.secrets import ENV, SecretsError, TokenSecrets

SECRET = "s3cr3t-Zq8vX"


@pytest.mark.parametrize("text", [
    f'city.nanjing: "{SECRET}\n  bad: : x\n',  # an unclosed quote
    f"city.nanjing: {SECRET}: x: [\n",  # a mapping where a value should be
    f'{{"city.nanjing": "{SECRET}" "x"}}\n',  # JSON missing a comma
    f"province.jiangsu: ok\ncity.nanjing: [{SECRET}\n",  # a list never closed
    f"city.nanjing: {SECRET}\ncity.nanjing: {SECRET}x\n",  # a subscriber given twice
    f"city.nanjing:\n  secret: {SECRET}\n",  # not a string
    f"- {SECRET}\n",  # not a mapping
    b"city.nanjing: \xff" + SECRET.encode() + b"\n",  # not UTF-8
])
def test_a_malformed_secrets_file_is_named_by_file_and_line_only(
    tmp_path: Path, text: str | bytes
) -> None:
    path = tmp_path / "secrets.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(SecretsError) as raised:
        TokenSecrets.load(path, environ={})
    message = str(raised.value)
    assert SECRET not in message
    assert str(path) in message
    cause = raised.value.__cause__ or raised.value.__context__
    assert cause is None or raised.value.__suppress_context__, "the parser's error is chained"


def test_a_malformed_secrets_variable_is_named_without_its_value() -> None:
    for value in (f'{{"city.nanjing": "{SECRET}" x}}', json.dumps({"city.nanjing": [SECRET]})):
        with pytest.raises(SecretsError) as raised:
            TokenSecrets.load(None, environ={ENV: value})
        assert SECRET not in str(raised.value)
        assert ENV in str(raised.value)


def test_a_missing_secrets_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match=r"secrets\.yaml: file is missing"):
        TokenSecrets.load(tmp_path / "secrets.yaml", environ={})


def test_the_router_command_reports_a_bad_secrets_file_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(f"province.jiangsu: ok\ncity.nanjing: [{SECRET}\n", encoding="utf-8")
    result = CliRunner().invoke(router, ["--secrets", str(path), "--bootstrap", "127.0.0.1:1",
                                         "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert f"{path}: line 2" in result.output
    assert SECRET not in result.output


@pytest.mark.parametrize(("url", "shown"), [
    (f"postgresql://city:{SECRET}@db.example:5432/share",
     "postgresql://city:***@db.example:5432/share"),
    (f"postgres://city:{SECRET}@[::1]/share?sslmode=require",
     "postgres://city:***@[::1]/share?sslmode=require"),
    (f"postgresql://db.example/share?user=city&password={SECRET}&sslmode=require",
     "postgresql://db.example/share?user=city&password=***&sslmode=require"),
    ("postgresql://city@db.example/share", "postgresql://city@db.example/share"),
    ("sqlite:///var/city.db", "sqlite:///var/city.db"),
    ("var/city.db", "var/city.db"),
    (f"host=db.example password={SECRET} dbname=share",
     "host=db.example password=*** dbname=share"),
])
def test_urls_are_shown_without_their_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_sink_command_never_prints_the_database_password() -> None:
    url = f"postgresql://city:{SECRET}@127.0.0.1:1/share?connect_timeout=2"
    result = CliRunner().invoke(sink, ["--as", "city.nanjing", "--to", url,
                                       "--resource", "population.resident",
                                       "--bootstrap", "127.0.0.1:1"])
    assert SECRET not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    assert SECRET not in str(result.exception or "")
    assert result.exit_code in (1, 2)  # the database or (here first) the broker unreachable
    assert "postgresql://city:***@127.0.0.1:1/share" in result.output
