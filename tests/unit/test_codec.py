"""Single-object encoding round trips, evolution v1<->v2, and the codec's errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncbus.core.catalog import Bus
from syncbus.core.codec import (
    MAGIC,
    Codec,
    CorruptBody,
    EncodeError,
    IncompatibleWriter,
    NotSingleObjectEncoded,
    UnknownFingerprint,
    fingerprint,
    peek_fingerprint,
)
from syncbus.core.fake import RESOURCE_SCHEMAS, make_record, make_records
from syncbus.core.schemas import event_schema

REGIONS = ("320102", "320508", "320205", "320583", "110105")


def test_fingerprint_matches_the_avro_spec() -> None:
    # CRC-64-AVRO of "int" is 0x7275d51a3f395c8f; single-object encoding is little-endian
    assert fingerprint("int") == bytes.fromhex("8f5c393f1ad57572")


@pytest.mark.parametrize("name", RESOURCE_SCHEMAS)
def test_round_trip_every_schema(bus: Bus, name: str) -> None:
    codec = Codec()
    fp = codec.register(bus.schemas.latest(name))
    for record in make_records(name, 15, regions=REGIONS, seed=7):
        data = codec.encode(fp, record)
        assert data[:2] == MAGIC and data[2:10] == fp
        decoded, writer = codec.decode(data)
        assert writer == fp
        expected = dict(record)
        if name == "population.resident":
            expected.setdefault("email", None)  # v2 default
        assert decoded == expected


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(RESOURCE_SCHEMAS),
    region=st.sampled_from(REGIONS),
    seed=st.integers(0, 2**32),
)
def test_round_trip_events_property(bus: Bus, name: str, region: str, seed: int) -> None:
    codec = Codec()
    fp = codec.register(event_schema(bus.schemas.latest(name)))
    before = make_record(name, region, seed=seed)
    after = make_record(name, region, seed=seed + 1)
    event = _event(name, before, after)
    decoded, _ = codec.decode(codec.encode(fp, event))
    if name == "population.resident":
        before["email"] = after["email"] = None
    assert decoded["before"] == before and decoded["after"] == after
    assert decoded["op"] == "UPDATE" and decoded["subscriber"] is None
    assert decoded["occurred_at"] == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def _event(resource: str, before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "source": "js-gaj",
        "resource": resource,
        "op": "UPDATE",
        "key": "k",
        "region": "320508",
        "sequence": 42,
        "occurred_at": datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
        "published_at": 1_740_816_000_000_000,
        "before": before,
        "after": after,
    }


def test_v1_written_v2_read_and_back(bus: Bus) -> None:
    codec = Codec()
    v1 = codec.register(event_schema(bus.schemas.get("population.resident", 1)))
    v2 = codec.register(event_schema(bus.schemas.get("population.resident", 2)))
    record = make_record("population.resident", "320508", seed=1)
    read, writer = codec.decode(codec.encode(v1, _event("population.resident", None, record)), v2)
    assert writer == v1
    assert read["after"] == {**record, "email": None}

    newer = {**record, "email": "li@example.cn"}
    back, writer = codec.decode(codec.encode(v2, _event("population.resident", None, newer)), v1)
    assert writer == v2
    assert back["after"] == record


def test_writer_schema_by_fingerprint(bus: Bus) -> None:
    codec = Codec()
    schema = bus.schemas.latest("legal.company")
    fp = codec.register(schema)
    assert codec.register(schema) == fp
    assert codec.writer_schema(fp) == schema
    assert codec.writer_schema(b"\x00" * 8) is None


def test_decode_errors(bus: Bus) -> None:
    codec = Codec()
    fp = codec.register(bus.schemas.latest("legal.company"))
    data = codec.encode(fp, make_record("legal.company", seed=3))
    with pytest.raises(NotSingleObjectEncoded):
        codec.decode(b'{"json": true}')
    with pytest.raises(NotSingleObjectEncoded):
        peek_fingerprint(MAGIC + b"\x01")
    with pytest.raises(UnknownFingerprint) as info:
        Codec().decode(data)
    assert info.value.fp_hex == fp.hex()
    with pytest.raises(CorruptBody):
        codec.decode(data[:-5])
    with pytest.raises(CorruptBody):
        codec.decode(data + b"\x00\x00")
    other = codec.register(bus.schemas.latest("credit.penalty"))
    with pytest.raises(IncompatibleWriter) as incompatible:
        codec.decode(data, other)
    assert fp.hex() in str(incompatible.value)


def test_encode_error_on_bad_record(bus: Bus) -> None:
    codec = Codec()
    fp = codec.register(bus.schemas.latest("legal.company"))
    with pytest.raises(EncodeError):
        codec.encode(fp, {"uscc": 12})
    with pytest.raises(UnknownFingerprint):
        codec.encode(b"\x01" * 8, {})


def test_a_value_the_compiled_encoder_declines_is_counted_and_still_refused() -> None:
    """Compiled code hands bad values to fastavro; the codec counts the hand-over."""
    from syncbus.core.codec import Codec, EncodeError

    codec = Codec()
    fp = codec.register(
        {"type": "record", "name": "r", "fields": [{"name": "n", "type": "long"}]}
    )
    assert codec.fallbacks == 0
    codec.decode(codec.encode(fp, {"n": 5}))
    assert codec.fallbacks == 0
    with pytest.raises(EncodeError):
        codec.encode(fp, {"n": "not a number"})
    assert codec.fallbacks == 1
