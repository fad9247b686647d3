"""Masking by the schema tags: each kind's mask, default deny, tokens, and the invariant
that no field above a grant's clearance is ever delivered as its raw value."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncbus.core.catalog import Bus
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.masking import (
    DROP,
    MASK,
    PASS,
    TOKEN,
    Masker,
    compile_plan,
    mask_address,
    mask_birth_date,
    mask_id_number,
    mask_name,
    mask_phone,
    token,
    tokeniser,
)
from syncbus.core.model import Grant
from syncbus.core.rules import MASK_KINDS
from syncbus.core.schemas import field_grade, iter_fields
from syncbus.core.views import ViewCache

SECRET = b"test-secret-of-a-subscriber"
SHARED = (
    "population.resident",
    "population.marriage",
    "legal.company",
    "licence.business",
    "spatial.parcel",
    "credit.penalty",
)


def test_each_kind_keeps_only_what_design_allows() -> None:
    assert mask_id_number("320508199001011234") == "320508**********34"
    assert mask_name("张三丰") == "张**"
    assert mask_phone("13812341234") == "138****1234"
    assert mask_birth_date(dt.date(1990, 1, 1)) == "1990"
    assert mask_address("江苏省苏州市姑苏区人民路100号") == "江苏省苏州市姑苏区"
    assert mask_address("南京市中山路1号") == "南京市"


def test_a_mask_never_returns_the_raw_value() -> None:
    assert mask_name("张") == "*"
    assert mask_address("江苏省苏州市姑苏区") != "江苏省苏州市姑苏区"
    assert mask_address("人民路100号") == ""  # no district to keep: nothing
    assert mask_phone("110") == "***"


def test_tokens_are_keyed_per_subscriber() -> None:
    a, b = token(b"a", "320508199001011234"), token(b"b", "320508199001011234")
    assert a != b and len(a) == 32
    assert a == token(b"a", "320508199001011234")


@settings(max_examples=300, deadline=None)
@given(secret=st.binary(max_size=150), value=st.one_of(st.text(), st.integers(), st.dates()))
def test_the_tokeniser_is_hmac_sha256(secret: bytes, value: Any) -> None:
    """The tokeniser (a keyed ``hmac`` copied per text, tokens remembered) gives
    exactly HMAC-SHA256's tokens, for secrets shorter and longer than SHA-256's
    64-byte block."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    expected = hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()[:32]
    tokenise = tokeniser(secret)
    assert tokenise(value) == expected and tokenise(value) == expected  # remembered too


def test_plan_of_a_city_on_residents(bus: Bus) -> None:
    schema = bus.schemas.latest("population.resident")
    plan = compile_plan(schema, "L2", {}, "id_number")
    actions = {r.name: (r.action, r.kind) for r in plan.rules}
    assert actions["id_number"] == (MASK, "id_number")
    assert actions["gender"] == (PASS, None)
    assert actions["region"] == (PASS, None)
    assert actions["email"] == (DROP, None)  # L3, no mask for its kind: default deny
    assert plan.key_action == TOKEN  # the key is a citizen ID above L2
    assert plan.needs_secret


def test_grant_masks_make_stricter_but_never_lift(bus: Bus) -> None:
    schema = bus.schemas.latest("population.resident")
    plan = compile_plan(
        schema, "L2", {"address": "drop", "name": "pass", "gender": "token"}, "id_number"
    )
    actions = {r.name: r.action for r in plan.rules}
    assert actions["address"] == DROP
    assert actions["name"] == MASK  # "pass" cannot lift an L3 field to an L2 grant
    assert actions["gender"] == TOKEN


def test_nested_records_take_their_highest_grade(bus: Bus) -> None:
    schema = bus.schemas.latest("spatial.parcel")
    actions = {r.name: r.action for r in compile_plan(schema, "L2", {}, "unit_id").rules}
    assert actions["location"] == DROP
    assert actions["owner_id"] == MASK
    full = compile_plan(schema, "L4", {}, "unit_id")
    assert full.is_identity and not full.needs_secret


def test_a_masker_without_its_secret_refuses(bus: Bus) -> None:
    plan = compile_plan(bus.schemas.latest("population.resident"), "L2", {}, "id_number")
    with pytest.raises(ValueError, match="secret"):
        Masker(plan, None)


def _raw_values_above(schema: dict[str, Any], clearance: str, record: dict[str, Any]) -> dict:
    top = {}
    for path, field in iter_fields(schema):
        name = path.split(".")[0]
        if field_grade(field) > clearance and record.get(name) is not None:
            top[name] = record[name]
    return top


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schema_name=st.sampled_from(SHARED),
    seed=st.integers(0, 10_000),
    clearance=st.sampled_from(("L1", "L2", "L3", "L4")),
    region=st.sampled_from(("320508", "320102", "320205", "320583")),
    masks=st.dictionaries(
        st.sampled_from(
            (
                "name",
                "address",
                "phone",
                "id_number",
                "owner_id",
                "location",
                "party_a_id",
                "subject_name",
                "uscc",
            )
        ),
        st.sampled_from(sorted(MASK_KINDS)),
        max_size=4,
    ),
)
def test_no_field_above_clearance_is_ever_delivered_raw(
    bus: Bus, schema_name: str, seed: int, clearance: str, region: str, masks: dict[str, str]
) -> None:
    schema = bus.schemas.latest(schema_name)
    names = {path for path, _ in iter_fields(schema)}
    grant_masks = {k: v for k, v in masks.items() if k in names}
    resource = next(r for r in bus.resources.values() if r.schema == schema_name)
    record = make_record(schema_name, region=region, seed=seed)
    grant = Grant("someone", resource.id, clearance, grant_masks)
    view = ViewCache().get(schema, grant, resource.key_field)
    masker = Masker(view.plan, SECRET)
    delivered = masker.record(record)
    assert delivered is not None
    for name, raw in _raw_values_above(schema, clearance, record).items():
        assert delivered.get(name) != raw, f"{name} above {clearance} delivered raw"
    key = str(record[resource.key_field])
    if any(
        f["name"] == resource.key_field and field_grade(f) > clearance for f in schema["fields"]
    ):
        assert masker.key(key) != key
    # and what is delivered fits the view schema the subscriber decodes with
    codec = Codec()
    fp = codec.register(view.event_schema)
    event = {
        "event_id": "00000000-0000-0000-0000-000000000001",
        "source": "x",
        "resource": resource.id,
        "op": "CREATE",
        "key": masker.key(key),
        "region": region,
        "sequence": 1,
        "occurred_at": 0,
        "published_at": 0,
        "before": None,
        "after": delivered,
    }
    decoded, _ = codec.decode(codec.encode(fp, event))
    assert set(delivered) <= set(decoded["after"])


def _interpreted(plan: Any, secret: bytes, record: dict[str, Any]) -> dict[str, Any]:
    """The plan applied rule by rule: the reference the compiled masker must equal."""
    out: dict[str, Any] = {}
    for rule in plan.rules:
        value = record.get(rule.name)
        if rule.action == DROP:
            continue
        if rule.action == PASS or value is None:
            out[rule.name] = value
        elif rule.action == TOKEN:
            out[rule.name] = token(secret, value)
        else:
            out[rule.name] = {
                "id_number": mask_id_number,
                "name": mask_name,
                "phone": mask_phone,
                "birth_date": mask_birth_date,
                "address": mask_address,
            }[rule.kind](value)
    return out


@pytest.mark.parametrize(
    "grant_key",
    [
        "city.suzhou/spatial.parcel",
        "city.nanjing/population.resident",
        "city.suzhou/population.resident",
    ],
)
def test_the_compiled_plan_equals_applying_its_rules_one_by_one(bus: Bus, grant_key: str) -> None:
    grant = next(g for g in bus.grants if g.key == grant_key)
    resource = bus.resource(grant.resource)
    domain = bus.schemas.latest(resource.schema)
    plan = compile_plan(domain, grant.clearance, grant.masks, resource.key_field)
    assert not plan.is_identity
    masker = Masker(plan, SECRET)
    for seed in range(20):
        record = make_record(resource.schema, region="320508", seed=seed)
        if seed % 3 == 0:  # nullable fields left out or null still come out null
            record = {k: (None if i % 2 else v) for i, (k, v) in enumerate(record.items())}
        assert masker.record(record) == _interpreted(plan, SECRET, record)
        key = str(record.get(resource.key_field))
        assert masker.key(key) == (key if plan.key_action == PASS else token(SECRET, key))


def test_a_remembered_token_is_the_token_of_its_secret_and_value() -> None:
    tokenise = tokeniser(b"secret-a")
    other = tokeniser(b"secret-b")
    values: list[Any] = ["320102199206070412", "320102199206070412", "x", dt.date(1990, 1, 2)]
    for _ in range(2):  # the second round reads remembered tokens, then forgets them
        assert [tokenise(v) for v in values] == [token(b"secret-a", v) for v in values]
        assert [other(v) for v in values] == [token(b"secret-b", v) for v in values]
        assert tokenise(values[0]) != other(values[0])
        tokenise.forget()


def test_a_mask_on_a_nested_field_is_never_ignored(bus: Bus) -> None:
    """``check`` refuses it; a policy that carries one anyway drops the whole field,
    never the nested value delivered raw (it used to be ignored)."""
    resource = bus.resource("spatial.parcel")
    schema = bus.schemas.latest(resource.schema)
    plan = compile_plan(schema, "L3", {"location.longitude": "drop"}, resource.key_field)
    assert {r.name: r.action for r in plan.rules}["location"] == "drop"
    record = make_record(resource.schema, region="320508", seed=3)
    masked = Masker(plan, b"secret").record(record)
    assert masked is not None and "location" not in masked
    assert record["location"]["longitude"] not in _leaves(masked)
    passing = compile_plan(schema, "L3", {"location.longitude": "pass"}, resource.key_field)
    assert {r.name: r.action for r in passing.rules}["location"] == "pass"  # pass lifts nothing


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value]
