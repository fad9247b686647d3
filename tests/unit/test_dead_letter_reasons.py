"""A dead letter's reason depends only on the event, so a dashboard can group by it.

fastavro names the stream object it read in its errors (``<_io.BytesIO object at
0x7f..>``), a new address per call; the reason must not carry it, nor anything
else of one run.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from syncbus.admin.names import TopicNames
from syncbus.core import topics as t
from syncbus.core.catalog import Bus
from syncbus.core.codec import Codec, CorruptBody
from syncbus.core.fake import make_record
from syncbus.core.views import ViewCache
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import RawMessage, RoutingEngine
from syncbus.router.secrets import TokenSecrets


def _encoded(bus: Bus, resource_id: str) -> bytes:
    resource = bus.resource(resource_id)
    codec = Codec()
    fp = codec.register(bus.schemas.event_schema(resource.schema, None))
    after = make_record(resource.schema, region="320102", seed=9)
    event = {
        "event_id": str(uuid.uuid4()), "source": resource.owner,
        "resource": resource.id, "op": "CREATE", "key": str(after[resource.key_field]),
        "region": "320102", "sequence": 1, "occurred_at": 1_700_000_000_000_000,
        "published_at": 1_700_000_000_000_100, "before": None, "after": after,
    }
    return codec.encode(fp, event)


def _reason(codec: Codec, value: bytes) -> str:
    try:
        codec.decode(value)
    except CorruptBody as exc:
        return str(exc)
    raise AssertionError("a truncated event decoded")


def test_the_codec_reason_of_every_truncation_is_the_same_every_time(bus: Bus) -> None:
    """Every resource, cut at every byte (a double cut short is where fastavro named
    its stream object)."""
    checked = 0
    for resource_id in sorted(bus.resources):
        codec = Codec([bus.schemas.event_schema(bus.resource(resource_id).schema, None)])
        value = _encoded(bus, resource_id)
        for cut in range(12, len(value)):
            first, second = _reason(codec, value[:cut]), _reason(codec, value[:cut])
            assert first == second, (resource_id, cut)
            assert " at 0x" not in first and "_io." not in first, (resource_id, cut, first)
            checked += 1
    assert checked > 1000


def _dead_letter_reasons(bus: Bus, values: list[bytes]) -> list[bytes]:
    names = TopicNames("")
    codec = Codec()
    secrets = TokenSecrets({s: f"secret-{s}" for s in bus.subscribers})
    policy = CompiledPolicy(bus, secrets, codec, ViewCache(), names, os.urandom(32))
    engine = RoutingEngine(policy, codec, names, 10**9)
    raw = names.raw("spatial.parcel")
    batch = [RawMessage(raw, 0, n, b"k", value, []) for n, value in enumerate(values)]
    result = engine.process(batch, datetime.now(UTC), lambda _: 0)
    assert len(result.dead) == len(values)
    return [dict(headers)[t.H_DLQ_ERROR] for _, _, _, headers in result.dead]


def test_the_same_bad_event_twice_gets_the_same_dead_letter_reason(bus: Bus) -> None:
    value = _encoded(bus, "spatial.parcel")
    cut = [value[:n] for n in range(12, len(value))]  # among them cuts inside a double
    reasons = _dead_letter_reasons(bus, [v for v in cut for _ in range(2)])
    for first, second in zip(reasons[::2], reasons[1::2], strict=True):
        assert first == second
        assert b" at 0x" not in first
