"""Property (#17): after any sequence of changes and grant edits, every sink equals the
share the core policy computes from the current state.

A seeded random run through the real bus: creates, updates, moves between cities and
deletes of residents, published by the Publisher SDK, interleaved with grant edits
applied by ``syncbus apply`` (approve or suspend Wuxi, narrow or widen Suzhou, raise
or lower Nanjing's clearance, suspend or restore Gusu). Then each subscriber's sink
must hold exactly what the routing engine (its Python path, the specification)
routes to it from the latest state of every key under the final policy: the same
keys, each with the same masked ID, name and region.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.catalog import load_bus
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.model import Bus
from syncbus.core.views import ViewCache
from syncbus.publisher import Publisher
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import RawMessage, RoutingEngine
from syncbus.router.secrets import TokenSecrets
from tests.grant_helpers import CHANGES, RES, GrantScene
from tests.router_helpers import SECRETS, RawWriter, RouterProcess, wait_for
from tests.subscriber_helpers import REPO

pytestmark = pytest.mark.slow
SEED = 17
REGIONS = ("320102", "320105", "320508", "320506", "320211", "320213")
SINKS = ("city.nanjing", "city.suzhou", "city.wuxi", "district.gusu", "district.xuanwu")
COMPARED = ("region", "name", "id_number")
EDITS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("city.wuxi", {"state": "approved", "approved_by": "js-gaj", "expires": "2027-12-31"}),
    ("city.wuxi", {"state": "pending", "approved_by": None, "expires": None}),
    ("city.suzhou", {"regions": ["320508"]}),
    ("city.suzhou", {"regions": None}),
    ("city.nanjing", {"clearance": "L1"}),
    ("city.nanjing", {"clearance": "L2"}),
    ("district.gusu", {"state": "pending", "approved_by": None}),
    ("district.gusu", {"state": "approved", "approved_by": "js-gaj"}),
)


def expected_share(bus: Bus, state: dict[str, dict[str, Any]]) -> dict[str, dict[str, tuple]]:
    """subscriber -> key -> the compared fields, as the engine routes the current state."""
    codec, names = Codec(), TopicNames()
    writer = RawWriter.__new__(RawWriter)  # only its encoder: no producer
    writer.bus, writer.names, writer.codec, writer._fps, writer._seq = bus, names, codec, {}, 0
    policy = CompiledPolicy(bus, TokenSecrets(SECRETS), codec, ViewCache(), names, b"k" * 32)
    engine = RoutingEngine(policy, codec, names)
    raws = []
    for offset, record in enumerate(state.values()):
        key, value, headers, _ = writer.encode(RES, "CREATE", record)
        raws.append(RawMessage(names.raw(RES), 0, offset, key, value, headers))
    output = engine.process(raws, datetime.now(UTC), lambda _key: 0)
    assert not output.dead, "the oracle dead-lettered a valid record"
    share: dict[str, dict[str, tuple]] = {s: {} for s in SINKS}
    for _topic, _key, value, _headers in output.deliveries:
        assert value is not None
        event = codec.decode(value)[0]
        if event["subscriber"] in share:
            after = event["after"]
            share[event["subscriber"]][event["key"]] = tuple(after[f] for f in COMPARED)
    return share


def sink_share(scene: GrantScene, subscriber: str) -> dict[str, tuple]:
    return {row["_key"]: tuple(row[f] for f in COMPARED) for row in scene.rows(subscriber)}


@pytest.fixture(scope="module")
def scene(bus_kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrantScene]:
    found = GrantScene(bus_kafka.bootstrap, tmp_path_factory.mktemp("grant-property"))
    found.apply()
    router = RouterProcess(bus_kafka.bootstrap, found.root / "router").start()
    for subscriber in SINKS:
        found.start_sink(subscriber)
    try:
        yield found
    finally:
        found.stop()
        router.stop()


def test_every_sink_equals_the_share_of_the_current_state(scene: GrantScene) -> None:
    rng = random.Random(SEED)
    state: dict[str, dict[str, Any]] = {}
    definition = load_bus(scene.streams, REPO / "schemas")
    spool = scene.root / "gaj.db"
    with Publisher("js-gaj", definition, Connection(scene.bootstrap), spool_path=spool) as pub:
        for _round in range(6):
            for _ in range(25):
                keys = sorted(state)
                choice = rng.random() if keys else 0.0
                if choice < 0.4:  # a new resident
                    record = make_record(RES, region=rng.choice(REGIONS), rng=rng)
                    pub.publish(RES, "CREATE", after=record)
                    state[record["id_number"]] = record
                elif choice < 0.6:  # an update in place
                    before = state[rng.choice(keys)]
                    after = dict(before, phone=f"139{rng.randrange(10**8):08d}")
                    pub.publish(RES, "UPDATE", before=before, after=after)
                    state[after["id_number"]] = after
                elif choice < 0.85:  # a move to another city or district
                    before = state[rng.choice(keys)]
                    region = rng.choice([r for r in REGIONS if r != before["region"]])
                    after = dict(before, region=region)
                    pub.publish(RES, "UPDATE", before=before, after=after)
                    state[after["id_number"]] = after
                else:
                    gone = state.pop(rng.choice(keys))
                    pub.publish(RES, "DELETE", before=gone)
            assert pub.flush(60) == 0
            subscriber, changes = EDITS[rng.randrange(len(EDITS))]
            scene.edit_grant(subscriber, **changes)  # the next changes overlap its resync
    final = load_bus(scene.streams, REPO / "schemas")
    expected = expected_share(final, state)
    assert sum(map(len, expected.values())) > 20, "the run left the sinks nearly nothing"
    for subscriber in SINKS:
        try:
            wait_for(lambda s=subscriber: sink_share(scene, s) == expected[s], CHANGES,
                     f"{subscriber}'s sink to equal its share")
        except AssertionError:
            held, want = sink_share(scene, subscriber), expected[subscriber]
            extra = {k: v for k, v in held.items() if want.get(k) != v}
            missing = {k: v for k, v in want.items() if held.get(k) != v}
            raise AssertionError(f"{subscriber}: held but not entitled {extra}; "
                                 f"entitled but not held {missing}") from None
