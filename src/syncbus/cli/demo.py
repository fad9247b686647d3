"""``syncbus demo``: the whole bus live on this machine (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path

import click

from syncbus import settings


@click.command("demo")
@click.option("--duration", type=click.FloatRange(min=10), default=None,
              help="Seconds of traffic, then a summary; exit 0 only if every route in force "
              "delivered and Wuxi's sink filled after its approval. Default: until Ctrl-C.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("var/demo"), show_default=True,
              help="The demo's broker, sinks, spools and logs.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Events a second per resource (bursts of five times that every 10 s).")
@click.option("--approve-after", type=click.FloatRange(min=0), default=None,
              help="Seconds until Wuxi's grant is approved (default: half of --duration, "
              "or 30).")
@click.option("--bootstrap", default=None,
              help="A running Kafka to use instead of the demo's own (its topics are the "
              "bus's own names: use a broker of its own).")
def demo(duration: float | None, directory: Path, rate: float, approve_after: float | None,
         bootstrap: str | None) -> None:
    """Departments publish, a router routes, cities keep their sinks: live, with a table
    per route; partway, Wuxi's pending grant is approved and its sink fills."""
    from syncbus.demo.run import DemoOptions, run_demo

    options = DemoOptions(
        dir=directory.resolve(), streams=Path(settings.get("streams")).resolve(),
        schemas=Path(settings.get("schemas")).resolve(), duration=duration, rate=rate,
        approve_after=approve_after, bootstrap=bootstrap,
    )
    raise SystemExit(run_demo(options, click.echo))
