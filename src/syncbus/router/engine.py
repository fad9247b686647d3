"""One batch of raw events in, everything the router must write out: no Kafka here.

Each event is decoded once (to the resource's latest schema), validated once and
routed once; each distinct view is masked and encoded once per event, and each
delivery only appends its router fields (``views.router_suffix``). A delivery
carries two headers, the source partition and the source offset (the key's
version, ``core.topics``): no header of the raw event reaches a subscriber.
Whatever cannot be decoded, validated or routed becomes a dead letter in
``syncbus.dlq`` naming the source topic, partition, offset and the reason, with
the record masked when it decodes and no body when it does not; the raw event
goes to ``syncbus.quarantine``, which only the admin reads, for ``syncbus dlq
redrive``. The Faust adapter and the benchmark's plain confluent-kafka loop both
run this same engine, so they compare frameworks, not work.

Most events never reach the Python code below: where ``_bytepath`` (C) vouches for
an event, it routes it from its bytes and produces exactly what this code would
(tests compare both byte for byte); every event it does not vouch for, and every
bad one, takes the Python path, which stays the reference.

Dead letters are for bad input, not for a bad router. Input alone never stops the
engine: an event that fails to decode or to pass the checks is the input's fault,
whatever arrives (a flood of junk, writers whose schema is not applied yet: they
wait in quarantine). An event that passed them and still fails is the router's
(a masking or encoding bug); when ``max_consecutive_dead`` such events come in a
row, with no valid event routed between them, the engine raises
``DeadLetterLimit`` and the adapter stops before acking the batch, so nothing of
it is lost.
"""

from __future__ import annotations

import gc
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any, NamedTuple, Protocol

from syncbus.admin.names import TopicNames
from syncbus.core import topics as t
from syncbus.core.codec import HEADER_LEN, Codec
from syncbus.core.masking import TOKEN_LENGTH
from syncbus.core.problems import ValidationError
from syncbus.core.regions import is_valid_region
from syncbus.core.topics import (
    H_DLQ_ERROR_CLASS,
    H_DLQ_KEY,
    H_DLQ_TIME,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
)
from syncbus.core.validation import vouched_birth_place
from syncbus.core.views import NULL_ROUTER_TAIL, avro_long, routed_at_suffix
from syncbus.router import DEFAULT_MAX_CONSECUTIVE_DEAD
from syncbus.router.compiled import CompiledPolicy, GrantRoute, ResourceRoute, schema_record
from syncbus.router.paths import BYTE, PYTHON, PathReport, count_paths

__all__ = [
    "DEFAULT_MAX_CONSECUTIVE_DEAD",
    "H_DLQ_ERROR_CLASS",
    "BatchOutput",
    "DeadLetterLimit",
    "RawMessage",
    "RawRecord",
    "RefusedEvent",
    "RoutingEngine",
    "tune_gc",
]
_TOKEN_PREFIX = b"\x02" + bytes((TOKEN_LENGTH << 1,))  # key union branch 1, then its length
_GOT = re.compile(r"\s*\(got [^)]*\)")

_bytepath: ModuleType | None
try:  # the byte path in C, compiled from Cython at install time (setup.py)
    from syncbus.router import _bytepath
except ImportError:  # no C compiler where this was installed: every event takes Python
    _bytepath = None

Headers = list[tuple[str, bytes]]
OutMessage = tuple[str, bytes | None, bytes | None, Headers]  # topic, key, value, headers


class RawRecord(Protocol):
    """A consumed raw record as the engine reads it: the Kafka client's own record
    (the router routes aiokafka's, unconverted) or a ``RawMessage``."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


class RawMessage(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] | None


@dataclass
class BatchOutput:
    schemas: list[tuple[str, bytes]] = field(default_factory=list)
    deliveries: list[OutMessage] = field(default_factory=list)
    audit: list[OutMessage] = field(default_factory=list)
    dead: list[OutMessage] = field(default_factory=list)
    quarantine: list[OutMessage] = field(default_factory=list)
    sequences: dict[str, tuple[int, int]] = field(default_factory=dict)
    delivered: Counter[str] = field(default_factory=Counter)
    dead_by_error: Counter[str] = field(default_factory=Counter)
    events: int = 0
    paths: Counter[tuple[str, str]] = field(default_factory=Counter)  # (resource, path): events


class _Batch:
    """What the deliveries of one batch share: its time, in the forms they need, and
    the delivery sequences as they advance (copied to ``out.sequences`` at the end)."""

    def __init__(
        self, out: BatchOutput, now: datetime, sequence_of: Callable[[str], int]
    ) -> None:
        self.out, self.now, self._sequence_of = out, now, sequence_of
        routed_at = int(now.timestamp() * 1_000_000)
        self.suffix = routed_at_suffix(routed_at)
        self.audit_end = f"{routed_at}}}".encode()
        self._partitions_header: dict[int, tuple[str, bytes]] = {}
        self.sequences: dict[str, int] = {}
        self._partitions: dict[str, int] = {}

    def headers_of(self, partition: int, offset: int) -> Headers:
        """The headers of every delivery of the event at ``partition``/``offset``, one
        list shared by its deliveries (no one changes it): the two facts the body does
        not carry, the source partition (what its delivery sequence runs on) and the
        source offset, the key's version (contract §2: a subscriber applies a change
        only when it is newer than the one it holds)."""
        head = self._partitions_header.get(partition)
        if head is None:
            head = self._partitions_header[partition] = (
                H_SOURCE_PARTITION, str(partition).encode())
        return [head, (H_SOURCE_OFFSET, b"%d" % offset)]

    def first_sequence(self, key: str, partition: int) -> int:
        self._partitions[key] = partition
        return self._sequence_of(key)

    def finish(self) -> None:
        self.out.sequences = {k: (self._partitions[k], n) for k, n in self.sequences.items()}


class RefusedEvent(ValueError):
    """An event whose envelope contradicts itself (resource, region); dead-lettered."""


class DeadLetterLimit(RuntimeError):
    """Too many valid events in a row failed: the router, not the input, is broken."""


class RoutingEngine:
    def __init__(
        self,
        policy: CompiledPolicy,
        codec: Codec,
        names: TopicNames,
        max_consecutive_dead: int = DEFAULT_MAX_CONSECUTIVE_DEAD,
        byte_path: bool = True,
    ) -> None:
        if max_consecutive_dead < 1:
            raise ValueError(f"max_consecutive_dead must be at least 1, not {max_consecutive_dead}")
        self.codec = codec
        self.names = names
        self.policy = policy
        self.max_consecutive_dead = max_consecutive_dead
        self.consecutive_dead = 0  # valid events failed in a row, across batches
        self._pending_schemas = [schema_record(v) for v in policy.new_views]
        self._resources: dict[str, str] = {}
        self._regions: dict[str, bool] = {}
        self.byte_path = byte_path and _bytepath is not None
        self._byte_routes: dict[str, Any] = {}  # raw topic -> its ByteRoute, or None
        self.paths = PathReport()  # which path routes each resource, and why

    def set_policy(self, policy: CompiledPolicy) -> None:
        """Swap in a new policy between batches; its new view schemas go out first."""
        self._pending_schemas += [schema_record(v) for v in policy.new_views]
        self.policy = policy
        self._byte_routes = {}

    def process(
        self, batch: Sequence[RawRecord], now: datetime, sequence_of: Callable[[str], int]
    ) -> BatchOutput:
        out = BatchOutput(schemas=self._pending_schemas, events=len(batch))
        self._pending_schemas = []
        work = _Batch(out, now, sequence_of)
        byte_routes = self._byte_routes
        routed_before = {topic: r.routed for topic, r in byte_routes.items() if r is not None}
        for message in batch:
            rr: ResourceRoute | None = None
            record: dict[str, Any] | None = None
            fast = None
            valid = False  # it passed decoding and the checks: a failure is the router's
            try:
                fast = byte_routes.get(message.topic, _UNSET)
                if fast is _UNSET:
                    fast = self._byte_route(message.topic)
                valid = fast is not None  # the byte path raises only once it vouched
                if fast is None or not fast.route(message, work):
                    valid = False
                    rr = self.policy.resource(self._resource_of(message.topic))
                    record, writer_fp = self.codec.decode(message.value or b"", rr.reader_fp)
                    self._check(rr, record)
                    valid = True
                    self._deliver(message, writer_fp, rr, record, work)
            except Exception as exc:  # every failure of one event is that event's dead letter
                if record is None and valid:
                    rr, record = self._decoded(message)  # the byte path failed: mask it too
                self._dead(message, rr, record, exc, now, out)
                if valid:
                    self.consecutive_dead += 1
                    if self.consecutive_dead >= self.max_consecutive_dead:
                        raise self._limit_reached(message, exc) from exc
            else:
                self.consecutive_dead = 0
        for fast in byte_routes.values():
            if fast is not None:
                fast.finish(out.delivered)
        on_bytes = {topic: r.routed - routed_before.get(topic, 0)
                    for topic, r in byte_routes.items() if r is not None}
        out.paths = count_paths((m.topic for m in batch), on_bytes, self._path_label)
        work.finish()
        for masker in self.policy.maskers:  # tokens are remembered for one batch only
            masker.forget()
        return out

    def _limit_reached(self, message: RawRecord, exc: Exception) -> DeadLetterLimit:
        return DeadLetterLimit(
            f"{self.consecutive_dead} valid events in a row could not be routed, the last "
            f"at {message.topic}[{message.partition}]@{message.offset}: "
            f"{type(exc).__name__}: {_reason(exc)}. They decoded and passed every check, so "
            f"the router is at fault (a bad deploy, a masking or encoding bug), not the "
            f"input. Stopping before this batch is acked, so nothing is lost: fix the "
            f"router and restart (--max-consecutive-dead sets how many in a row stop it)."
        )

    def _decoded(self, message: RawRecord) -> tuple[ResourceRoute | None, dict[str, Any] | None]:
        """The resource and record of an event, or Nones, for masking its dead letter."""
        try:
            rr = self.policy.resource(self._resource_of(message.topic))
            return rr, self.codec.decode(message.value or b"", rr.reader_fp)[0]
        except Exception:  # the byte path raises only on bytes it read, so this is rare
            return None, None

    def _byte_route(self, topic: str) -> Any:
        """The byte route of a raw topic's resource, compiled once per policy; None where
        the byte path is off or does not know the resource's schema or plans."""
        route, why = None, "the byte path is off"
        if _bytepath is None:
            why = "syncbus.router._bytepath is not built (see `make venv`'s message)"
        elif self.byte_path:
            try:
                rr = self.policy.resource(self._resource_of(topic))
            except Exception:  # not a resource of the policy: the Python path dead-letters
                rr, why = None, "not a resource of the policy"
            if rr is not None:
                found = _bytepath.compile_byte_route(
                    rr, self.policy.table, self.names, vouched_birth_place
                )
                route, why = (None, found) if isinstance(found, str) else (found, "")
        self._byte_routes[topic] = route
        self.paths.declare(self._path_label(topic), PYTHON if route is None else BYTE, why)
        return route

    def _path_label(self, topic: str) -> str:
        try:
            return self._resource_of(topic)
        except Exception:  # not a raw topic name: label it by the topic
            return topic

    def _valid_region(self, region: str | None) -> bool:
        """``is_valid_region``, remembered: GB/T 2260 has a few thousand codes."""
        valid = self._regions.get(region or "")
        if valid is None:
            if len(self._regions) > 100_000:  # a flood of junk codes must not grow memory
                self._regions.clear()
            valid = self._regions[region or ""] = is_valid_region(region or "")
        return valid

    def _resource_of(self, topic: str) -> str:
        resource = self._resources.get(topic)
        if resource is None:
            resource = self._resources[topic] = self.names.resource_of_raw(topic)
        return resource

    def _check(self, rr: ResourceRoute, record: dict[str, Any]) -> None:
        if record["resource"] != rr.resource.id:
            raise RefusedEvent(
                f"event of resource {record['resource']!r} on the topic of {rr.resource.id}"
            )
        errors = []
        for part in ("before", "after"):
            if record[part] is not None:
                errors += rr.validator.errors(record[part], part)
        if errors:
            raise ValidationError(errors)
        if record["op"] == "HEARTBEAT":
            return
        region = record["region"]
        source = record["before"] if record["op"] == "DELETE" else record["after"]
        if source is None:
            raise RefusedEvent(f"{record['op']} event without its record")
        if region != source[rr.resource.region_field] or not self._valid_region(region):
            raise RefusedEvent(
                f"envelope region {region!r} is not the record's "
                f"{rr.resource.region_field} {source[rr.resource.region_field]!r}"
            )

    def _deliver(
        self,
        message: RawRecord,
        writer_fp: bytes,
        rr: ResourceRoute,
        record: dict[str, Any],
        batch: _Batch,
    ) -> None:
        op, before = record["op"], record["before"]
        old_region = before[rr.resource.region_field] if op == "UPDATE" and before else None
        deliveries = self.policy.table.route(
            rr.resource.id, op, record["region"], old_region, batch.now
        )
        if not deliveries:
            return
        raw = message.value or b""
        event_id = _event_id(raw, record)
        encoded: dict[tuple[tuple[bytes, str, int], str], tuple[bytes | None, bytes]] = {}
        views: list[tuple[GrantRoute, tuple[bytes | None, bytes]]] = []
        for delivery in deliveries:  # may raise: then nothing of this event is delivered
            route = rr.grants[delivery.key]
            cache_key = (route.encode_id, delivery.op)
            hit = encoded.get(cache_key)
            if hit is not None and route.encode_id[1] == "key" and delivery.op != "HEARTBEAT":
                hit = _with_key(hit, route.masker.key(record["key"]))
            if hit is None:
                hit = encoded[cache_key] = self._encode(
                    route, record, delivery.op, old_region, writer_fp, raw, event_id
                )
            views.append((route, hit))
        partition = message.partition
        headers = batch.headers_of(partition, message.offset)
        seq_suffix = headers[0][1].decode()
        sequences, sent, audit = batch.sequences, batch.out.deliveries, batch.out.audit
        audit_topic, audit_head = self.names.audit, b'{"event_id": "' + event_id.encode()
        routed_at_suffix, audit_end = batch.suffix, batch.audit_end
        join = b"".join
        for route, (key, body) in views:
            seq_key = route.sequence_prefix + seq_suffix
            sequence = sequences.get(seq_key)
            if sequence is None:
                sequence = batch.first_sequence(seq_key, partition)
            sequence += 1
            sequences[seq_key] = sequence
            value = join((body, route.suffix_head, avro_long(sequence), routed_at_suffix))
            sent.append((route.topic, key, value, headers))
            audit_json = join((audit_head, route.audit_tail, audit_end))
            audit.append((audit_topic, route.audit_key, audit_json, []))
        delivered = batch.out.delivered
        for delivery in deliveries:
            delivered[delivery.key] += 1

    def _encode(
        self,
        route: GrantRoute,
        record: dict[str, Any],
        op: str,
        old_region: str | None,
        writer_fp: bytes | None = None,
        raw: bytes = b"",
        event_id: str | None = None,
    ) -> tuple[bytes | None, bytes]:
        """Mask and encode one event for one view, without its null router fields.

        Returns the delivered key and the value up to the router fields. A view
        that is the source schema, for an event written with that schema and
        delivered as published, forwards the raw bytes: no masking, no encoding.
        """
        if (
            route.passthrough
            and writer_fp == route.view.fingerprint
            and op == record["op"]
            and raw.endswith(NULL_ROUTER_TAIL)
        ):
            key = record["key"]
            key_bytes = key.encode() if key is not None else None
            return key_bytes, raw[: -len(NULL_ROUTER_TAIL)]
        masker = route.masker
        event = dict(record)
        event["op"] = op
        event["event_id"] = event_id if event_id is not None else str(record["event_id"])
        event["subscriber"] = event["delivery_sequence"] = event["routed_at"] = None
        if op == "HEARTBEAT":
            key = record["key"]
        else:
            key = masker.key(record["key"])
            moved = old_region is not None and old_region != record["region"]
            if moved and op == "DELETE":
                event["region"] = old_region
                event["before"], event["after"] = masker.record(record["before"]), None
            elif moved and op == "CREATE":
                event["before"], event["after"] = None, masker.record(record["after"])
            else:
                event["before"] = masker.record(record["before"])
                event["after"] = masker.record(record["after"])
        event["key"] = key
        body = self.codec.encode(route.view.fingerprint, event)
        if not body.endswith(NULL_ROUTER_TAIL):
            raise AssertionError("encoded view does not end with the null router fields")
        key_bytes = key.encode() if key is not None else None
        return key_bytes, body[: -len(NULL_ROUTER_TAIL)]

    def _dead(
        self,
        message: RawRecord,
        rr: ResourceRoute | None,
        record: dict[str, Any] | None,
        exc: Exception,
        now: datetime,
        out: BatchOutput,
    ) -> None:
        """The event's dead letter in ``syncbus.dlq``, which operators read: its origin and
        reason, and its record masked as for an L1 subscriber when it decodes, else no
        body (a truncated or unknown body may hold anything in clear). The raw event,
        key and body as read, goes to ``syncbus.quarantine``, which only the admin
        reads, keyed by its origin so a redrive can tombstone it."""
        value = None
        if rr is not None and record is not None:
            try:
                value = self._encode(rr.dead_letter, record, record["op"], None)[1] + b"\x00" * 3
            except Exception:  # unmaskable: keep nothing of the body rather than leak it
                value = None
        origin = f"{message.topic}/{message.partition}/{message.offset}"
        metadata = [
            (t.H_DLQ_TOPIC, message.topic.encode()),
            (t.H_DLQ_PARTITION, str(message.partition).encode()),
            (t.H_DLQ_OFFSET, str(message.offset).encode()),
            (H_DLQ_ERROR_CLASS, type(exc).__name__.encode()),
            (t.H_DLQ_ERROR, _reason(exc).encode()),
            (H_DLQ_TIME, str(int(now.timestamp() * 1_000_000)).encode()),
        ]
        out.dead.append((self.names.dlq, None, value, metadata))
        kept = metadata if message.key is None else [*metadata, (H_DLQ_KEY, message.key)]
        out.quarantine.append((self.names.quarantine, origin.encode(), message.value or b"", kept))
        out.dead_by_error[type(exc).__name__] += 1


def _event_id(raw: bytes, record: dict[str, Any]) -> str:
    """The event id as its publisher wrote it: the envelope's first field, a string of
    36 ASCII characters right after the header (``str(uuid)`` costs 1.5 us)."""
    if raw[HEADER_LEN : HEADER_LEN + 1] == _UUID_LENGTH:
        text = raw[HEADER_LEN + 1 : HEADER_LEN + 37]
        if text.isascii():
            return text.decode()
    return str(record["event_id"])


_UUID_LENGTH = bytes((36 << 1,))
_UNSET = object()  # zig-zag varint of 36


def _with_key(
    hit: tuple[bytes | None, bytes], key: str | None
) -> tuple[bytes | None, bytes] | None:
    """Another subscriber's key token in an encoded view, or None to encode it afresh.

    The envelope starts event_id, source, resource, op, key; a token is always
    ``TOKEN_LENGTH`` ASCII characters, so it sits at an offset known from the
    first fields' lengths, and the bytes there are checked to be the old token.
    """
    old, body = hit
    if old is None or key is None or len(key) != TOKEN_LENGTH or len(old) != TOKEN_LENGTH:
        return None
    start = HEADER_LEN
    for _ in range(3):  # event_id, source, resource: zig-zag length, then the bytes
        size = body[start]
        if size >= 0x80:
            return None
        start += 1 + (size >> 1)
    start += 1 + 2  # op (one-byte enum index), union branch 1 and length 32 of the key
    if body[start - 2 : start] != _TOKEN_PREFIX or body[start : start + TOKEN_LENGTH] != old:
        return None
    new = key.encode()
    return new, b"".join((body[:start], new, body[start + TOKEN_LENGTH :]))


def tune_gc() -> None:
    """Collect garbage less often in a routing process.

    A batch allocates hundreds of thousands of tuples, lists and bytes, none of them
    in cycles, and keeps them until the broker confirms it. A collection walks the
    young objects still alive, which between batches are at most the two batches in
    flight, so collecting once per million allocations (about ten batches of 5,000
    events) instead of once per 50,000 walks each output object about once instead
    of twenty times (engine alone: 12.5 -> 10.5 us per event). Only cyclic garbage
    waits for it, and a batch makes little. Objects alive at startup (modules,
    schemas, compiled plans) are frozen out of it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(1_000_000, 20, 100)


def _reason(exc: Exception) -> str:
    """The error message with the offending values cut out (they may be personal data)."""
    if isinstance(exc, ValidationError):
        text = "; ".join(f"{e.path}: {_GOT.sub('', e.reason)}" for e in exc.errors)
    else:
        text = _GOT.sub("", str(exc)) or type(exc).__name__
    return text[:1000]
