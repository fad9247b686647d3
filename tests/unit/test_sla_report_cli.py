"""``syncbus sla report``: bad input and an unreachable source are named, never a traceback."""

from __future__ import annotations

from click.testing import CliRunner

from syncbus.cli.sla import sla
from syncbus.core.model import Sla
from syncbus.core.sla import PeriodFigures, share_within
from syncbus.localkafka.broker import free_port

SLA = Sla(latency_p99_seconds=2.0, completeness=0.999, freshness_seconds=600.0)


def test_a_bad_period_is_refused() -> None:
    result = CliRunner().invoke(sla, ["report", "--since", "a month"])
    assert result.exit_code == 2 and "'a month' is not a duration" in result.output


def test_json_and_csv_together_are_refused() -> None:
    result = CliRunner().invoke(sla, ["report", "--json", "--csv"])
    assert result.exit_code == 2 and "choose one of --json and --csv" in result.output


def test_an_unreachable_monitor_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(sla, ["report", "--monitor", url])
    assert result.exit_code == 1
    assert f"cannot read {url}/api/routes" in result.output
    assert "Traceback" not in result.output


def test_period_verdicts() -> None:
    def figures(**changes: object) -> PeriodFigures:
        base: dict[str, object] = dict(
            resource="r.x",
            subscriber="s",
            volume=100,
            within_latency=0.995,
            completeness=1.0,
            freshness_breaches=0,
        )
        base.update(changes)
        return PeriodFigures(**base)  # type: ignore[arg-type]

    assert figures().verdict(SLA) == "OK"
    assert figures(within_latency=0.98).verdict(SLA) == "BREACHED"
    assert figures(completeness=0.99).verdict(SLA) == "BREACHED"
    assert figures(freshness_breaches=1).verdict(SLA) == "BREACHED"
    assert figures(volume=0, within_latency=None, completeness=None).verdict(SLA) == "OK"
    assert share_within((1.0, 2.0, 5.0), (50, 45, 5, 0), 2.0) == 0.95
    assert share_within((1.0, 2.0), (0, 0, 0), 2.0) is None
