"""The router's byte path (``router._bytepath``, C) answers exactly as the Python path.

The Python path of ``RoutingEngine`` is the reference: for random events of every
shipped resource, valid and broken, both engines must write the same deliveries,
audit records, dead letters, sequences and counts, byte for byte; and each C mask
and token must equal its Python definition in ``core.masking``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncbus.admin.names import TopicNames
from syncbus.core import topics as t
from syncbus.core.catalog import Bus
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.masking import MASKS, mask_birth_date, token
from syncbus.core.views import ViewCache
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import RawMessage, RoutingEngine
from syncbus.router.secrets import TokenSecrets

try:
    from syncbus.router import _bytepath
except ImportError:  # setup.py builds it wherever gcc and the Python headers are
    _bytepath = None
NOT_BUILT = ("syncbus.router._bytepath is not built: install gcc, python3-dev and libssl-dev, "
             "then reinstall (make venv); without it every event takes the 5x slower Python path")


@pytest.fixture(autouse=True)
def _built() -> None:
    assert _bytepath is not None, NOT_BUILT
NAMES = TopicNames("")
REGIONS = ("320102", "320106", "320205", "320505", "320508", "320583", "320000", "110101")
OPS = ("CREATE", "UPDATE", "DELETE", "SNAPSHOT", "HEARTBEAT")
MARKERS = st.sampled_from(list("自治县旗区市\n a1*江苏省南京市玄武区ab"))
TEXT = st.text(alphabet=MARKERS | st.characters(blacklist_categories=("Cs",)))


@pytest.mark.parametrize("kind", sorted(MASKS))
@settings(max_examples=400, deadline=None)
@given(text=TEXT)
def test_each_mask_in_c_is_the_python_mask(kind: str, text: str) -> None:
    assert _bytepath.mask_text(kind, text) == MASKS[kind](text)


@settings(max_examples=300, deadline=None)
@given(day=st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_the_birth_date_mask_of_a_date_is_its_year(day: dt.date) -> None:
    days = (day - dt.date(1970, 1, 1)).days
    assert _bytepath.date_year_mask(days) == mask_birth_date(day)


@settings(max_examples=300, deadline=None)
@given(secret=st.binary(min_size=1, max_size=150), text=TEXT)
def test_tokens_in_c_are_hmac_sha256(secret: bytes, text: str) -> None:
    assert _bytepath.hmac_token(secret, text.encode()) == token(secret, text)


def _engines(bus: Bus) -> tuple[RoutingEngine, RoutingEngine]:
    secrets = {s: f"secret-{s}" for s in bus.subscribers}
    dlq_secret = os.urandom(32)
    engines = []
    for byte_path in (True, False):
        codec = Codec()
        policy = CompiledPolicy(
            bus, TokenSecrets(dict(secrets)), codec, ViewCache(), NAMES, dlq_secret
        )
        engines.append(RoutingEngine(policy, codec, NAMES, 10**9, byte_path=byte_path))
    return engines[0], engines[1]


def _event(bus: Bus, resource_id: str, rng: random.Random, n: int) -> RawMessage:
    res = bus.resource(resource_id)
    codec = Codec()
    version = None
    if resource_id == "population.resident" and rng.random() < 0.1:
        version = 1  # an older writer: resolved, never on the byte path
    schema = bus.schemas.event_schema(res.schema, version)
    fp = codec.register(schema)
    domain = [f["name"] for f in (bus.schemas.get(res.schema, version) if version
                                  else bus.schemas.latest(res.schema))["fields"]]
    op = rng.choice(OPS)
    region = rng.choice(REGIONS)
    after = make_record(res.schema, region=region, seed=rng.randrange(10**6))
    after = {k: v for k, v in after.items() if k in domain}
    if "address" in after and rng.random() < 0.3:
        after["address"] = rng.choice(["南京市\n玄武区一号", "区", "", "苏州市", "x\n区", "市区县"])
    if "name" in after and rng.random() < 0.2:
        after["name"] = rng.choice(["李", "", "欧阳娜娜", "Ann"])
    before = dict(after)
    if rng.random() < 0.3:  # a region move (resident: Gusu -> Xuanwu and the like)
        before[res.region_field] = rng.choice(REGIONS)
    if op in ("CREATE", "SNAPSHOT"):
        before = None
    if op == "DELETE":
        before, after = after, None
    if op == "HEARTBEAT":
        before = after = None
    key = None if op == "HEARTBEAT" else str((after or before or {})[res.key_field])
    event = {
        "event_id": str(uuid.uuid4()), "source": res.owner, "resource": resource_id,
        "op": op, "key": key, "region": None if op == "HEARTBEAT" else region,
        "sequence": n + 1, "occurred_at": 1_700_000_000_000_000 + n,
        "published_at": 1_700_000_000_000_100 + n, "before": before, "after": after,
    }
    value = codec.encode(fp, event)
    value = _maybe_broken(value, rng)
    headers = [(t.H_RESOURCE, resource_id.encode()), (t.H_OP, op.encode()),
               (t.H_REGION, region.encode()), (t.H_FINGERPRINT, fp.hex().encode())]
    return RawMessage(NAMES.raw(resource_id), n % 3, n, (key or "").encode(), value, headers)


def _maybe_broken(value: bytes, rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.05:  # a byte flipped anywhere
        i = rng.randrange(len(value))
        return value[:i] + bytes((value[i] ^ (1 << rng.randrange(8)),)) + value[i + 1:]
    if roll < 0.07:
        return value[: rng.randrange(len(value))]
    if roll < 0.08:
        return value + b"\x00"
    if roll < 0.09:  # router fields already set
        return value[:-1] + b"\x02\x02"
    return value


def _outputs_equal(fast: Any, slow: Any) -> None:
    assert fast.deliveries == slow.deliveries
    assert fast.audit == slow.audit
    assert fast.dead == slow.dead
    assert fast.quarantine == slow.quarantine
    assert fast.sequences == slow.sequences
    assert fast.delivered == slow.delivered
    assert fast.dead_by_error == slow.dead_by_error
    assert fast.schemas == slow.schemas


@pytest.mark.parametrize("seed", range(4))
def test_both_paths_write_the_same_bytes_for_every_event(bus: Bus, seed: int) -> None:
    rng = random.Random(seed)
    fast, slow = _engines(bus)
    resources = sorted(bus.resources)
    now = datetime.now(UTC)
    sequences: dict[str, int] = {}
    n = 0
    for _batch in range(3):
        batch = []
        for _ in range(300):
            batch.append(_event(bus, rng.choice(resources), rng, n))
            n += 1
        expected = slow.process(batch, now, lambda key: sequences.get(key, 5))
        got = fast.process(batch, now, lambda key: sequences.get(key, 5))
        _outputs_equal(got, expected)
        sequences.update({k: v for k, (_, v) in expected.sequences.items()})
    routed = sum(r.routed for r in fast._byte_routes.values() if r is not None)
    assert routed > n // 4  # the byte path answered for most valid events
    assert not slow._byte_routes or all(r is None for r in slow._byte_routes.values())


def test_the_resident_stream_takes_the_byte_path(bus: Bus) -> None:
    fast, _ = _engines(bus)
    rng = random.Random(7)
    batch = []
    for n in range(200):
        message = _event(bus, "population.resident", rng, n)
        batch.append(message)
    fast.process(batch, datetime.now(UTC), lambda _: 0)
    route = fast._byte_routes[NAMES.raw("population.resident")]
    assert route is not None and route.routed > 60


def test_an_event_that_fails_on_the_byte_path_is_dead_lettered_masked(bus: Bus) -> None:
    """A failure after the byte path vouched for an event (here the sequence store)
    dead-letters it as the Python path does: masked, not as its raw bytes."""
    fast, slow = _engines(bus)
    rng = random.Random(11)
    batch = [_event(bus, "population.resident", rng, n) for n in range(60)]

    def broken_store(key: str) -> int:
        raise RuntimeError("sequence store unavailable")

    expected = slow.process(batch, datetime.now(UTC), broken_store)
    got = fast.process(batch, datetime.now(UTC), broken_store)
    assert len(got.dead) == len(expected.dead)
    assert fast._byte_routes[NAMES.raw("population.resident")].routed > 0
    raw_values = {m.value for m in batch}
    failed = 0
    for (_, _, value, headers), (_, _, reference, _) in zip(got.dead, expected.dead, strict=True):
        assert value == reference
        if dict(headers)[t.H_DLQ_ERROR_CLASS] == b"RuntimeError":
            failed += 1
            assert value not in raw_values  # masked, as the Python path writes it
    assert failed > 10
