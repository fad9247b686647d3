"""``syncbus sla``: the sharing SLAs of ``streams/`` as Prometheus rules, and as a report.

``sla rules`` writes the recording and alerting rules that ``syncbus.core.sla_rules``
generates; ``--check`` compares them with what is there (CI: the rules shipped under
``compose/prometheus/rules/`` must be what ``streams/`` says).
"""

from __future__ import annotations

from pathlib import Path

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
