"""The Prometheus rules generated from ``streams/``: shipped, current, and unit-tested."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from syncbus.cli.sla import sla
from syncbus.core.model import Bus
from syncbus.core.sla_rules import latency_buckets, rule_files, shared_resources

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "compose" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return found


def test_shipped_rules_are_what_streams_generates(bus: Bus) -> None:
    for name, text in rule_files(bus).items():
        shipped = PROMETHEUS_DIR / "rules" / name
        assert shipped.read_text(encoding="utf-8") == text, (
            f"{shipped} is stale: run `syncbus sla rules`"
        )


def test_rules_check_flags_a_stale_file(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--streams", str(ROOT / "streams"), "--schemas", str(ROOT / "schemas")]
    out = ["--out", str(tmp_path)]
    assert runner.invoke(sla, ["rules", *base, *out, "--check"]).exit_code == 1
    written = runner.invoke(sla, ["rules", *base, *out])
    assert written.exit_code == 0, written.output
    assert runner.invoke(sla, ["rules", *base, *out, "--check"]).exit_code == 0
    alerts = tmp_path / "syncbus-sla-alerts.rules.yml"
    alerts.write_text(alerts.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    stale = runner.invoke(sla, ["rules", *base, *out, "--check"])
    assert stale.exit_code == 1 and "differs from streams/" in stale.output


def test_every_shared_resource_has_its_alerts_and_an_exact_latency_bucket(bus: Bus) -> None:
    alerts = rule_files(bus)["syncbus-sla-alerts.rules.yml"]
    for resource in shared_resources(bus):
        assert alerts.count(f'resource="{resource.id}"') >= 6
        assert resource.sla.latency_p99_seconds in latency_buckets(bus)
    assert "health.diagnosis" not in alerts  # not_shared: it has no routes


def test_promtool_accepts_the_rules() -> None:
    rules = sorted(str(p) for p in (PROMETHEUS_DIR / "rules").glob("*.yml"))
    result = subprocess.run(
        [_promtool(), "check", "rules", *rules], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass_for_every_alert(bus: Bus) -> None:
    tests = sorted(PROMETHEUS_DIR.glob("tests/*.test.yml"))
    text = "".join(t.read_text(encoding="utf-8") for t in tests)
    alert_names = {
        line.split(":", 1)[1].strip()
        for line in rule_files(bus)["syncbus-sla-alerts.rules.yml"].splitlines()
        if line.lstrip().startswith("- alert:")
    }
    untested = {name for name in alert_names if f"alertname: {name}" not in text}
    assert not untested, f"alerts without a promtool test: {untested}"
    result = subprocess.run(
        [_promtool(), "test", "rules", *map(str, tests)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_shipped_prometheus_config() -> None:
    result = subprocess.run(
        [_promtool(), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
