"""``syncbus dlq redrive`` routes a quarantined event once its cause is fixed, once.

The bus is first applied without ``population.resident`` v2, so a v2 event is
``UnknownFingerprint`` to the router: dead-lettered (no body) and quarantined.
``apply`` of the whole bus registers v2; a redrive then replays the event, the
router routes it, and the province receives it. Junk stays in quarantine, counted.
A second redrive replays nothing, and the province holds the event exactly once.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncbus.admin.apply import apply_bus
from syncbus.admin.names import TopicNames
from syncbus.cli import main
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from tests.router_helpers import (
    REPO,
    RawWriter,
    RouterProcess,
    ShareReader,
    read_topic,
    resident,
    wait_for,
)

pytestmark = pytest.mark.slow
RES = "population.resident"


def _redrive(bootstrap: str, names: TopicNames) -> str:
    result = CliRunner().invoke(
        main, ["dlq", "redrive", "--bootstrap", bootstrap, "--topic-prefix", names.prefix])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_quarantined_event_is_routed_once_its_schema_is_applied(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = TopicNames(f"redrive{uuid.uuid4().hex[:6]}.")
    schemas = tmp_path / "schemas"
    shutil.copytree(REPO / "schemas", schemas)
    (schemas / "population.resident.v2.avsc").unlink()
    full = load_bus(REPO / "streams", REPO / "schemas")
    apply_bus(load_bus(REPO / "streams", schemas), Connection(kafka.bootstrap), 1, names)
    writer = RawWriter(full, kafka.bootstrap, names)  # writes with v2, the latest
    router = RouterProcess(kafka.bootstrap, tmp_path / "router", prefix=names.prefix).start()
    try:
        event_id = writer.send(RES, "CREATE", resident("320102", seed=7))
        writer.send_raw(RES, b"junk", b"not avro")
        writer.flush()
        wait_for(lambda: len(read_topic(kafka.bootstrap, names.quarantine, 0.5)) >= 2, 120,
                 "both events in quarantine")
        reader = ShareReader(kafka.bootstrap, names)
        assert reader.events("province.jiangsu", RES, 0.5) == []

        apply_bus(full, Connection(kafka.bootstrap), 1, names)  # registers v2
        probes: list[str] = []

        def delivered() -> list[str]:
            return [str(e["event_id"]) for e in reader.events("province.jiangsu", RES, 0.5)]

        def routed_v2() -> bool:  # probes sent before the router follows the policy fail too
            probes.append(writer.send(RES, "CREATE", resident("320102", seed=8 + len(probes))))
            writer.flush()
            return bool(set(probes) & set(delivered()))

        wait_for(routed_v2, 60, "the router to route v2 events", every=1.0)

        def settled() -> int | None:  # every probe delivered or quarantined: how many failed
            failed = len(read_topic(kafka.bootstrap, names.quarantine, 0.5)) - 2
            return failed if failed + len(set(probes) & set(delivered())) == len(probes) else None

        failed_probes = wait_for(lambda: (n := settled()) is not None and (n,), 60,
                                 "every probe routed or quarantined")[0]
        output = _redrive(kafka.bootstrap, names)
        assert f"redriven: {1 + failed_probes} events" in output, output
        assert "still failing, kept in quarantine: 1" in output
        assert "NotSingleObjectEncoded" in output
        wait_for(lambda: {event_id, *probes} <= set(delivered()), 60, "the redriven events")
        again = _redrive(kafka.bootstrap, names)
        assert "redriven: 0 events" in again and "kept in quarantine: 1" in again
        assert sorted(delivered()) == sorted([event_id, *probes])  # each exactly once
        assert router.alive()
    finally:
        router.stop()
