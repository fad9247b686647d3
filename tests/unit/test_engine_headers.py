"""Every delivery's headers describe the delivery itself, not the raw event it came from.

A masked view is written with its own schema, so its fingerprint header must be the
view's (the one in its value), and no header name may appear twice.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from datetime import UTC, datetime

from syncbus.admin.names import TopicNames
from syncbus.core import topics as t
from syncbus.core.catalog import Bus
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.views import ViewCache
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import RawMessage, RoutingEngine
from syncbus.router.secrets import TokenSecrets

RES = "population.resident"
NAMES = TopicNames("")


def _raw(bus: Bus, offset: int, region: str) -> RawMessage:
    """A raw event with the headers a publisher gives it, the raw fingerprint among them."""
    codec = Codec()
    fp = codec.register(bus.schemas.event_schema(bus.resource(RES).schema))
    record = make_record(RES, region=region, seed=offset)
    value = codec.encode(fp, {
        "event_id": str(uuid.uuid4()), "source": "js-gaj", "resource": RES, "op": "CREATE",
        "key": record["id_number"], "region": region, "sequence": offset + 1,
        "occurred_at": 1, "published_at": 2, "before": None, "after": record,
    })
    headers = [(t.H_OP, b"CREATE"), (t.H_REGION, region.encode()),
               (t.H_FINGERPRINT, fp.hex().encode())]
    return RawMessage(NAMES.raw(RES), 0, offset, record["id_number"].encode(), value, headers)


def test_delivery_headers_name_the_view_schema_and_appear_once(bus: Bus) -> None:
    codec = Codec()
    secrets = TokenSecrets({s: f"secret-{s}" for s in bus.subscribers})
    policy = CompiledPolicy(bus, secrets, codec, ViewCache(), NAMES, os.urandom(32))
    engine = RoutingEngine(policy, codec, NAMES)
    batch = [_raw(bus, i, r) for i, r in enumerate(("320102", "320508", "320505", "320205"))]
    out = engine.process(batch, datetime.now(UTC), lambda _: 0)
    assert not out.dead and len(out.deliveries) >= 8
    raw_fps = {m.value[2:10] for m in batch if m.value}
    fingerprints = set()
    for _topic, _key, value, headers in out.deliveries:
        names = Counter(name for name, _ in headers)
        assert max(names.values()) == 1, names
        assert dict(headers)[t.H_FINGERPRINT] == value[2:10].hex().encode()
        fingerprints.add(value[2:10])
    assert fingerprints - raw_fps  # masked views were among them, with their own schema
