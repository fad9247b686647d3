"""One resync job run to its end: markers, the state read in chunks, routed, the audit.

A resync brings one subscriber's copy of one resource in line with its grant
(issue #17; the wire contract is docs/resync-contract.md). The state is the
compacted raw topic: per key, the last record at an offset below the watermark (the
end offsets taken when the job begins, kept in the job record so a restarted router
reads up to the same place). Compaction is lazy (the active segment is never
compacted), so each raw partition is read twice: once for the keys' latest offsets
only, then in chunks of ``chunk`` records for the latest records themselves.

Per latest record, ``core.entitlement.Resync`` decides SNAPSHOT, DELETE or nothing,
asking the routing table of a one-grant bus (new grant, old grant) exactly as live
routing does. SNAPSHOTs are made by the same ``RoutingEngine`` the live path runs,
over that one-grant bus, so the byte path masks them: the record is re-encoded as a
SNAPSHOT (before null, a fresh event id) and routed; whatever no longer decodes or
validates is dead-lettered by the engine, with its reason, and the resync goes on.
DELETEs are minimal envelopes (key in the form the subscriber holds it, region,
before and after null) in the old view. Every delivery carries the raw offset of the
key's latest record as its version and the resync id (contract §2, §3).

Everything of a chunk is confirmed by the broker before the chunk's progress is
written, so a restart never skips a record (it may send some twice: harmless, the
versions are equal and a resync delivery is applied when its version is >=).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from syncbus.admin.compacted import watermarks
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core import topics as t
from syncbus.core.codec import HEADER_LEN, MAGIC, Codec
from syncbus.core.entitlement import Resync, one_grant_bus
from syncbus.core.model import Bus, Grant, Subscriber
from syncbus.core.policy import UnroutableEvent
from syncbus.core.views import ViewCache
from syncbus.router import RESYNC_CHUNK, RESYNC_REST
from syncbus.router.compiled import CompiledPolicy, GrantRoute, schema_record
from syncbus.router.engine import OutMessage, RawMessage, RoutingEngine
from syncbus.router.resync_jobs import DONE, JOB, PROGRESS, JobStore, Progress, ResyncJob
from syncbus.router.secrets import TokenSecrets

log = logging.getLogger("syncbus.router.resync")
_NO_DEAD_LIMIT = 1 << 62  # a resync never stops on dead letters: each is one record's


@dataclass(frozen=True)
class Pacing:
    """How a resync shares the router with live routing: ``chunk`` records at a time,
    then a pause of ``rest`` times the chunk's own duration (plus ``pause`` seconds),
    so a resync takes at most 1 / (1 + rest) of a core from the live path.

    The defaults are measured (``syncbus bench resync --records 1000000``, 1,000 live
    events/s beside it, 2026-12-04): chunks of 2,000 resting 0.5 gave 22,870 records/s
    at live p99 255 ms; 5,000 resting 0.1, 33,126 at 308 ms; 5,000 with no rest,
    41,791 at 298 ms (one run; three more gave a median 36,623 at 310-328 ms).
    Resting bought the live path nothing measurable, so it is off; the thread still
    yields between chunks and the GIL every few ms. With the reading consumer's fetch
    backoff at 10 ms (same day, 10 runs), 5,000 with no rest gave a median 44,177
    records/s at live p99 296-344 ms."""

    chunk: int = RESYNC_CHUNK
    rest: float = RESYNC_REST
    pause: float = 0.0

    def __post_init__(self) -> None:
        if self.chunk < 1 or self.rest < 0 or self.pause < 0:
            raise ValueError(f"resync pacing must be positive: {self}")


def snapshot_of(codec: Codec, reader_fp: bytes, record: dict[str, Any],
                event_id: str | None = None) -> bytes:
    """A stored record as a SNAPSHOT raw event: op SNAPSHOT, before null, a fresh event
    id, encoded with the resource's latest schema (so the byte path can vouch for it)."""
    event = dict(record)
    event.update(event_id=event_id or str(uuid.uuid4()), op="SNAPSHOT", before=None,
                 subscriber=None, delivery_sequence=None, routed_at=None)
    return codec.encode(reader_fp, event)


class Head(NamedTuple):
    """What a resync reads of a stored event without decoding its records."""

    op: str
    region: str | None
    event_id: slice  # where its 36 characters are
    op_at: int  # the byte of the op (a one-byte zig-zag enum index)
    before_null: bool


_OPS = ("CREATE", "UPDATE", "DELETE", "SNAPSHOT", "HEARTBEAT")
_SNAPSHOT_BYTE = b"\x06"  # zig-zag of enum index 3
_UUID_LENGTH = 72  # zig-zag of 36
_EVENT_ID = slice(HEADER_LEN + 1, HEADER_LEN + 37)  # right after the 10-byte header


def head_of(raw: bytes, reader_fp: bytes) -> Head | None:
    """The envelope's head, read from the bytes (``docs/architecture.md``: single-object
    encoding, then event_id, source, resource, op, key, region, sequence, occurred_at,
    published_at, before); None when the writer is not ``reader_fp`` or the bytes are not
    that layout with short strings (under 64 bytes, one length byte): the caller then
    decodes, and whatever is bad is dead-lettered."""
    if raw[2:HEADER_LEN] != reader_fp or raw[:2] != MAGIC:
        return None
    try:
        if raw[HEADER_LEN] != _UUID_LENGTH:
            return None
        at = HEADER_LEN + 37
        for _ in range(2):  # source, resource: one zig-zag length byte, then the text
            size = raw[at]
            if size & 0x81:
                return None
            at += 1 + (size >> 1)
        op_at, op = at, raw[at]
        if op & 1 or op >> 1 >= len(_OPS):
            return None
        at += 1
        texts: list[str | None] = []
        for _ in range(2):  # key, region: union branch 0 (null) or 1 (string)
            branch = raw[at]
            if branch == 0:
                texts.append(None)
                at += 1
                continue
            size = raw[at + 1]
            if branch != 2 or size & 0x81:
                return None
            texts.append(raw[at + 2:at + 2 + (size >> 1)].decode())
            at += 2 + (size >> 1)
        for _ in range(3):  # sequence, occurred_at, published_at: varints
            while raw[at] & 0x80:
                at += 1
            at += 1
        return Head(_OPS[op >> 1], texts[1], _EVENT_ID, op_at, raw[at] == 0)
    except (IndexError, UnicodeDecodeError):
        return None


def fast_snapshot(raw: bytes, head: Head, event_id: bytes) -> bytes:
    """``snapshot_of`` in the bytes, for a stored event with no ``before`` (a CREATE or a
    SNAPSHOT): the op byte and the 36 characters of the event id replaced."""
    return b"".join((raw[:head.event_id.start], event_id, raw[head.event_id.stop:head.op_at],
                     _SNAPSHOT_BYTE, raw[head.op_at + 1:]))


def event_ids(n: int) -> list[bytes]:
    """``n`` fresh random (version 4) uuids as their 36 ASCII characters, from one read
    of the system's randomness (``uuid.uuid4`` reads it once per id: 9 us here)."""
    noise = os.urandom(16 * n).hex()
    out = []
    for i in range(0, 32 * n, 32):
        h = noise[i:i + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}".encode())
    return out


def delete_of(codec: Codec, route: GrantRoute, record: dict[str, Any], routed_at: int
              ) -> tuple[bytes | None, bytes]:
    """(key, value) of a resync DELETE: the minimal envelope in ``route``'s view with the
    key as that view delivers it, the record's region, before and after null."""
    key = route.masker.key(record["key"])
    event = {
        "event_id": str(uuid.uuid4()), "source": record["source"],
        "resource": record["resource"], "op": "DELETE", "key": key,
        "region": record["region"], "sequence": record["sequence"],
        "occurred_at": record["occurred_at"], "published_at": record["published_at"],
        "before": None, "after": None, "subscriber": route.grant.subscriber,
        "delivery_sequence": 0, "routed_at": routed_at,
    }
    return (None if key is None else key.encode()), codec.encode(route.view.fingerprint, event)


def marker(job: ResyncJob, which: str, resource_header: str) -> list[tuple[str, bytes]]:
    """The headers of a begin or end marker (contract §4); key and value are null."""
    return [(t.H_RESYNC, job.id.encode()), (t.H_MARKER, which.encode()),
            (t.H_RESYNC_KIND, job.kind.encode()),
            (t.H_WATERMARK, json.dumps(job.watermarks or {}, sort_keys=True).encode()),
            (t.H_RESOURCE, resource_header.encode())]


class _Views:
    """The new and old routing of one job: engines over one-grant buses."""

    def __init__(self, job: ResyncJob, bus: Bus, secrets: TokenSecrets, names: TopicNames
                 ) -> None:
        old, new = job.grants()
        old_at, new_at = job.times()
        bus = _with_subscriber(bus, old or new)
        self.codec = Codec()
        views = ViewCache(bus.schemas.envelope)
        dlq_secret = os.urandom(32)
        new_bus, old_bus = one_grant_bus(bus, new), one_grant_bus(bus, old)
        self.new = CompiledPolicy(new_bus, secrets, self.codec, views, names, dlq_secret)
        self.old = CompiledPolicy(old_bus, secrets, self.codec, views, names, dlq_secret)
        self.engine = RoutingEngine(self.new, self.codec, names, _NO_DEAD_LIMIT)
        self.rr = self.new.resource(job.resource)
        self.new_route = self.rr.grants.get(new.key) if new is not None else None
        old_rr = self.old.resource(job.resource)
        self.old_route = old_rr.grants.get(old.key) if old is not None else None
        self.decide = Resync(job.subscriber, job.resource, self.old.table, self.new.table,
                             old_at, new_at, job.resend or job.kind == "full")
        self.new_at = new_at
        # the key is delivered in the same form by both views (token or not, one secret):
        # a SNAPSHOT then replaces the row the subscriber holds, with no DELETE before it
        self.same_keys = (self.old_route is None or self.new_route is None or (
            self.old_route.view.plan.key_action == self.new_route.view.plan.key_action))


def _with_subscriber(bus: Bus, grant: Grant | None) -> Bus:
    """``bus``, with the job's subscriber declared if ``streams/`` removed it: its grant
    names its regions (the job stored its scopes), so it routes as it did then."""
    if grant is None or grant.subscriber in bus.subscribers:
        return bus
    gone = Subscriber(grant.subscriber, grant.subscriber, "city", grant.regions[0])
    return dataclasses.replace(bus, subscribers={**bus.subscribers, gone.id: gone})


class Refusals:
    """The records the broker refused, as the producer reports them (it reports only
    failures, ``delivery.report.only.error``: a report per record would cost the resync
    a Python call each). ``flush`` returns once nothing is in flight, refused records
    included, so a chunk counts as confirmed only when none was refused meanwhile."""

    def __init__(self) -> None:
        self.refused: list[tuple[str, str]] = []  # (topic, the broker's reason)

    def __call__(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self.refused.append((message.topic(), error.str()))

    def check(self, what: str) -> None:
        """Raise, naming the first refusal, when any record was refused since the last
        check: the job then fails before its progress moves, and runs again from there."""
        if not self.refused:
            return
        refused, self.refused = self.refused, []
        topic, reason = refused[0]
        raise RuntimeError(
            f"{what}: the broker refused {len(refused)} record(s), the first for {topic}: "
            f"{reason}. The job runs again from its last confirmed chunk until the broker "
            f"takes them: check that topic's max.message.bytes and the router's ACLs")


class ResyncRun:
    """Runs one job with its own consumer; ``producer``, ``refusals`` (the producer's
    failed deliveries) and ``store`` are the runner's."""

    def __init__(self, job: ResyncJob, bus: Bus, connection: Connection, names: TopicNames,
                 secrets: TokenSecrets, producer: Producer, store: JobStore, pacing: Pacing,
                 stopping: Callable[[], bool] = lambda: False, *, refusals: Refusals) -> None:
        self.job, self.names, self.producer, self.store = job, names, producer, store
        self.refusals = refusals
        self.pacing, self.stopping = pacing, stopping
        self.raw = names.raw(job.resource)
        self.share = names.share(job.subscriber, job.resource)
        self.v = _Views(job, bus, secrets, names)
        resource = bus.resources.get(job.resource)
        self.region_field = resource.region_field if resource is not None else "region"
        self.consumer = Consumer(connection.confluent(**{
            "group.id": connection.own_group("resync"), "enable.auto.commit": False,
            "enable.partition.eof": True, "auto.offset.reset": "earliest",
            "fetch.max.bytes": 16 << 20,
            # librdkafka stops prefetching at 100,000 queued messages and looks again only
            # after this backoff (1 s by default): the keys pass reads faster than that, so
            # it stood still for most of each second (1,000,000 keys: 8.3-9.8 s, 5.0-5.2 s
            # with 10 ms)
            "fetch.queue.backoff.ms": 10}))

    def run(self) -> bool:
        """Run or continue the job; False when asked to stop before its end."""
        try:
            job = self._begin()
            totals = Progress()
            assert job.watermarks is not None
            for partition, end in sorted((int(p), o) for p, o in job.watermarks.items()):
                done = self._partition(partition, end)
                if done is None:
                    return False
                totals.snapshots += done.snapshots
                totals.deletes += done.deletes
                totals.dead_letters += done.dead_letters
            self._finish(job, totals)
            return True
        finally:
            self.consumer.close()

    def _begin(self) -> ResyncJob:
        """Watermarks (kept from an earlier start), then begin markers on every share
        partition; sent again on a restart, which the SDK takes as the same resync."""
        job = self.job
        if job.watermarks is None:
            meta = self.consumer.list_topics(self.raw, timeout=30).topics[self.raw]
            ends = {p: watermarks(self.consumer, TopicPartition(self.raw, p), 30)[1]
                    for p in sorted(meta.partitions)}
            job = job.begun(ends, datetime.now(UTC))
            self.store.write(JOB + job.id, job.to_bytes())
            self.job = job
        for route in (self.v.old_route, self.v.new_route):  # the views subscribers decode
            if route is not None:
                fp_hex, schema = schema_record(route.view)
                self.producer.produce(self.names.schemas, key=fp_hex.encode(), value=schema)
        self._markers("begin")
        return job

    def _markers(self, which: str) -> None:
        meta = self.producer.list_topics(self.share, timeout=30).topics[self.share]
        headers = marker(self.job, which, self.job.resource)
        for partition in sorted(meta.partitions):
            self.producer.produce(self.share, None, None, partition=partition,
                                  headers=cast(Any, headers))
        self._flush()

    def _flush(self) -> None:
        if self.producer.flush(60) > 0:
            raise RuntimeError(f"resync {self.job.id}: the broker did not confirm within 60 s")
        self.refusals.check(f"resync {self.job.id}")

    def _read(self, partition: int, start: int, end: int) -> Iterator[list[Any]]:
        """Messages of one raw partition from ``start`` up to ``end``, in chunks."""
        if start >= end:
            return
        self.consumer.assign([TopicPartition(self.raw, partition, start)])
        position = start
        while position < end:
            chunk = []
            for message in self.consumer.consume(self.pacing.chunk, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        position = max(position, message.offset() or 0)
                        continue
                    raise RuntimeError(f"resync {self.job.id} reading {self.raw}: {error}")
                offset = message.offset() or 0
                position = offset + 1
                if offset < end:
                    chunk.append(message)
            if chunk:
                yield chunk
        self.consumer.unassign()

    def _latest(self, partition: int, end: int) -> dict[bytes | None, int]:
        latest: dict[bytes | None, int] = {}
        for chunk in self._read(partition, 0, end):
            for message in chunk:
                latest[message.key()] = message.offset()
        return latest

    def _partition(self, partition: int, end: int) -> Progress | None:
        progress = self.store.progress(self.job.id, partition)
        if progress.next >= end:
            return progress
        latest = self._latest(partition, end)
        for chunk in self._read(partition, progress.next, end):
            started = time.monotonic()
            last = chunk[-1].offset()
            self._chunk(partition, [m for m in chunk if latest.get(m.key()) == m.offset()],
                        progress)
            progress.next = last + 1
            self.store.write(f"{PROGRESS}{self.job.id}/{partition}", progress.to_bytes())
            if self.stopping():
                return None
            time.sleep(self.pacing.pause + (time.monotonic() - started) * self.pacing.rest)
        return progress

    def _chunk(self, partition: int, messages: list[Any], progress: Progress) -> None:
        v, rid = self.v, (t.H_RESYNC, self.job.id.encode())
        snapshots: list[RawMessage] = []
        out: list[OutMessage] = []
        routed_at = int(time.time() * 1_000_000)
        topic, reader_fp, decide = self.raw, v.rr.reader_fp, v.decide.decide
        # each stored record's message is built once: the work per record is the resync's
        for message, event_id in zip(messages, event_ids(len(messages)), strict=True):
            value = message.value() or b""
            try:
                head = head_of(value, reader_fp) if v.same_keys else None
                if head is not None and head.before_null:
                    decision = decide(head.op, head.region)  # no decoding at all
                    if decision == "SNAPSHOT":
                        snapshots.append(RawMessage(topic, partition, message.offset(),
                                                    message.key(),
                                                    fast_snapshot(value, head, event_id), None))
                        continue
                    if decision is None:
                        continue
                record = v.codec.decode(value, reader_fp)[0]
                before = record.get("before") or {}
                decision = decide(record["op"], record["region"], before.get(self.region_field))
            except (ValueError, UnroutableEvent, KeyError):  # the engine says why
                snapshots.append(RawMessage(topic, partition, message.offset(), message.key(),
                                            message.value(), None))
                continue
            raw = RawMessage(topic, partition, message.offset(), message.key(), value, None)
            if decision == "SNAPSHOT":
                snapshots.append(raw._replace(
                    value=snapshot_of(v.codec, reader_fp, record, event_id.decode())))
                if not v.same_keys and not self._same_key(record["key"]):
                    out.append(self._delete(v.old_route, record, raw, routed_at, rid))
            elif decision == "DELETE" and v.old_route is not None:
                out.append(self._delete(v.old_route, record, raw, routed_at, rid))
        progress.deletes += len(out)
        if snapshots:
            routed = v.engine.process(snapshots, v.new_at, lambda _key: 0)
            for name_value in routed.schemas:
                self.producer.produce(self.names.schemas, key=name_value[0].encode(),
                                      value=name_value[1])
            for topic, key, body, headers in routed.deliveries:
                out.append((topic, key, body, [*headers, rid]))
            progress.snapshots += len(routed.deliveries)
            progress.dead_letters += len(routed.dead)
            out += routed.dead + routed.quarantine
        produce = cast(Any, self.producer.produce)  # its stubs want str headers; bytes go too
        for topic, key, body, headers in out:
            while True:
                try:
                    produce(topic, body, key, headers=headers)
                    break
                except BufferError:
                    self.producer.poll(0.1)
        self._flush()
        for masker in (*v.new.maskers, *v.old.maskers):
            masker.forget()

    def _same_key(self, key: str | None) -> bool:
        """Whether the subscriber holds ``key`` in the form the new view delivers it."""
        v = self.v
        if v.old_route is None or v.new_route is None:
            return True
        return v.old_route.masker.key(key) == v.new_route.masker.key(key)

    def _delete(self, route: GrantRoute | None, record: dict[str, Any], raw: RawMessage,
                routed_at: int, rid: tuple[str, bytes]) -> OutMessage:
        assert route is not None
        key, value = delete_of(self.v.codec, route, record, routed_at)
        headers = [(t.H_SOURCE_PARTITION, str(raw.partition).encode()),
                   (t.H_SOURCE_OFFSET, str(raw.offset).encode()), rid]
        return self.share, key, value, headers

    def _finish(self, job: ResyncJob, totals: Progress) -> None:
        """End markers once everything is confirmed, the audit record, then done."""
        self._markers("end")
        audit = {
            "kind": "resync", "resync": job.id, "subscriber": job.subscriber,
            "resource": job.resource, "cause": job.cause, "change": job.change,
            "snapshots": totals.snapshots, "deletes": totals.deletes,
            "dead_letters": totals.dead_letters, "started_at": job.started_at,
            "finished_at": datetime.now(UTC).isoformat(),
        }
        self.producer.produce(self.names.audit, json.dumps(audit).encode(),
                              f"resync/{job.id}".encode())
        self._flush()
        self.store.write(DONE + job.id, json.dumps(audit).encode())
        self.store.write(JOB + job.id, None)
        for partition in job.watermarks or {}:
            self.store.write(f"{PROGRESS}{job.id}/{partition}", None)
        self._flush()
        log.warning("resync %s of %s for %s done: %d snapshots, %d deletes, %d dead letters",
                    job.id, job.resource, job.subscriber, totals.snapshots, totals.deletes,
                    totals.dead_letters)
