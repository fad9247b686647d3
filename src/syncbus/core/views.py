"""A subscriber's view schema: the source schema as one grant lets it be seen.

Masked and tokenised fields become nullable strings, dropped fields are absent,
and record names are kept (no per-view namespace) so a reader built for v1 of a
view resolves data written with v2. A view is derived once per (source schema,
grant) and registered like any writer schema, so subscribers decode it by
fingerprint.

The router fields of the envelope (``subscriber``, ``delivery_sequence``,
``routed_at``) are its last three fields, each ``["null", T]``. The router
therefore encodes an event once per distinct view with them null (three zero
bytes at the end) and appends ``router_suffix(...)`` per delivery instead of
encoding again per subscriber; ``check_router_tail`` proves the layout holds.

API:
    view_domain_schema(domain_schema, plan, clearance) -> dict
    view_event_schema(domain_schema, plan, clearance, envelope=None) -> dict
    View(grant_key, plan, event_schema, fingerprint); ViewCache.get(domain, grant, key_field)
    NULL_ROUTER_TAIL; router_suffix(subscriber, delivery_sequence, routed_at_micros) -> bytes
        = subscriber_suffix(subscriber) + avro_long(seq) + routed_at_suffix(routed_at)
    check_router_tail(envelope) -> None (raises ValueError)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncbus.core.codec import fingerprint
from syncbus.core.envelope import ENVELOPE, ROUTER_FIELDS
from syncbus.core.masking import DROP, PASS, MaskPlan, compile_plan
from syncbus.core.model import Grant
from syncbus.core.schemas import event_schema

NULL_ROUTER_TAIL = b"\x00\x00\x00"


def view_domain_schema(
    domain_schema: Mapping[str, Any], plan: MaskPlan, clearance: str
) -> dict[str, Any]:
    """The domain record with masked fields as nullable strings and dropped ones removed."""
    view = copy.deepcopy(dict(domain_schema))
    rules = {rule.name: rule for rule in plan.rules}
    fields = []
    for field in view["fields"]:
        rule = rules[field["name"]]
        if rule.action == DROP:
            continue
        if rule.action == PASS:
            fields.append(field)
            continue
        masked = {
            "name": field["name"],
            "type": ["null", "string"],
            "default": None,
            "grade": clearance,
            "masked": rule.kind or rule.action,
            "masked_from": rule.grade,
        }
        if "pii" in field:
            masked["pii"] = field["pii"]
        if "doc" in field:
            masked["doc"] = field["doc"]
        fields.append(masked)
    view["fields"] = fields
    return view


def view_event_schema(
    domain_schema: Mapping[str, Any],
    plan: MaskPlan,
    clearance: str,
    envelope: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The change-event schema a subscriber reads: the envelope around its view record."""
    event = event_schema(view_domain_schema(domain_schema, plan, clearance), envelope)
    if plan.key_action != PASS:
        for field in event["fields"]:
            if field["name"] == "key":
                field["masked"] = "token"
    return event


@dataclass(frozen=True)
class View:
    """One grant's view of one source schema, ready to encode with."""

    grant_key: str
    plan: MaskPlan
    event_schema: dict[str, Any]
    fingerprint: bytes

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def _grant_identity(grant: Grant) -> tuple[str, str, str]:
    return grant.key, grant.clearance, json.dumps(dict(grant.masks), sort_keys=True)


class ViewCache:
    """Views by (source schema fingerprint, grant key, clearance, masks): each derived once."""

    def __init__(self, envelope: Mapping[str, Any] | None = None) -> None:
        self._envelope = dict(envelope or ENVELOPE)
        check_router_tail(self._envelope)
        self._views: dict[tuple[bytes, tuple[str, str, str]], View] = {}

    def get(self, domain_schema: Mapping[str, Any], grant: Grant, key_field: str | None) -> View:
        cache_key = (fingerprint(domain_schema), _grant_identity(grant))
        view = self._views.get(cache_key)
        if view is None:
            plan = compile_plan(domain_schema, grant.clearance, grant.masks, key_field)
            schema = view_event_schema(domain_schema, plan, grant.clearance, self._envelope)
            view = View(grant.key, plan, schema, fingerprint(schema))
            self._views[cache_key] = view
        return view


_ONE_BYTE = tuple(bytes((n,)) for n in range(0x80))


def avro_long(value: int) -> bytes:
    """Avro long: zig-zag, then base-128 varint, low groups first."""
    n = (value << 1) ^ (value >> 63)
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:  # delivery sequences: two or three bytes for a long while, no loop
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def subscriber_suffix(subscriber: str) -> bytes:
    """The part of ``router_suffix`` fixed per subscriber, up to the sequence's value.

    The router computes it once per grant; a delivery then appends
    ``avro_long(sequence) + routed_at_suffix(routed_at)``.
    """
    name = subscriber.encode("utf-8")
    return b"\x02" + avro_long(len(name)) + name + b"\x02"


def routed_at_suffix(routed_at_micros: int) -> bytes:
    """The last part of ``router_suffix``; one per batch, shared by its deliveries."""
    return b"\x02" + avro_long(routed_at_micros)


def router_suffix(subscriber: str, delivery_sequence: int, routed_at_micros: int) -> bytes:
    """Avro bytes of the three router fields, each in its non-null union branch (index 1)."""
    return (
        subscriber_suffix(subscriber)
        + avro_long(delivery_sequence)
        + routed_at_suffix(routed_at_micros)
    )


def check_router_tail(envelope: Mapping[str, Any]) -> None:
    """Refuse an envelope whose last fields are not the nullable router fields."""
    tail = [f for f in envelope.get("fields", [])][-len(ROUTER_FIELDS) :]
    names = tuple(f["name"] for f in tail)
    nullable = all(isinstance(f["type"], list) and f["type"][0] == "null" for f in tail)
    if names != ROUTER_FIELDS or not nullable:
        raise ValueError(
            f"the envelope must end with nullable {', '.join(ROUTER_FIELDS)} "
            f"(found {', '.join(names)}); the router appends them per delivery"
        )
