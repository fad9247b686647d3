"""What leaves the router carries no personal data it would mask, whatever the input.

- A delivery carries two headers, the source partition and the source offset (the
  key's version, issue #17): every other fact is in its Avro body, and no header a
  publisher sends (``x-leak`` with a citizen ID, or a ``syncbus-*`` one) reaches a
  subscriber, on the byte path and the Python path.
- A dead letter in ``syncbus.dlq`` holds its origin and reason, the record masked
  when it decodes and no body when it does not (truncated, unknown writer, not
  Avro); the raw event is kept in ``syncbus.quarantine`` for ``dlq redrive``.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from syncbus.admin.names import TopicNames
from syncbus.core import topics as t
from syncbus.core.catalog import Bus
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.views import ViewCache
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import BatchOutput, RawMessage, RoutingEngine
from syncbus.router.secrets import TokenSecrets

RES = "population.resident"
NAMES = TopicNames("")
REGIONS = ("320102", "320508", "320505", "320205")


def _engine(bus: Bus, byte_path: bool) -> RoutingEngine:
    codec = Codec()
    secrets = TokenSecrets({s: f"secret-{s}" for s in bus.subscribers})
    policy = CompiledPolicy(bus, secrets, codec, ViewCache(), NAMES, os.urandom(32))
    return RoutingEngine(policy, codec, NAMES, byte_path=byte_path)


def _raw(bus: Bus, offset: int, region: str, **change: Any) -> tuple[RawMessage, dict[str, Any]]:
    """A raw event whose publisher added headers of its own, one carrying the ID."""
    codec = Codec()
    fp = codec.register(bus.schemas.event_schema(bus.resource(RES).schema))
    record = make_record(RES, region=region, seed=offset) | change
    value = codec.encode(fp, {
        "event_id": str(uuid.uuid4()), "source": "js-gaj", "resource": RES, "op": "CREATE",
        "key": record["id_number"], "region": region, "sequence": offset + 1,
        "occurred_at": 1, "published_at": 2, "before": None, "after": record,
    })
    headers = [(t.H_OP, b"CREATE"), (t.H_REGION, region.encode()),
               (t.H_FINGERPRINT, fp.hex().encode()), ("x-leak", record["id_number"].encode()),
               (t.H_EVENT_ID, record["name"].encode())]
    message = RawMessage(NAMES.raw(RES), 1, offset, record["id_number"].encode(), value, headers)
    return message, record


def _secrets_of(record: dict[str, Any]) -> list[bytes]:
    return [record["id_number"].encode(), record["name"].encode(), record["address"].encode()]


@pytest.mark.parametrize("byte_path", [True, False])
def test_a_delivery_carries_only_its_source_partition_and_offset(
    bus: Bus, byte_path: bool
) -> None:
    engine = _engine(bus, byte_path)
    batch = [_raw(bus, 1000 + i, r)[0] for i, r in enumerate(REGIONS)]
    out = engine.process(batch, datetime.now(UTC), lambda _: 0)
    assert not out.dead and len(out.deliveries) >= 8
    if byte_path:
        assert engine._byte_routes[NAMES.raw(RES)].routed == len(batch)
    offsets = {m.value[10:47]: m.offset for m in batch if m.value}  # by event id bytes
    for _topic, _key, value, headers in out.deliveries:
        assert value is not None
        offset = offsets[value[10:47]]
        assert list(headers) == [(t.H_SOURCE_PARTITION, b"1"),
                                 (t.H_SOURCE_OFFSET, str(offset).encode())]


def _truncated(bus: Bus) -> tuple[RawMessage, dict[str, Any]]:
    message, record = _raw(bus, 10, "320102")
    assert message.value is not None
    return message._replace(value=message.value[:-40]), record


def _unknown_writer(bus: Bus) -> tuple[RawMessage, dict[str, Any]]:
    message, record = _raw(bus, 11, "320102")
    assert message.value is not None
    return message._replace(value=message.value[:2] + b"\x01" * 8 + message.value[10:]), record


def _not_avro(bus: Bus) -> tuple[RawMessage, dict[str, Any]]:
    message, record = _raw(bus, 12, "320102")
    body = b"{" + b", ".join(_secrets_of(record)) + b"}"
    return message._replace(value=body), record


def _invalid(bus: Bus) -> tuple[RawMessage, dict[str, Any]]:
    """Decodes, fails validation: the ID's check digit is wrong."""
    good = make_record(RES, region="320102", seed=13)["id_number"]
    wrong = good[:-1] + ("0" if good[-1] != "0" else "1")
    return _raw(bus, 13, "320102", id_number=wrong)


@pytest.mark.parametrize("byte_path", [True, False])
@pytest.mark.parametrize("make", [_truncated, _unknown_writer, _not_avro, _invalid])
def test_a_dead_letter_holds_nothing_the_bus_would_mask(bus: Bus, make: Any,
                                                        byte_path: bool) -> None:
    message, record = make(bus)
    engine = _engine(bus, byte_path)
    out = engine.process([message], datetime.now(UTC), lambda _: 0)
    assert len(out.dead) == 1 and not out.deliveries
    topic, key, value, headers = out.dead[0]
    assert topic == NAMES.dlq and key is None
    names = {name for name, _ in headers}
    assert names <= {t.H_DLQ_TOPIC, t.H_DLQ_PARTITION, t.H_DLQ_OFFSET, t.H_DLQ_ERROR_CLASS,
                     t.H_DLQ_ERROR, t.H_DLQ_TIME}, names
    assert dict(headers)[t.H_DLQ_OFFSET] == str(message.offset).encode()
    seen = b"".join([value or b"", *(v for _, v in headers)])
    for secret in _secrets_of(record):
        assert secret not in seen
    if make is _invalid:
        assert value is not None and value[:1] == b"\xc3"  # the record, masked
    else:
        assert value is None  # nothing of a body that does not decode
    assert out.quarantine == [_quarantined(message, headers)]


def _quarantined(message: RawMessage, metadata: Any) -> tuple[str, bytes, bytes, Any]:
    key = f"{message.topic}/{message.partition}/{message.offset}".encode()
    kept = [*metadata, (t.H_DLQ_KEY, message.key)]
    return (NAMES.quarantine, key, message.value or b"", kept)


def test_good_events_leave_no_quarantine(bus: Bus) -> None:
    out: BatchOutput = _engine(bus, True).process(
        [_raw(bus, 0, "320102")[0]], datetime.now(UTC), lambda _: 0)
    assert out.deliveries and not out.dead and not out.quarantine
