"""Both router paths write the same bytes on GENERATED schemas, not only the shipped ones.

``test_bytepath.py`` compares the byte path (C) with the Python path on the shipped
resources, whose schemas use a handful of shapes. Here a seeded generator writes a
resource whose schema mixes every field type the Python path routes (strings with
each format, bytes, int, long, boolean, enum, date, timestamp, double, decimal, a
nested record, nullable either way round), tagged with every PII kind
(each mask, and one with no mask) and every grade, and grants with every clearance
and mask override (drop, token, pass, a kind's mask). Both engines must write the
same deliveries, audit records, dead letters and counts for random events, valid
and broken, whichever path the byte path chose for the resource.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.conftest import STREAMS
from tests.unit.test_bytepath import (
    NAMES,
    NOT_BUILT,
    _bytepath,
    _engines,
    _maybe_broken,
    _outputs_equal,
)

from syncbus.core import topics as t
from syncbus.core.catalog import Bus, load_bus
from syncbus.core.codec import Codec
from syncbus.core.fake import citizen_id, make_record, uscc_for
from syncbus.core.masking import MASKS
from syncbus.router.engine import RawMessage

RESOURCE = "gen.record"
REGIONS = ("320102", "320106", "320505", "320508", "320000", "110101")
GRADES = ("L1", "L2", "L3", "L4")
KINDS = (*sorted(MASKS), "location", None)  # "location" has no mask: dropped above clearance
SIMPLE = ("string", "bytes", "int", "long", "boolean", "enum", "date", "timestamp")
OTHER = ("double", "decimal", "record")  # the byte path declines these
FORMATS = (None, None, "citizen_id", "uscc", "region_code")
OVERRIDES = ("drop", "token", "pass", *sorted(MASKS))
SEEDS = 18  # every third schema may use shapes the byte path declines


@pytest.fixture(autouse=True)
def _built() -> None:
    assert _bytepath is not None, NOT_BUILT


def _avro_type(kind: str, i: int) -> Any:
    return {
        "string": "string", "bytes": "bytes", "int": "int", "long": "long",
        "boolean": "boolean", "double": "double",
        "enum": {"type": "enum", "name": f"E{i}", "symbols": ["A", "B", "C"]},
        "date": {"type": "int", "logicalType": "date"},
        "timestamp": {"type": "long", "logicalType": "timestamp-micros"},
        "decimal": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
        "record": {"type": "record", "name": f"R{i}", "fields": [
            {"name": "x", "type": "double", "grade": "L2"},
            {"name": "y", "type": "string", "grade": "L3", "pii": "address"}]},
    }[kind]


def generate_schema(rng: random.Random, eligible: bool) -> tuple[dict[str, Any], list[str]]:
    """A record schema with a citizen-ID key and a region field, and 3-12 more fields;
    with ``eligible`` only shapes the byte path knows. Returns it and its field kinds."""
    fields: list[dict[str, Any]] = [
        {"name": "key", "type": "string", "grade": rng.choice(GRADES), "pii": "id_number",
         "format": "citizen_id"},
        {"name": "region", "type": "string", "grade": "L1", "format": "region_code"},
    ]
    kinds = ["citizen_id", "region_code"]
    for i in range(rng.randint(3, 12)):
        kind = rng.choice(SIMPLE if eligible or rng.random() < 0.7 else OTHER)
        field: dict[str, Any] = {"name": f"f{i}", "grade": rng.choice(GRADES)}
        pii = rng.choice(KINDS)
        if eligible and kind not in ("string", "date"):  # masks of text (and a birth year)
            pii = None
        elif eligible and kind == "date":
            pii = rng.choice(("birth_date", None))
        if pii is not None:
            field["pii"] = pii
        fmt = rng.choice(FORMATS) if kind == "string" else None
        if fmt is not None:
            field["format"] = fmt
        type_ = _avro_type(kind, i)
        if rng.random() < 0.35 and kind != "record":
            type_ = ["null", type_] if rng.random() < 0.7 else [type_, "null"]
        field["type"] = type_
        fields.append(field)
        kinds.append(fmt or kind)
    return {"type": "record", "name": "record", "namespace": "syncbus.gen",
            "fields": fields}, kinds


def _value(kind: str, rng: random.Random, region: str) -> Any:
    born = dt.date(2013, 1, 1) + dt.timedelta(days=rng.randrange(3000))
    if kind == "citizen_id":
        return citizen_id(region, born, rng)
    if kind == "uscc":
        return uscc_for(region, rng)
    if kind == "region_code":
        return rng.choice(REGIONS)
    return {
        "string": lambda: rng.choice(["南京市玄武区一号", "李娜", "13812345678", "", "x\n区",
                                      "欧阳", "2001-02-03", "a" * rng.randrange(40)]),
        "bytes": lambda: rng.randbytes(rng.randrange(6)),
        "int": lambda: rng.randint(-2**31, 2**31 - 1),
        "long": lambda: rng.randint(-2**63, 2**63 - 1),
        "boolean": lambda: rng.random() < 0.5,
        "enum": lambda: rng.choice("ABC"),
        "date": lambda: born,
        "timestamp": lambda: datetime(2020, 1, 1, tzinfo=UTC) + dt.timedelta(
            microseconds=rng.randrange(10**15)),
        "double": lambda: rng.uniform(-1e6, 1e6),
        "decimal": lambda: Decimal(rng.randrange(-10**9, 10**9)) / 100,
        "record": lambda: {"x": rng.random(), "y": "苏州市姑苏区一号"},
    }[kind]()


def _record(schema: dict[str, Any], kinds: list[str], rng: random.Random,
            region: str) -> dict[str, Any]:
    record = {}
    for field, kind in zip(schema["fields"], kinds, strict=True):
        nullable = isinstance(field["type"], list)
        record[field["name"]] = (None if nullable and rng.random() < 0.25
                                 else _value(kind, rng, region))
    record["region"] = region
    return record


def _grants(rng: random.Random, schema: dict[str, Any], eligible: bool) -> list[dict[str, Any]]:
    subscribers = yaml.safe_load((STREAMS / "subscribers.yaml").read_text())["subscribers"]
    names = [f["name"] for f in schema["fields"]
             if not eligible or f["type"] in ("string", ["null", "string"], ["string", "null"])]
    grants = []
    for sub in subscribers:
        grant: dict[str, Any] = {"subscriber": sub["id"], "resource": RESOURCE,
                                 "clearance": rng.choice(GRADES), "state": "approved",
                                 "purpose": "generated"}
        masks = {n: rng.choice(OVERRIDES) for n in rng.sample(names, rng.randrange(3))}
        if masks:
            grant["masks"] = masks
        grants.append(grant)
    return grants


def generated_bus(streams: Path, schemas: Path, rng: random.Random, eligible: bool
                  ) -> tuple[Bus, dict[str, Any], list[str]]:
    """The shipped bus plus one generated resource and its grants, written into the
    copies ``streams`` and ``schemas`` (again from the shipped files on every call)."""
    schema, kinds = generate_schema(rng, eligible)
    (schemas / f"{RESOURCE}.v1.avsc").write_text(json.dumps(schema, ensure_ascii=False))
    resources = yaml.safe_load((STREAMS / "resources.yaml").read_text())
    resources["resources"].append({
        "id": RESOURCE, "owner": "js-gaj", "schema": RESOURCE, "key_field": "key",
        "region_field": "region", "sharing": "unconditional", "update_cycle": "5m",
        "sla": {"latency_p99": "2s", "completeness": 0.999, "freshness": "10m"}})
    (streams / "resources.yaml").write_text(yaml.safe_dump(resources, allow_unicode=True))
    grants = yaml.safe_load((STREAMS / "grants.yaml").read_text())
    grants["grants"] += _grants(rng, schema, eligible)
    (streams / "grants.yaml").write_text(yaml.safe_dump(grants, allow_unicode=True))
    return load_bus(streams, schemas), schema, kinds


def _event(bus: Bus, schema: dict[str, Any], kinds: list[str], rng: random.Random,
           n: int) -> RawMessage:
    codec = Codec()
    fp = codec.register(bus.schemas.event_schema(RESOURCE))
    op = rng.choice(("CREATE", "UPDATE", "DELETE", "SNAPSHOT", "UPDATE", "CREATE"))
    region = rng.choice(REGIONS)
    after = _record(schema, kinds, rng, region)
    before = dict(after) if op == "UPDATE" else None
    if before is not None and rng.random() < 0.2:
        before["region"] = rng.choice(REGIONS)  # a region move
    if op == "DELETE":
        before, after = after, None
    key = (after or before or {})["key"]
    event = {
        "event_id": str(uuid.uuid4()), "source": "js-gaj", "resource": RESOURCE,
        "op": op, "key": key, "region": region, "sequence": n + 1,
        "occurred_at": 1_700_000_000_000_000 + n, "published_at": 1_700_000_000_000_100 + n,
        "before": before, "after": after,
    }
    value = _maybe_broken(codec.encode(fp, event), rng)
    headers = [(t.H_RESOURCE, RESOURCE.encode()), (t.H_OP, op.encode()),
               (t.H_REGION, region.encode()), (t.H_FINGERPRINT, fp.hex().encode())]
    return RawMessage(NAMES.raw(RESOURCE), n % 3, n, key.encode(), value, headers)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_both_paths_write_the_same_bytes_on_a_generated_schema(
    bus_copy: tuple[Path, Path], seed: int
) -> None:
    rng = random.Random(seed)
    bus, schema, kinds = generated_bus(*bus_copy, rng, eligible=seed % 3 != 2)
    fast, slow = _engines(bus)
    now = datetime.now(UTC)
    batch = [_event(bus, schema, kinds, rng, n) for n in range(150)]
    expected = slow.process(batch, now, lambda _: 3)
    got = fast.process(batch, now, lambda _: 3)
    _outputs_equal(got, expected)
    assert expected.deliveries, "a generated resource that reaches nobody tests nothing"


def test_the_generator_reaches_the_byte_path_and_every_shape(
    bus_copy: tuple[Path, Path]
) -> None:
    """The generated schemas are not all declined (else the comparison above would
    compare Python with itself), and together they use every type, kind and override."""
    on_bytes, kinds_seen, pii_seen = 0, set(), set()
    for seed in range(SEEDS):
        rng = random.Random(seed)
        streams, schemas = bus_copy
        bus, schema, kinds = generated_bus(streams, schemas, rng, eligible=seed % 3 != 2)
        fast, _ = _engines(bus)
        fast._byte_route(NAMES.raw(RESOURCE))
        on_bytes += fast.paths.paths[RESOURCE][0] == "byte"
        kinds_seen |= set(kinds)
        pii_seen |= {f.get("pii") for f in schema["fields"]}
    assert on_bytes >= SEEDS // 3
    assert kinds_seen >= {*SIMPLE, *OTHER, "citizen_id", "uscc", "region_code"}
    assert pii_seen >= {*MASKS, "location"}


def test_grants_with_equal_view_schemas_but_other_masks_each_get_their_own(
    bus_copy: tuple[Path, Path]
) -> None:
    """What the generator found: Nanjing masks names as ID numbers, Xuanwu (same
    clearance) by the default name mask; their view schemas are equal (both a masked
    string), yet each must receive its own mask, on both paths."""
    streams, schemas = bus_copy
    grants = yaml.safe_load((streams / "grants.yaml").read_text())
    for grant in grants["grants"]:
        if (grant["subscriber"], grant["resource"]) == ("city.nanjing", "population.resident"):
            grant["masks"] = {"name": "id_number"}
    (streams / "grants.yaml").write_text(yaml.safe_dump(grants, allow_unicode=True))
    bus = load_bus(streams, schemas)
    codec = Codec()
    fp = codec.register(bus.schemas.event_schema("population.resident"))
    record = make_record("population.resident", region="320102", seed=1)
    record["name"] = "欧阳娜娜"
    event = {"event_id": str(uuid.uuid4()), "source": "js-gaj",
             "resource": "population.resident", "op": "CREATE", "key": record["id_number"],
             "region": "320102", "sequence": 1, "occurred_at": 1_700_000_000_000_000,
             "published_at": 1_700_000_000_000_100, "before": None, "after": record}
    message = RawMessage(NAMES.raw("population.resident"), 0, 0, record["id_number"].encode(),
                         codec.encode(fp, event), [])
    for engine in _engines(bus):
        out = engine.process([message], datetime.now(UTC), lambda _: 0)
        names = {topic.split(".")[2]: value for topic, _, value, _ in out.deliveries
                 if topic.startswith("share.")}
        assert "欧***".encode() in names["xuanwu"] and "欧***".encode() not in names["nanjing"]
        assert b"****" in names["nanjing"]
