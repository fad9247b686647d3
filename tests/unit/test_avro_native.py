"""The native Avro encoders and decoders are fastavro, only faster: same bytes, same values.

Every schema in ``schemas/`` (domain records and their change events) and every
subscriber view the router derives is compiled; hypothesis draws values over the
whole range of each field type and the native output is compared with fastavro's,
byte for byte and value for value. Values the native code does not take must
reach fastavro through the codec and come out as fastavro makes them. The codec's
own tests run twice (``codec_kind``): with the native code, and without it, as an
install without a C compiler runs (fastavro only).
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import itertools
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncbus.core.catalog import Bus
from syncbus.core.codec import HEADER_LEN, MAGIC, Codec, CorruptBody, EncodeError, native_codec
from syncbus.core.fake import RESOURCE_SCHEMAS, make_records
from syncbus.core.masking import compile_plan
from syncbus.core.views import view_event_schema

Schema = dict[str, Any]
NOT_BUILT = "syncbus.core._avro_native is not built: run `make venv` (needs gcc and Python headers)"


@pytest.fixture
def native() -> Any:
    """The native module, which the install (setup.py) builds on this machine."""
    assert native_codec is not None, NOT_BUILT
    return native_codec


@pytest.fixture(params=["native", "fastavro"])
def codec_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every ``Codec`` the test makes: with the native code, or without it (no compiler)."""
    if request.param == "fastavro":
        monkeypatch.setattr("syncbus.core.codec.native_codec", None)
    else:
        assert native_codec is not None, NOT_BUILT
    return str(request.param)


def test_the_native_codec_is_built_and_used() -> None:
    """The install (setup.py) compiles it here; a silent fall back to fastavro costs 5x."""
    assert native_codec is not None, NOT_BUILT
    codec = Codec()
    fp = codec.register({"type": "record", "name": "r", "fields": [{"name": "x", "type": "int"}]})
    assert type(codec._encoders[fp]).__module__ == native_codec.__name__
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])  # stateless


def all_schemas(bus: Bus) -> list[Schema]:
    out: list[Schema] = []
    for (name, version), domain in bus.schemas.items():
        out += [domain, bus.schemas.event_schema(name, version)]
    return out


def fastavro_bytes(schema: Schema, record: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(copy.deepcopy(schema)), record)
    return out.getvalue()


def fastavro_value(schema: Schema, body: bytes) -> Any:
    parsed = parse_schema(copy.deepcopy(schema), _write_hint=False)
    return schemaless_reader(io.BytesIO(body), parsed, None, return_record_name=False)


# ------------------------------------------------------------- values from a schema

def values(schema: Any, named: dict[str, Any], ns: str = "") -> st.SearchStrategy[Any]:
    """Hypothesis values of an Avro type, over its whole range (all the shipped types)."""
    if isinstance(schema, list):
        return st.one_of([values(b, named, ns) for b in schema])
    if isinstance(schema, str):
        if schema in named:
            return values(named[schema], named, ns)
        if f"{ns}.{schema}" in named:
            return values(named[f"{ns}.{schema}"], named, ns)
        return primitive(schema, None, {})
    kind, logical = schema["type"], schema.get("logicalType")
    if kind == "record":
        inner = schema.get("namespace", ns)
        named[f"{inner}.{schema['name']}" if inner else schema["name"]] = schema
        named[schema["name"]] = schema
        fields = {f["name"]: values(f["type"], named, inner) for f in schema["fields"]}
        return st.fixed_dictionaries(fields)
    if kind == "enum":
        named[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    return primitive(kind, logical, schema)


def primitive(kind: str, logical: str | None, schema: Schema) -> st.SearchStrategy[Any]:
    if logical == "date":
        return st.dates()
    if logical == "timestamp-micros":
        zones = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8))])
        aware = st.datetimes(timezones=zones)
        return st.one_of(aware, st.integers(-(2**62), 2**62))
    if logical == "decimal":
        scale = schema.get("scale", 0)
        return st.decimals(places=scale, allow_nan=False, allow_infinity=False,
                           min_value=-(10 ** (schema["precision"] - scale)) + 1,
                           max_value=10 ** (schema["precision"] - scale) - 1)
    if logical == "uuid":
        return st.uuids().map(str)
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "string": st.one_of(st.text(), st.text(min_size=1, max_size=4).map(lambda s: s * 5000)),
        "bytes": st.binary(),
    }[kind]


def same(a: Any, b: Any) -> bool:
    """Equality with NaN equal to itself (floats are compared by value otherwise)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@pytest.mark.parametrize("index", range(16))
def test_every_schema_compiles(bus: Bus, native: Any, index: int) -> None:
    schemas = all_schemas(bus)
    if index >= len(schemas):
        pytest.skip("fewer schemas")
    assert native.compile_encoder(schemas[index]) is not None
    assert native.compile_decoder(schemas[index]) is not None


@SETTINGS
@given(data=st.data())
def test_compiled_bytes_and_values_are_fastavros(
    bus: Bus, native: Any, data: st.DataObject
) -> None:
    schema = data.draw(st.sampled_from(all_schemas(bus)))
    record = data.draw(values(schema, {}))
    encode, decode = native.compile_encoder(schema), native.compile_decoder(schema)
    assert encode is not None and decode is not None
    body = fastavro_bytes(schema, record)
    try:
        compiled = encode(record)
    except Exception:  # outside the compiled set (strings over 16 KiB): the codec asks fastavro
        compiled = None
    assert compiled in (None, body)
    codec = Codec()
    fp = codec.register(schema)
    assert codec.encode(fp, record) == MAGIC + fp + body
    try:
        expected = fastavro_value(schema, body)
    except OverflowError:  # a timestamp beyond datetime's range: neither decodes it
        with pytest.raises(OverflowError):
            decode(body, 0)
        return
    assert decode(body, 0) == (expected, len(body))


@pytest.mark.parametrize("name", RESOURCE_SCHEMAS)
def test_realistic_events_and_views(bus: Bus, codec_kind: str, name: str) -> None:
    domain = bus.schemas.latest(name)
    schemas = [bus.schemas.event_schema(name)]
    for clearance in ("L1", "L2", "L3"):
        plan = compile_plan(domain, clearance, {}, None)
        schemas.append(view_event_schema(domain, plan, clearance, bus.schemas.envelope))
    records = make_records(name, 30, seed=11)
    for schema in schemas:
        codec = Codec()
        fp = codec.register(schema)
        for before, after in itertools.pairwise(records):
            event = {"event_id": str(uuid.uuid4()), "source": "s", "resource": name,
                     "op": "UPDATE", "key": "k", "region": "320508", "sequence": 7,
                     "occurred_at": 1_740_000_000_000_000, "published_at": 1_740_000_000_000_001,
                     "before": before, "after": after}
            if schema is not schemas[0]:
                event["before"] = event["after"] = None  # views hold masked records
            data = codec.encode(fp, event)
            assert data[HEADER_LEN:] == fastavro_bytes(schema, event)
            assert codec.decode(data)[0] == fastavro_value(schema, data[HEADER_LEN:])


def test_values_outside_the_compiled_set_get_fastavros_answer(bus: Bus, codec_kind: str) -> None:
    schema = bus.schemas.event_schema("licence.business")
    codec = Codec()
    fp = codec.register(schema)
    record = make_records("licence.business", 1, seed=3)[0]
    base = {"event_id": str(uuid.uuid4()), "source": "s", "resource": "licence.business",
            "op": "CREATE", "key": "k", "region": "320508", "sequence": 1,
            "occurred_at": 5, "published_at": 6, "after": record}
    variants = [
        {**base, "event_id": uuid.uuid4()},  # uuid.UUID, not str
        {**base, "after": ("syncbus.licence.business", record)},  # tuple notation
        {**base, "occurred_at": dt.datetime(2025, 1, 2, 3, 4, 5)},  # naive: local time
        {**base, "key": "长" * 6000},  # longer than the compiled length table
        {**base, "sequence": True},  # bool is an int to fastavro
        {**base, "extra": 1},  # fastavro ignores unknown keys
    ]
    for event in variants:
        assert codec.encode(fp, event) == MAGIC + fp + fastavro_bytes(schema, event)
    with pytest.raises(EncodeError):
        codec.encode(fp, {**base, "sequence": "1"})
    with pytest.raises(EncodeError):
        codec.encode(fp, {**base, "after": {**record, "status": "LOST"}})


def test_decimal_precision_errors_stay_fastavros(bus: Bus, codec_kind: str) -> None:
    codec = Codec()
    fp = codec.register(bus.schemas.latest("legal.company"))
    record = make_records("legal.company", 1, seed=3)[0]
    for capital in (Decimal("1.234"), Decimal("12345678901234567.00"), Decimal("NaN")):
        with pytest.raises(EncodeError):
            codec.encode(fp, {**record, "registered_capital": capital})


@SETTINGS
@given(data=st.data())
def test_damaged_bytes_decode_as_fastavro_decodes_them(
    bus: Bus, codec_kind: str, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(RESOURCE_SCHEMAS))
    schema = bus.schemas.latest(name)
    codec = Codec()
    fp = codec.register(schema)
    good = codec.encode(fp, make_records(name, 1, seed=data.draw(st.integers(0, 99)))[0])
    body = bytearray(good[HEADER_LEN:])
    cut = data.draw(st.integers(0, len(body)))
    for _ in range(data.draw(st.integers(0, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    damaged = bytes(body[:cut]) + data.draw(st.binary(max_size=4))
    try:
        expected: Any = fastavro_value(schema, damaged)
        stream = io.BytesIO(damaged)
        schemaless_reader(stream, parse_schema(copy.deepcopy(schema)), None)
        if stream.tell() != len(damaged):
            expected = CorruptBody
    except Exception:
        expected = CorruptBody
    if expected is CorruptBody:
        with pytest.raises(CorruptBody):
            codec.decode(MAGIC + fp + damaged)
    else:
        assert codec.decode(MAGIC + fp + damaged)[0] == expected


def test_nan_and_infinities_round_trip(native: Any) -> None:
    schema = {"type": "record", "name": "p", "fields": [
        {"name": "d", "type": "double"}, {"name": "f", "type": ["null", "float"]}]}
    encode, decode = native.compile_encoder(schema), native.compile_decoder(schema)
    assert encode is not None and decode is not None
    for d in (math.nan, math.inf, -math.inf, -0.0):
        record = {"d": d, "f": d}
        body = encode(record)
        assert body == fastavro_bytes(schema, record)
        value, _ = decode(body, 0)
        assert same(value["d"], d) and same(value["f"], d)


def test_unsupported_features_compile_to_none(native: Any) -> None:
    compile_encoder, compile_decoder = native.compile_encoder, native.compile_decoder
    for field_type in ({"type": "array", "items": "int"}, {"type": "map", "values": "int"},
                       {"type": "fixed", "name": "F", "size": 2},
                       {"type": "int", "logicalType": "time-millis"}):
        schema = {"type": "record", "name": "r", "fields": [{"name": "x", "type": field_type}]}
        assert compile_encoder(schema) is None
        assert compile_decoder(schema) is None
    # which branch a value takes is fastavro's search; reading one is unambiguous
    wide: Schema = {"type": "record", "name": "r", "fields": [
        {"name": "x", "type": ["null", "int", "string"]}]}
    assert compile_encoder(wide) is None
    decode = compile_decoder(wide)
    assert decode is not None
    for x in (None, 5, "five"):
        assert decode(fastavro_bytes(wide, {"x": x}), 0)[0] == {"x": x}
    recursive = {"type": "record", "name": "node", "fields": [
        {"name": "next", "type": ["null", "node"]}]}
    assert compile_encoder(recursive) is None
