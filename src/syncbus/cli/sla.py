"""``syncbus sla``: the sharing SLAs of ``streams/`` as Prometheus rules, and as a report.

``sla rules`` writes the recording and alerting rules that ``syncbus.core.sla_rules``
generates; ``--check`` compares them with what is there (CI: the rules shipped under
``compose/prometheus/rules/`` must be what ``streams/`` says).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from syncbus.cli.busopts import bus_options, load_bus_or_exit

DEFAULT_RULES_DIR = Path("compose/prometheus/rules")


@click.group()
def sla() -> None:
    """The sharing SLAs: generated Prometheus rules; the acceptance report."""


@sla.command(name="rules")
@bus_options
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_RULES_DIR,
    show_default=True,
    help="Folder the rule files are written to.",
)
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 when they differ.")
def rules(streams_dir: Path, schemas_dir: Path, out_dir: Path, check_only: bool) -> None:
    """Recording and multi-window burn-rate alert rules for every resource's SLA."""
    from syncbus.core.sla_rules import rule_files

    files = rule_files(load_bus_or_exit(streams_dir, schemas_dir))
    stale = [
        name
        for name, text in files.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_text(encoding="utf-8") != text
    ]
    if check_only:
        for name in stale:
            click.echo(
                f"{out_dir / name}: differs from streams/; run `syncbus sla rules`", err=True
            )
        raise SystemExit(1 if stale else 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        click.echo(f"{'wrote' if name in stale else 'unchanged'} {out_dir / name}")


@sla.command(name="report")
@bus_options
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="The period, as Prometheus durations (30d, 12h); Prometheus only.",
)
@click.option(
    "--prometheus",
    "prometheus_url",
    default=None,
    help="Read the period from this Prometheus (http://host:9090).",
)
@click.option(
    "--monitor",
    "monitor_url",
    default="http://127.0.0.1:9308",
    show_default=True,
    help="Else read the monitor's own state (the period is its uptime).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per route.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
def report(
    streams_dir: Path,
    schemas_dir: Path,
    since: str,
    prometheus_url: str | None,
    monitor_url: str,
    as_json: bool,
    as_csv: bool,
) -> None:
    """The acceptance report: per route volume, latency, completeness, freshness, OK/BREACHED."""
    import re
    from datetime import UTC, datetime

    from syncbus.monitor.report import ReportError, from_monitor, from_prometheus

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if not re.fullmatch(r"\d+[smhdwy]", since):
        raise click.BadParameter(
            f"{since!r} is not a duration such as 30d or 12h", param_hint="--since"
        )
    try:
        if prometheus_url:
            bus = load_bus_or_exit(streams_dir, schemas_dir)
            rows = from_prometheus(prometheus_url, bus, since, datetime.now(UTC))
        else:
            rows = from_monitor(monitor_url)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_report(rows, as_json, as_csv)
    if any(row["state"] == "BREACHED" for row in rows):
        raise SystemExit(2)


COLUMNS = (
    "resource",
    "subscriber",
    "volume",
    "within_latency",
    "completeness",
    "freshness_breaches",
    "state",
)


def _print_report(rows: list[dict[str, Any]], as_json: bool, as_csv: bool) -> None:
    import csv
    import json
    import sys

    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = [COLUMNS] + [tuple(_cell(row[c]) for c in COLUMNS) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4%}"
    return str(value)
