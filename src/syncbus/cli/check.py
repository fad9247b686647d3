"""``syncbus check``: is the declared bus (streams/ and schemas/) sound?

Run before ``syncbus apply`` and in CI, so a broken catalog, a grant nobody may
give, or an incompatible schema version is refused before it reaches Kafka.
Exit 0 and one summary line when all holds; otherwise every problem on stderr as
``<file>: <entry>: <problem>`` and exit 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from syncbus.core.catalog import check_bus


@click.command()
@click.option(
    "--streams",
    "streams_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SYNCBUS_STREAMS",
    default=Path("streams"),
    show_default=True,
    help="the bus definition folder (env SYNCBUS_STREAMS)",
)
@click.option(
    "--schemas",
    "schemas_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SYNCBUS_SCHEMAS",
    default=Path("schemas"),
    show_default=True,
    help="the Avro schemas folder (env SYNCBUS_SCHEMAS)",
)
def check(streams_dir: Path, schemas_dir: Path) -> None:
    """Validate streams/ and schemas/: references, grants, regions, schema evolution."""
    bus, problems = check_bus(streams_dir, schemas_dir)
    if bus is None:
        for problem in problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(problems)} problem(s)", err=True)
        raise SystemExit(1)
    click.echo(
        f"ok: {len(bus.departments)} departments, {len(bus.subscribers)} subscribers, "
        f"{len(bus.resources)} resources, {len(bus.grants)} grants, {len(bus.schemas)} schemas"
    )
