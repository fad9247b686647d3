"""Share events produced the way the router does (wire contract), for SDK and sink tests.

Issue #17 (docs/resync-contract.md): ``version=`` adds ``syncbus-source-offset``,
``resync=`` makes a resync delivery (its id header, a delivery sequence that means
nothing, a DELETE with neither before nor after), and ``marker(...)`` writes a begin
or end marker to every partition of the share topic, key and value null.

Until a test uses the real router, these helpers stand in for its output only: the
view schema (fields above the grant's clearance masked to nullable strings or
dropped, record names kept), its registration in ``syncbus.schemas``, single-object
Avro values and the headers of a delivery. The broker is always the real one.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from syncbus.core.codec import Codec
from syncbus.core.schemas import SchemaRepository, event_schema
from syncbus.core.topics import (
    H_DELIVERY_SEQUENCE,
    H_EVENT_ID,
    H_FINGERPRINT,
    H_GRANT,
    H_MARKER,
    H_OCCURRED_AT,
    H_OP,
    H_PUBLISHED_AT,
    H_REGION,
    H_RESOURCE,
    H_RESYNC,
    H_RESYNC_KIND,
    H_ROUTED_AT,
    H_SEQUENCE,
    H_SOURCE,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SUBSCRIBER,
    H_WATERMARK,
    SCHEMAS_TOPIC,
    share_topic,
)

REPO = Path(__file__).resolve().parents[1]
GRADES = ("L1", "L2", "L3", "L4")


def repository() -> SchemaRepository:
    return SchemaRepository.from_dir(REPO / "schemas")


def ensure_topic(bootstrap: str, topic: str, partitions: int = 1, compacted: bool = False) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"cleanup.policy": "compact"} if compacted else {}
    future = admin.create_topics([NewTopic(topic, partitions, 1, config=config)])[topic]
    try:
        future.result(timeout=30)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def view_domain(domain: Mapping[str, Any], clearance: str) -> dict[str, Any]:
    """The domain record as a grant of ``clearance`` sees it (same record name)."""
    view = copy.deepcopy(dict(domain))
    fields = []
    for f in view["fields"]:
        if GRADES.index(f["grade"]) <= GRADES.index(clearance):
            fields.append(f)
        elif "pii" in f:
            fields.append({**f, "type": ["null", "string"], "default": None})
    view["fields"] = fields
    return view


def mask(
    domain_view: Mapping[str, Any], record: Mapping[str, Any], clearance: str
) -> dict[str, Any]:
    """A record cut to a view: fields above the clearance keep their first character."""
    out = {}
    for f in domain_view["fields"]:
        value = record.get(f["name"])
        if GRADES.index(f["grade"]) > GRADES.index(clearance) and value is not None:
            value = str(value)
            value = value[:1] + "*" * (len(value) - 1)
        out[f["name"]] = value
    return out


@dataclass
class ShareProducer:
    """Produces deliveries to ``share.<subscriber>.<resource>`` as the router would."""

    bootstrap: str
    subscriber: str
    resource: str = "population.resident"
    schema: str = "population.resident"
    version: int | None = None
    clearance: str = "L4"
    partitions: int = 1
    codec: Codec = field(default_factory=Codec)
    _sequences: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        repo = repository()
        domain = (
            repo.latest(self.schema)
            if self.version is None
            else repo.get(self.schema, self.version)
        )
        self.domain_view = view_domain(domain, self.clearance)
        self.writer = event_schema(self.domain_view)
        self.fp = self.codec.register(self.writer)
        self.topic = share_topic(self.subscriber, self.resource)
        ensure_topic(self.bootstrap, self.topic, self.partitions)
        ensure_topic(self.bootstrap, SCHEMAS_TOPIC, 1, compacted=True)
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        self.producer.produce(
            SCHEMAS_TOPIC, json.dumps(self.writer).encode(), self.fp.hex().encode()
        )
        self.producer.flush(30)

    def event(
        self,
        record: Mapping[str, Any],
        op: str = "CREATE",
        source_partition: int = 0,
        event_id: str | None = None,
        skip_sequence: int = 0,
        version: int | None = None,
        resync: str | None = None,
    ) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
        """(event id, key, value, headers) of one delivery; ``skip_sequence`` makes a gap.
        A resync delivery does not advance the live delivery sequence and carries a
        far-off one, which would be a gap if the SDK fed it to gap detection."""
        now = dt.datetime.now(dt.UTC)
        if resync is None:
            seq = self._sequences.get(source_partition, 0) + 1 + skip_sequence
            self._sequences[source_partition] = seq
        else:
            seq = 1_000_000
        event_id = event_id or str(uuid.uuid4())
        key = str(record.get("id_number") or record.get("uscc") or uuid.uuid4())
        region = str(record.get("region", "320508"))
        view = mask(self.domain_view, record, self.clearance)
        envelope = {
            "event_id": event_id,
            "source": "js-gaj",
            "resource": self.resource,
            "op": op,
            "key": key,
            "region": region,
            "sequence": seq,
            "occurred_at": now,
            "published_at": now,
            "before": view if op == "DELETE" and resync is None else None,
            "after": None if op == "DELETE" else view,
            "subscriber": self.subscriber,
            "delivery_sequence": seq,
            "routed_at": now,
        }
        micros = str(int(now.timestamp() * 1_000_000)).encode()
        headers = [
            (H_EVENT_ID, event_id.encode()),
            (H_SOURCE, b"js-gaj"),
            (H_RESOURCE, self.resource.encode()),
            (H_OP, op.encode()),
            (H_REGION, region.encode()),
            (H_SEQUENCE, str(seq).encode()),
            (H_OCCURRED_AT, micros),
            (H_PUBLISHED_AT, micros),
            (H_FINGERPRINT, self.fp.hex().encode()),
            (H_SUBSCRIBER, self.subscriber.encode()),
            (H_GRANT, f"{self.subscriber}/{self.resource}".encode()),
            (H_DELIVERY_SEQUENCE, str(seq).encode()),
            (H_ROUTED_AT, micros),
            (H_SOURCE_PARTITION, str(source_partition).encode()),
        ]
        if version is not None:
            headers.append((H_SOURCE_OFFSET, str(version).encode()))
        if resync is not None:
            headers.append((H_RESYNC, resync.encode()))
        return event_id, key.encode(), self.codec.encode(self.fp, envelope), headers

    def send(
        self, records: Iterable[Mapping[str, Any]], op: str = "CREATE", **kw: Any
    ) -> list[str]:
        """Produce one delivery per record, flushed; returns their event ids in order."""
        ids = []
        for record in records:
            event_id, key, value, headers = self.event(record, op, **kw)
            partition = zlib.crc32(key) % self.partitions
            self.producer.produce(self.topic, value, key, partition=partition, headers=headers)
            ids.append(event_id)
        self.producer.flush(30)
        return ids

    def marker(
        self,
        resync: str,
        marker: str,
        kind: str = "full",
        watermark: Mapping[int, int] | None = None,
    ) -> None:
        """A begin or end marker on every partition of the share topic, flushed."""
        headers = [
            (H_RESYNC, resync.encode()),
            (H_MARKER, marker.encode()),
            (H_RESYNC_KIND, kind.encode()),
            (H_WATERMARK, json.dumps({str(p): o for p, o in (watermark or {}).items()}).encode()),
            (H_RESOURCE, self.resource.encode()),
        ]
        for partition in range(self.partitions):
            self.producer.produce(self.topic, None, None, partition=partition, headers=headers)
        self.producer.flush(30)

    def send_raw(self, value: bytes, key: bytes = b"junk") -> None:
        self.producer.produce(self.topic, value, key)
        self.producer.flush(30)
