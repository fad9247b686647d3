"""What one change of one resource becomes on ``raw.<resource>``.

A ``ResourceWriter`` is compiled once per (department, resource): it checks the
change against the op's rules and the schema's validators, derives the key and
region from the catalog's ``key_field``/``region_field``, and turns accepted
changes into (key, Avro single-object value, header meta). Validation and
encoding happen once per event; nothing here talks to Kafka.

Header meta is the per-event part of the wire headers packed into one string,
because that is what the spool stores: source, resource and
fingerprint are recovered from the spool row and the value bytes, so a resend
after a restart rebuilds exactly the headers the first send had.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncbus.core import topics as t
from syncbus.core.codec import Codec, EncodeError
from syncbus.core.model import Bus, Resource
from syncbus.core.problems import FieldError
from syncbus.core.validation import compile_validator, fast_format_check, from_json
from syncbus.publisher.errors import ChangeRejected, NotPermitted, UnknownResource

NewStateWriter: Any
numbered: Callable[[str, int], list[str]] | None
try:  # C compiled from Cython at install time (setup.py)
    from syncbus.publisher._rows import NewStateWriter, numbered
except ImportError:  # no C compiler where this was installed: the Python path does it all
    NewStateWriter = numbered = None

DATA_OPS = ("CREATE", "UPDATE", "DELETE", "SNAPSHOT")
# One event's key and value at most: Kafka's default max.message.bytes is 1 MiB + 12
# for a whole record batch, and an event refused by the broker after it was accepted
# would have to be kept aside (``refused``); refused at ``publish``, it is the caller's.
MAX_EVENT_BYTES = 1_000_000
HEADROOM_BYTES = 16_384  # headers and record overhead, on top of it in librdkafka's limit
_NEW_STATE = frozenset({"CREATE", "SNAPSHOT"})  # ops carrying only ``after``
_SEP = "\x1f"  # never in ids, op names, region codes or decimal numbers


@dataclass(frozen=True, slots=True)
class Change:
    """One change as a department system states it (``after``/``before`` are domain records)."""

    op: str
    after: Mapping[str, Any] | None = None
    before: Mapping[str, Any] | None = None
    occurred_at: dt.datetime | int | None = None


def now_micros() -> int:
    return time.time_ns() // 1000


_LONG = 1 << 63  # occurred_at is an Avro long


def to_micros(value: dt.datetime | int | str | None, default: int) -> int:
    """Micros since the epoch; naive datetimes and ISO strings without zone are UTC.
    ValueError for what is no time or does not fit the envelope's long."""
    if value is None:
        return default
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1_000_000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected ISO 8601 or int micros, got {type(value).__name__}")
    if not -_LONG <= value < _LONG:
        raise ValueError("int micros out of range (a 64-bit integer)")
    return value


def new_event_ids(n: int) -> list[str]:
    """Distinct version 4 uuids in canonical form, for one batch.

    The batch draws 78 random bits once (21 hex digits around the version and
    variant) and numbers its ids in the last 11, so an id costs one concatenation
    instead of its own random draw and five slices (``uuid.uuid4`` costs ~10 us).
    Ids stay unique: within a batch by the counter, across batches by the prefix
    (two batches share one with probability 2**-78)."""
    r = os.urandom(10).hex()
    prefix = f"{r[0:8]}-{r[8:12]}-4{r[12:15]}-{_VARIANT[r[15]]}{r[16:19]}-{r[19]}"
    if numbered is not None:  # the same loop in C
        return numbered(prefix, n)
    return _numbered(prefix, n)


def _numbered(prefix: str, n: int) -> list[str]:
    return [prefix + hex(_COUNTER_BASE + i)[3:] for i in range(n)]  # "0x1" + 11 digits


_COUNTER_BASE = 1 << 44  # hex(): "0x1" then the counter as exactly 11 hex digits


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


Headers = list[tuple[str, str | bytes | None]]
Prepared = tuple[bytes, bytes, str, Headers]  # key, value, spooled meta, headers


Header = tuple[str, str]
_OP_HEADERS = {op: (t.H_OP, op) for op in (*DATA_OPS, "HEARTBEAT")}


def headers_of(fixed: tuple[Header, Header], fingerprint: Header, parts: Sequence[str]) -> Headers:
    """The wire headers: ``fixed`` (source, resource), then those of the per-event
    ``parts`` (event id, op, region, old region, sequence, occurred at, published at;
    an empty region or old region is left out), then ``fingerprint``. Shared tuples
    are reused: a Python row makes as few objects as it can for the collector to walk.
    confluent-kafka encodes str values as UTF-8. (The C loop of ``_rows`` writes the
    same for a new state: a region, no old one.)"""
    event_id, op, region, old, sequence, occurred, published = parts
    headers: Headers = [*fixed, (t.H_EVENT_ID, event_id), _OP_HEADERS[op]]
    if region:
        headers.append((t.H_REGION, region))
    if old:
        headers.append((t.H_OLD_REGION, old))
    headers += [(t.H_SEQUENCE, sequence), (t.H_OCCURRED_AT, occurred),
                (t.H_PUBLISHED_AT, published), fingerprint]
    return headers


def fixed_headers(source: str, resource: str) -> tuple[Header, Header]:
    return (t.H_SOURCE, source), (t.H_RESOURCE, resource)


def make_headers(source: str, resource: str, value: bytes, meta: str) -> Headers:
    """The headers of a spooled event, as its first send had them."""
    return headers_of(fixed_headers(source, resource), (t.H_FINGERPRINT, value[2:10].hex()),
                      meta.split(_SEP))


def resolve(bus: Bus, department: str, resource_id: str) -> Resource:
    """The resource, if ``department`` may publish it; the errors say what to fix."""
    if resource_id not in bus.resources:
        known = ", ".join(sorted(bus.resources))
        raise UnknownResource(f"unknown resource {resource_id!r}; the catalog has: {known}")
    resource = bus.resources[resource_id]
    if resource.owner != department:
        raise NotPermitted(
            f"department {department!r} may not publish {resource_id!r}: its owner is "
            f"{resource.owner!r} (only the source department publishes a resource)"
        )
    return resource


def _new_state(change: Change) -> bool:
    """Could the C loop take this change (the cheap part of its test)?"""
    return change.op in _NEW_STATE and change.before is None


class ResourceWriter:
    """Checks and encodes the changes of one resource for one source department."""

    def __init__(
        self, bus: Bus, department: str, resource_id: str, *, native: bool = True,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.resource = resolve(bus, department, resource_id)
        self.max_event_bytes = max_event_bytes
        self.domain = bus.schemas.latest(self.resource.schema)
        self.event_schema = bus.schemas.event_schema(self.resource.schema)
        self._codec = Codec()
        self.fingerprint = self._codec.register(self.event_schema)
        self._fp_hex = self.fingerprint.hex()
        self.source = department
        self._validator = compile_validator(self.domain)
        self._valid = self._validator.valid
        self._key, self._region = self.resource.key_field, self.resource.region_field
        self._h_fixed = fixed_headers(department, self.resource.id)
        self._h_fp = (t.H_FINGERPRINT, self._fp_hex)
        self._new_states = self._native_writer() if native else None

    def _native_writer(self) -> Any:
        """The C loop over new-state changes (see ``_rows``), where it was built and the
        record schema has both a fast validator and a checked native encoder."""
        if NewStateWriter is None or not self._validator.has_fast_path:
            return None
        encode = self._codec.checked_encoder(self.fingerprint, fast_format_check)
        if encode is None:
            return None
        return NewStateWriter(  # the layout of ``headers_of`` for a region and no old one
            encode, Change, self.source, self.resource.id, self._key, self._region,
            {op: _OP_HEADERS[op] for op in _NEW_STATE}, self._h_fixed, self._h_fp,
            (t.H_EVENT_ID, t.H_REGION, t.H_SEQUENCE, t.H_OCCURRED_AT, t.H_PUBLISHED_AT), _SEP,
        )

    @property
    def native(self) -> bool:
        """True when new-state changes take the C loop."""
        return self._new_states is not None

    def from_json(self, obj: Any) -> Change:
        """A change from one parsed JSON line (``op``, ``after``, ``before``, ``occurred_at``)."""
        errors: list[FieldError] = []
        if not isinstance(obj, Mapping):
            raise ChangeRejected(self.resource.id, [FieldError("/", "expected a JSON object")])
        for name in obj.keys() - {"op", "after", "before", "occurred_at"}:
            errors.append(FieldError(str(name), "unknown key (op, after, before, occurred_at)"))
        records: dict[str, Any] = {}
        for side in ("after", "before"):
            if obj.get(side) is not None:
                try:
                    records[side] = from_json(self.domain, obj[side], side)
                except ValueError as exc:
                    errors.extend(getattr(exc, "errors", [FieldError(side, str(exc))]))
        if not isinstance(obj.get("op"), str):
            errors.append(FieldError("op", "required: CREATE, UPDATE, DELETE or SNAPSHOT"))
        occurred = obj.get("occurred_at")
        occurred_at = None
        if occurred is not None:
            try:
                occurred_at = to_micros(occurred, 0)
            except ValueError as exc:
                reason = f"not ISO 8601: {occurred!r}" if isinstance(occurred, str) else str(exc)
                errors.append(FieldError("occurred_at", reason))
        if errors:
            raise ChangeRejected(self.resource.id, errors)
        return Change(str(obj.get("op")), records.get("after"), records.get("before"), occurred_at)

    def check(self, change: Change, index: int = 0) -> tuple[str, str, str]:
        """(key, region, old region) of a valid change; raises ChangeRejected naming fields."""
        after = change.after
        if (
            change.before is None and after is not None and change.op in _NEW_STATE
            and self._valid(after)
        ):  # the common case, settled by one generated check
            return str(after[self._key]), str(after[self._region]), ""
        errors = self._op_errors(change)
        for side, record in (("before", change.before), ("after", change.after)):
            if record is not None:
                errors.extend(self._validator.errors(record, side))
        if errors:
            raise ChangeRejected(self.resource.id, errors, index)
        current = change.before if change.op == "DELETE" else change.after
        assert current is not None
        region = str(current[self._region])
        old = ""
        if change.op == "UPDATE" and change.before is not None:
            if str(change.before[self._key]) != str(current[self._key]):
                raise ChangeRejected(self.resource.id, [FieldError(
                    f"after.{self._key}",
                    "differs from before; a key change is a DELETE and a CREATE",
                )], index)
            old_region = str(change.before[self._region])
            old = old_region if old_region != region else ""
        return str(current[self._key]), region, old

    def _op_errors(self, change: Change) -> list[FieldError]:
        if change.op not in DATA_OPS:
            return [FieldError("op", f"{change.op!r} is not one of {', '.join(DATA_OPS)}")]
        needs_before = change.op in ("UPDATE", "DELETE")
        needs_after = change.op != "DELETE"
        errors = []
        for side, needed, value in (
            ("before", needs_before, change.before),
            ("after", needs_after, change.after),
        ):
            if needed and value is None:
                why = "the router needs the old region" if side == "before" else "the new state"
                errors.append(FieldError(side, f"required for {change.op} ({why})"))
            elif not needed and value is not None:
                errors.append(FieldError(side, f"must be absent for {change.op}"))
        return errors

    def prepare(
        self, changes: Sequence[Change], first_seq: int, event_ids: Sequence[str],
        published: int, on_reject: Callable[[ChangeRejected], None] | None = None,
    ) -> tuple[list[Prepared], list[str]]:
        """Check and encode a batch in order: the rows and event ids of the accepted
        changes, numbered from ``first_seq`` without gaps, the k-th getting
        ``event_ids[k]``. Each bad change goes to ``on_reject`` (raised without it).

        New states take the C loop, which validates while it encodes; it stops at any
        change it does not take, and the run of changes from there up to the next new
        state is checked and encoded here, where a bad one is rejected with its reasons.
        """
        changes = changes if isinstance(changes, list) else list(changes)
        event_ids = event_ids if isinstance(event_ids, list) else list(event_ids)
        native = self._new_states
        rows: list[Prepared] = []
        accepted: list[str] = []
        i, n = 0, len(changes)
        while i < n:
            if native is not None:
                start, before = i, len(rows)
                i = native.write(changes, i, event_ids, first_seq, published, rows, accepted)
                i = self._cut_oversized(rows, accepted, before, start, i)
                if i == n:
                    break
                end = i + 1
                while end < n and not _new_state(changes[end]):
                    end += 1
            else:
                end = n
            checked = []
            for index in range(i, end):
                try:
                    checked.append((index, changes[index], *self.check(changes[index], index)))
                except ChangeRejected as exc:
                    if on_reject is None:
                        raise
                    on_reject(exc)
            done = len(accepted)
            more, ids = self.encode_batch(
                checked, first_seq + done, event_ids[done : done + len(checked)], published,
                on_reject,
            )
            rows += more
            accepted += ids
            i = end
        return rows, accepted

    def _cut_oversized(self, rows: list[Prepared], accepted: list[str], before: int,
                       start: int, end: int) -> int:
        """The C loop wrote ``rows[before:]`` for ``changes[start:end]``, one each: drop the
        first oversized one and all after it, and return its change index, so that the
        Python path rejects it (with its reason) and numbers the rest without a gap."""
        limit = self.max_event_bytes
        for k in range(before, len(rows)):
            if len(rows[k][0]) + len(rows[k][1]) > limit:
                del rows[k:], accepted[k:]
                return start + (k - before)
        return end

    def _size_error(self, key: bytes, value: bytes) -> FieldError | None:
        size = len(key) + len(value)
        if size <= self.max_event_bytes:
            return None
        return FieldError("/", f"the encoded event is {size:,} bytes, over the limit of "
                          f"{self.max_event_bytes:,} bytes for one event of "
                          f"{self.resource.id} (Publisher max_event_bytes; the broker's "
                          "max.message.bytes): split the record or shorten its values")

    def encode(
        self, change: Change, key: str, region: str, old: str, seq: int, event_id: str,
        published: int, index: int = 0,
    ) -> Prepared:
        """Key, value and header meta of a checked change."""
        return self.encode_batch([(index, change, key, region, old)], seq, [event_id],
                                 published)[0][0]

    def encode_batch(
        self, checked: Sequence[tuple[int, Change, str, str, str]], first_seq: int,
        event_ids: Sequence[str], published: int,
        on_reject: Callable[[ChangeRejected], None] | None = None,
    ) -> tuple[list[Prepared], list[str]]:
        """Rows and event ids of checked changes numbered from ``first_seq``, gap-free:
        a change the encoder refuses gets no number and goes to ``on_reject`` (raised
        without it)."""
        rows: list[Prepared] = []
        accepted: list[str] = []
        encode, fp, resource, source = self._codec.encode, self.fingerprint, self.resource.id, \
            self.source
        published_s = str(published)
        seq = first_seq
        for (index, change, key, region, old), event_id in zip(checked, event_ids, strict=False):
            op, occurred = change.op, change.occurred_at
            try:
                if occurred is not None:
                    occurred = to_micros(occurred, published)
            except (ValueError, TypeError) as exc:
                rejected = ChangeRejected(resource, [FieldError("occurred_at", str(exc))], index)
                if on_reject is None:
                    raise rejected from None
                on_reject(rejected)
                continue
            try:
                value = encode(fp, {
                    "event_id": event_id, "source": source, "resource": resource, "op": op,
                    "key": key, "region": region, "sequence": seq,
                    "occurred_at": published if occurred is None else occurred,
                    "published_at": published, "before": change.before, "after": change.after,
                })
            except (EncodeError, OverflowError) as exc:  # the codec's error, or a C number
                rejected = ChangeRejected(resource, [FieldError("/", str(exc))], index)
                if on_reject is None:
                    raise rejected from exc
                on_reject(rejected)
                continue
            too_large = self._size_error(key.encode(), value)
            if too_large is not None:
                rejected = ChangeRejected(resource, [too_large], index)
                if on_reject is None:
                    raise rejected
                on_reject(rejected)
                continue
            occurred_s = published_s if occurred is None else str(occurred)
            rows.append(self._row(key, value, (event_id, op, region, old, str(seq), occurred_s,
                                               published_s)))
            accepted.append(event_id)
            seq += 1
        return rows, accepted

    def _row(self, key: str, value: bytes, parts: Sequence[str]) -> Prepared:
        """Key, value, spooled meta and wire headers from the per-event ``parts`` (see
        ``headers_of``); the C loop of ``_rows`` builds the same for new states."""
        return key.encode(), value, _SEP.join(parts), self._headers(parts)

    def _headers(self, parts: Sequence[str]) -> Headers:
        return headers_of(self._h_fixed, self._h_fp, parts)

    def heartbeat(self, seq: int, event_id: str, published: int, region: str) -> Prepared:
        """A HEARTBEAT: key = resource id, no record; says "alive, no changes". Its region
        header is the department's own region, which covers every record it publishes."""
        event = {
            "event_id": event_id, "source": self.source, "resource": self.resource.id,
            "op": "HEARTBEAT", "key": None, "region": None, "sequence": seq,
            "occurred_at": published, "published_at": published,
        }
        value = self._codec.encode(self.fingerprint, event)
        parts = (event_id, "HEARTBEAT", region, "", str(seq), str(published), str(published))
        return self._row(self.resource.id, value, parts)
