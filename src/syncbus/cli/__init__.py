"""The ``syncbus`` command line.

Each command group lives in its own module and is loaded only when invoked, so
``syncbus --help`` stays fast and a broken adapter cannot break unrelated commands.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "kafka": "syncbus.cli.kafka_cmd:kafka",
    "check": "syncbus.cli.check:check",
}

HELP = """syncbus: real-time data sharing between departments on Apache Kafka.

\b
Typical session:
  syncbus kafka start          # a local Kafka broker (prints its address)
  syncbus check                # validate streams/ and schemas/
"""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, help=HELP)
@click.version_option(package_name="syncbus")
def main() -> None:
    pass
