"""Dead letters are for bad input: a router that fails valid event after valid event
stops instead, and no input alone can make it stop.

The engine counts valid events (decoded, checked) that failed in a row, across
batches; a routed event resets the count, bad input does neither. At the limit it
raises before the batch is done, so the adapter exits without acking anything of
that batch.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest

from syncbus.admin.names import TopicNames
from syncbus.core.catalog import Bus
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.views import ViewCache
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import DeadLetterLimit, RawMessage, RoutingEngine
from syncbus.router.secrets import TokenSecrets

RES = "population.resident"
NAMES = TopicNames("")


def _engine(bus: Bus, limit: int) -> RoutingEngine:
    codec = Codec()
    secrets = TokenSecrets({s: f"secret-{s}" for s in bus.subscribers})
    policy = CompiledPolicy(bus, secrets, codec, ViewCache(), NAMES, os.urandom(32))
    return RoutingEngine(policy, codec, NAMES, max_consecutive_dead=limit)


def _good(bus: Bus, offset: int) -> RawMessage:
    codec = Codec()
    fp = codec.register(bus.schemas.event_schema(bus.resource(RES).schema))
    record = make_record(RES, region="320102", seed=offset)
    now = 1_740_000_000_000_000
    value = codec.encode(fp, {
        "event_id": str(uuid.uuid4()), "source": "js-gaj", "resource": RES, "op": "CREATE",
        "key": record["id_number"], "region": "320102", "sequence": offset + 1,
        "occurred_at": now, "published_at": now, "before": None, "after": record,
    })
    return RawMessage(NAMES.raw(RES), 0, offset, b"k", value, [])


def _bad(offset: int) -> RawMessage:
    return RawMessage(NAMES.raw(RES), 0, offset, b"k", b"not avro at all", [])


def _process(engine: RoutingEngine, batch: list[RawMessage]) -> int:
    out = engine.process(batch, datetime.now(UTC), lambda _: 0)
    return len(out.dead)


def _broken_store(key: str) -> int:
    raise RuntimeError("sequence store unavailable")


def test_bad_input_between_good_events_is_only_dead_lettered(bus: Bus) -> None:
    engine = _engine(bus, limit=3)
    batch = [_bad(0), _bad(1), _good(bus, 2), _bad(3), _bad(4), _good(bus, 5)]
    assert _process(engine, batch) == 4
    assert _process(engine, [_bad(6), _bad(7)]) == 2  # two in a row: under the limit


def test_input_alone_never_stops_the_engine(bus: Bus) -> None:
    """Anyone who may write a raw topic can send junk: 10,000 in a row are dead-lettered
    and counted, and the engine goes on routing."""
    engine = _engine(bus, limit=3)
    for start in range(0, 10_000, 2_500):
        assert _process(engine, [_bad(start + i) for i in range(2_500)]) == 2_500
    out = engine.process([_good(bus, 10_000)], datetime.now(UTC), lambda _: 0)
    assert out.deliveries and not out.dead


@pytest.mark.parametrize("byte_path", [True, False])
def test_valid_events_failing_in_a_row_stop_the_engine_across_batches(
    bus: Bus, byte_path: bool
) -> None:
    """A failing store fails every valid event: that is a broken router. Junk between
    them neither counts nor resets the count."""
    engine = _engine(bus, limit=3)
    engine.byte_path = byte_path
    assert _process(engine, [_good(bus, 0), _bad(1), _bad(2)]) == 2
    out = engine.process([_good(bus, 3), _bad(4), _good(bus, 5)], datetime.now(UTC),
                         _broken_store)
    assert len(out.dead) == 3
    with pytest.raises(DeadLetterLimit) as caught:
        engine.process([_bad(6), _good(bus, 7), _good(bus, 8)], datetime.now(UTC),
                       _broken_store)
    message = str(caught.value)
    assert "3 valid events in a row" in message
    assert f"{NAMES.raw(RES)}[0]@7" in message and "sequence store unavailable" in message
    assert "--max-consecutive-dead" in message


def test_the_limit_must_be_positive(bus: Bus) -> None:
    with pytest.raises(ValueError, match="max_consecutive_dead"):
        _engine(bus, limit=0)


def test_the_cli_shows_the_engines_default_without_importing_the_engine() -> None:
    """``syncbus router --help`` names the default, and stays fast: no engine import."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from syncbus.cli.router import router

    assert "10000" in CliRunner().invoke(router, ["--help"]).output.replace(",", "")
    probe = ("import sys, syncbus.cli.router; "
             "print('syncbus.router.engine' in sys.modules, 'faust' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
