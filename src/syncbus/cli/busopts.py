"""The ``--streams``/``--schemas`` options and the load of the bus they name, shared by
the SLA commands so that a broken definition reads the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from syncbus import settings
from syncbus.core.model import Bus

F = TypeVar("F", bound=Callable[..., Any])


def bus_options(func: F) -> F:
    """Add ``--streams`` and ``--schemas`` (defaults from settings)."""
    func = click.option(
        "--schemas",
        "schemas_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=lambda: settings.get("schemas"),
        show_default="schemas",
    )(func)
    return click.option(
        "--streams",
        "streams_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=lambda: settings.get("streams"),
        show_default="streams",
    )(func)


def load_bus_or_exit(streams_dir: Path, schemas_dir: Path) -> Bus:
    """The checked bus, or a ClickException listing its problems (never a traceback)."""
    from syncbus.core.catalog import load_bus
    from syncbus.core.problems import BusDefinitionError

    try:
        return load_bus(streams_dir, schemas_dir)
    except BusDefinitionError as exc:
        raise click.ClickException(f"the bus definition has problems:\n{exc}") from exc
