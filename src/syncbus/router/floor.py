"""The router worker with the routing taken out: what Faust alone costs per event.

``syncbus bench router --floor`` runs this on topics filled with the benchmark's
events, with the settings of the router's app, in two modes:

- ``take_events``: one agent iterating ``stream.take_events(batch)`` and doing
  nothing, i.e. Faust's own stream path (where the router started);
- ``batches``: ``router.batching``'s consumer handing fetches to a handler that
  only acks them, i.e. the path the router uses now.

Each prints one JSON line ``{"mode", "events", "seconds", "eps"}`` timed from
the first message taken to the last, then exits. Nothing here is used by the
router itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import faust
from faust.types import Message
from faust.worker import Worker

from syncbus.connection import Connection
from syncbus.router.batching import BatchApp

MODES = ("take_events", "batches")


class _Clock:
    def __init__(self, mode: str, expect: int) -> None:
        self.mode, self.expect, self.seen, self.started = mode, expect, 0, 0.0

    def taken(self, n: int) -> None:
        if self.seen == 0:
            self.started = time.monotonic()
        self.seen += n
        if self.seen >= self.expect:
            seconds = time.monotonic() - self.started
            result = {"mode": self.mode, "events": self.seen, "seconds": round(seconds, 3)}
            result["eps"] = round(self.seen / seconds) if seconds > 0 else 0
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
            os._exit(0)


def build(mode: str, bootstrap: str, topic: str, batch: int, expect: int, workdir: Path) -> Any:
    """The app of one floor run; the settings are those of ``router.app.build_app``."""
    app_id = f"floor-{mode}-{topic}"
    settings: dict[str, Any] = {
        "broker": "kafka://" + bootstrap,
        "store": "memory://",
        "web_enabled": False,
        "autodiscover": False,
        "datadir": str(workdir / app_id),
        "consumer_auto_offset_reset": "earliest",
        "stream_buffer_maxsize": batch * 2,
        "broker_max_poll_records": batch,
        "broker_commit_interval": 1.0,
    }
    clock = _Clock(mode, expect)
    if mode == "take_events":
        plain = faust.App(app_id, **settings)

        @plain.agent(plain.topic(topic, key_serializer="raw", value_serializer="raw"))
        async def take(stream: Any) -> None:
            async for events in stream.take_events(batch, within=0.05):
                clock.taken(len(events))

        return plain
    app = BatchApp(app_id, **settings)

    async def handle(messages: list[Message]) -> None:
        for message in messages:
            app.consumer.ack(message)
        clock.taken(len(messages))

    app.route_batches([topic], handle)

    @app.agent(app.topic(topic, key_serializer="raw", value_serializer="raw"))
    async def subscribe(stream: Any) -> None:  # subscribes the topic, as the router's agent
        async for _event in stream.events():
            raise RuntimeError("a message bypassed the batch handler")

    return app


@click.command()
@click.option("--mode", type=click.Choice(MODES), required=True)
@click.option("--bootstrap", default=None)
@click.option("--topic", required=True)
@click.option("--batch", default=5000, show_default=True)
@click.option("--expect", type=int, required=True, help="Exit after taking this many events.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), required=True)
def main(
    mode: str, bootstrap: str | None, topic: str, batch: int, expect: int, workdir: Path
) -> None:
    """Take EXPECT events of TOPIC through Faust, doing nothing with them; print events/s."""
    address = Connection.from_env(bootstrap).bootstrap
    app = build(mode, address, topic, batch, expect, workdir)
    Worker(app, loglevel="WARNING", quiet=True, workdir=workdir).execute_from_commandline()


if __name__ == "__main__":
    main()
