"""A real router stops when everything it reads fails, and loses none of it.

With ``--max-consecutive-dead 40``, a run of 100 undecodable messages stops the
worker with its "unconfirmed" exit code before the failing batch is acked; a
worker started afterwards with the default limit dead-letters every one of them.
Messages are counted by their unique bytes in ``syncbus.dlq``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.router.app import EXIT_UNCONFIRMED
from tests.router_helpers import REPO, RawWriter, RouterProcess, read_topic, resident, wait_for

pytestmark = pytest.mark.slow
RES = "population.resident"


def test_a_run_of_failures_stops_the_router_and_nothing_is_lost(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = TopicNames(f"dl{os.urandom(4).hex()}.")
    bus = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(bus, Connection(kafka.bootstrap), 1, names)
    writer = RawWriter(bus, kafka.bootstrap, names)
    strict = RouterProcess(kafka.bootstrap, tmp_path / "router", prefix=names.prefix,
                           extra=["--max-consecutive-dead", "40"]).start()
    lenient = RouterProcess(kafka.bootstrap, tmp_path / "router", app_id=strict.app_id,
                            prefix=names.prefix)
    try:
        writer.send(RES, "CREATE", resident("320102", seed=1))
        writer.flush()
        wait_for(lambda: read_topic(kafka.bootstrap, names.audit, 1.0), 120, "a first routing")
        junk = {f"junk-{i}-".encode() + os.urandom(8) for i in range(100)}
        for value in junk:
            writer.send_raw(RES, b"junk", value)
        writer.flush()
        wait_for(lambda: not strict.alive(), 120, "the strict router to stop")
        assert strict.proc is not None and strict.proc.returncode == EXIT_UNCONFIRMED

        lenient.start()

        def dead() -> set[bytes] | None:
            found = {m.value() for m in read_topic(kafka.bootstrap, names.dlq, 1.0)}
            return found if junk <= found else None

        wait_for(dead, 120, "every junk message in the DLQ")
        assert lenient.alive()
    finally:
        strict.stop()
        lenient.stop()
