"""The router worker with the routing taken out: what Faust alone costs per event.

``syncbus bench router --floor`` runs this on topics filled with the benchmark's
events, with the settings of the router's app, in two modes:

- ``take_events``: one agent iterating ``stream.take_events(batch)`` and doing
  nothing, i.e. Faust's own stream path (where the router started);
- ``batches``: ``router.batching``'s consumer handing fetches to a handler that
  only acks them, i.e. the path the router uses now;
- ``io``: ``batches`` plus producing, per event, exactly the records the router
  writes for it (deliveries and audit, computed beforehand by the real engine and
  looked up by the event's bytes) through the router's producer settings, acking
  at once and confirming everything at the end: the router with its routing work
  free and its pipeline unbounded, an upper bound for any engine.

Each prints one JSON line ``{"mode", "events", "seconds", "eps"}`` over the
batches after the first (timed from the end of the first to the end of the last;
for ``io`` to the last record confirmed), then exits. Nothing here is used by the router itself.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any, cast

import click
import faust
from confluent_kafka import Producer

from syncbus.connection import Connection
from syncbus.router.app import quiet_worker
from syncbus.router.batching import BatchApp, BatchConsumer, Fetch

MODES = ("take_events", "batches", "io")


class _Clock:
    """Times the batches after the first: the first is handled before the clock can
    start (its fetch includes joining the group), so it is neither timed nor counted."""

    def __init__(self, mode: str, expect: int, before_end: Any = None) -> None:
        self.mode, self.expect, self.seen, self.started = mode, expect, 0, 0.0
        self.first = 0
        self.before_end = before_end

    def taken(self, n: int) -> None:
        if self.seen == 0:
            self.started, self.first = time.monotonic(), n
        self.seen += n
        if self.seen >= self.expect:
            if self.before_end is not None:
                self.before_end()
            seconds = time.monotonic() - self.started
            timed = self.seen - self.first
            result = {"mode": self.mode, "events": timed, "seconds": round(seconds, 3)}
            result["eps"] = round(timed / seconds) if seconds > 0 else 0
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
            os._exit(0)


def build(
    mode: str,
    bootstrap: str,
    topic: str,
    batch: int,
    expect: int,
    workdir: Path,
    outputs: Path | None = None,
) -> Any:
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
    produce = None
    if mode == "io":
        if outputs is None:
            raise click.UsageError("--mode io needs --outputs")
        from syncbus.router.sink import PRODUCER_DEFAULTS

        written: dict[bytes, list[Any]] = pickle.loads(outputs.read_bytes())
        producer = Producer(Connection(bootstrap).confluent(**PRODUCER_DEFAULTS))

        def produce(fetch: Fetch) -> None:
            send = producer.produce
            for message in fetch.records:
                for out_topic, key, value, headers in written[message.value or b""]:
                    while True:
                        try:
                            send(out_topic, value, key, headers=headers)
                            break
                        except BufferError:
                            producer.poll(0.05)
            producer.poll(0)

        def confirm_all() -> None:
            if producer.flush(300) > 0:
                raise RuntimeError("the io floor's records were not all confirmed")

    clock = _Clock(mode, expect, confirm_all if mode == "io" else None)
    if mode == "take_events":
        plain = faust.App(app_id, **settings)

        @plain.agent(plain.topic(topic, key_serializer="raw", value_serializer="raw"))
        async def take(stream: Any) -> None:
            async for events in stream.take_events(batch, within=0.05):
                clock.taken(len(events))

        return plain
    app = BatchApp(app_id, **settings)

    async def handle(fetch: Fetch) -> None:
        if produce is not None:
            produce(fetch)
        cast(BatchConsumer, app.consumer).ack_fetch(fetch)
        clock.taken(len(fetch))

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
@click.option(
    "--outputs",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="io mode: pickled {event bytes: [(topic, key, value, headers)]} from the engine.",
)
def main(
    mode: str,
    bootstrap: str | None,
    topic: str,
    batch: int,
    expect: int,
    workdir: Path,
    outputs: Path | None,
) -> None:
    """Take EXPECT events of TOPIC through Faust, doing nothing with them (io: writing
    what the router would write for them); print events/s."""
    address = Connection.from_env(bootstrap).bootstrap
    app = build(mode, address, topic, batch, expect, workdir, outputs)
    quiet_worker(app, "WARNING", workdir).execute_from_commandline()  # as the router runs


if __name__ == "__main__":
    main()
