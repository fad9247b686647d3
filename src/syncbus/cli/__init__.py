"""The ``syncbus`` command line.

Each command group lives in its own module and is loaded only when invoked, so
``syncbus --help`` stays fast and a broken adapter cannot break unrelated commands.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "kafka": "syncbus.cli.kafka_cmd:kafka",
    "check": "syncbus.cli.check:check",
    "apply": "syncbus.cli.apply:apply",
    "publish": "syncbus.cli.publish:publish",
    "router": "syncbus.cli.router:router",
    "consume": "syncbus.cli.consume:consume",
    "sink": "syncbus.cli.sink:sink",
    "bench": "syncbus.cli.bench:bench",
    "demo": "syncbus.cli.demo:demo",
    "sla": "syncbus.cli.sla:sla",
    "monitor": "syncbus.cli.monitor:monitor",
    "dlq": "syncbus.cli.dlq:dlq",
    "resync": "syncbus.cli.resync:resync",
}

HELP = """syncbus: real-time data sharing between departments on Apache Kafka.

\b
Typical session:
  syncbus kafka start          # a local Kafka broker (prints its address)
  syncbus check                # validate streams/ and schemas/
"""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; ``registry`` names them."""

    registry: dict[str, str] = COMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in self.registry if self._available(name))

    def _available(self, name: str) -> bool:
        module_name = self.registry[name].split(":")[0]
        try:
            return importlib.util.find_spec(module_name) is not None
        except ModuleNotFoundError:  # its parent package is not there either
            return False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.registry.get(cmd_name)
        if target is None or not self._available(cmd_name):
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, help=HELP)
@click.version_option(package_name="syncbus")
def main() -> None:
    """The group itself does nothing; each subcommand is its own module."""
