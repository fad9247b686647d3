"""Masking: what a subscriber receives of each field, decided once per (schema, grant).

The rules come from the tags in the ``.avsc`` files, never from lists of field
names in code: a field whose grade is at or below the grant's clearance passes;
above it, the mask of its PII kind applies; a field with no mask for its kind is
dropped (default deny). A grant's ``masks`` may make a field stricter (``drop``,
``token`` or a kind's mask) but ``pass`` cannot lift a field above the
clearance, so "no field above clearance is delivered raw" holds for every grant.

Join keys are tokenised with HMAC-SHA256 under a per-subscriber secret, never a
plain hash (an 18-digit citizen ID is brute-forced from a plain hash in hours).
The entity key of an event is tokenised the same way when its field is above
clearance, so a subscriber can still join and upsert on it.

API:
    PASS, MASK, TOKEN, DROP; MASKS: kind -> mask function
    FieldRule(name, action, kind, grade); MaskPlan(rules, key_action)
        .masked_fields / .dropped_fields / .needs_secret
    compile_plan(domain_schema, clearance, masks, key_field) -> MaskPlan
    Masker(plan, secret): .record(rec) -> dict; .key(key) -> str; .forget()
    TOKEN_LENGTH; token(secret, value) -> str
    tokeniser(secret) -> Tokeniser (callable, remembering tokens until .forget())
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from syncbus.core.schemas import field_grade, field_pii, iter_fields

Action = Literal["pass", "mask", "token", "drop"]
PASS: Action = "pass"
MASK: Action = "mask"
TOKEN: Action = "token"
TOKEN_LENGTH = 32  # hex characters of a token, whatever the value
DROP: Action = "drop"

_DISTRICT = re.compile(r"^.*?(?:自治县|自治旗|区|县|旗)")
_CITY = re.compile(r"^.*市")


def _differs(masked: str, raw: str) -> str:
    """A mask must never hand back the raw value (a one-letter name, a bare district)."""
    return masked if masked != raw else "*" * max(len(raw), 1)


# what the citizen-ID mask keeps: the region (first six) and the last two characters.
# With the birth year (the birth-date mask) and the gender delivered beside it, about
# 3,300 real IDs fit one masked value; keeping the last four left about 33
# (tests/unit/test_id_mask_strength.py counts them). ``_bytepath`` reads these.
ID_MASK_HEAD = 6
ID_MASK_TAIL = 2
ID_MASK_MIN_LENGTH = 12  # shorter values are not IDs: all stars


def mask_id_number(value: Any) -> str:
    """Citizen ID: region (first six) and last two, e.g. 320508**********34."""
    text = str(value)
    if len(text) < ID_MASK_MIN_LENGTH:
        return "*" * max(len(text), 1)
    hidden = len(text) - ID_MASK_HEAD - ID_MASK_TAIL
    return _differs(text[:ID_MASK_HEAD] + "*" * hidden + text[-ID_MASK_TAIL:], text)


def mask_name(value: Any) -> str:
    """Name: the surname (first character) only."""
    text = str(value)
    return _differs(text[:1] + "*" * (len(text) - 1), text)


def mask_phone(value: Any) -> str:
    """Phone: first three and last four digits, e.g. 138****1234."""
    text = str(value)
    if len(text) < 8:
        return "*" * max(len(text), 1)
    return _differs(text[:3] + "****" + text[-4:], text)


def mask_birth_date(value: Any) -> str:
    """Date of birth: the year only."""
    if isinstance(value, dt.date):
        return f"{value.year:04d}"
    return _differs(str(value)[:4], str(value))


def mask_address(value: Any) -> str:
    """Address: cut after the district (区/县/旗), else after the city, else nothing."""
    text = str(value)
    match = _DISTRICT.match(text) or _CITY.match(text)
    return _differs(match.group(0) if match else "", text)


MASKS: Mapping[str, Callable[[Any], str]] = {
    "id_number": mask_id_number,
    "name": mask_name,
    "phone": mask_phone,
    "birth_date": mask_birth_date,
    "address": mask_address,
}


def _token_text(value: Any) -> bytes:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text.encode("utf-8")


def token(secret: bytes, value: Any) -> str:
    """Keyed token of a value: HMAC-SHA256 under the subscriber's secret, 32 hex chars."""
    return hmac.new(secret, _token_text(value), "sha256").hexdigest()[:TOKEN_LENGTH]


class Tokeniser:
    """``token`` bound to one secret: the keyed HMAC is made once and copied per
    text, and each text is hashed once until ``forget``.

    Every keyed token of syncbus is this one HMAC-SHA256, libcrypto's: Python's
    ``hmac`` here and in ``token``, and the byte path's ``_hmac.h`` (OpenSSL's
    EVP_MAC); the tests compare them. The router tokenises a key per delivery, often
    the same value as a tokenised field of the record, and an entity changed twice
    in a batch has the same key twice, so tokens are remembered, and forgotten per
    batch so memory holds one batch's values, not a stream's.
    """

    __slots__ = ("_keyed", "_tokens")

    def __init__(self, secret: bytes) -> None:
        self._keyed = hmac.new(secret, digestmod="sha256")
        self._tokens: dict[str, str] = {}

    def __call__(self, value: Any) -> str:
        if type(value) is str:
            found = self._tokens.get(value)
            if found is None:
                found = self._tokens[value] = self._hash(value)
            return found
        return self._hash(value)

    def _hash(self, value: Any) -> str:
        keyed = self._keyed.copy()
        keyed.update(_token_text(value))
        return keyed.hexdigest()[:TOKEN_LENGTH]

    def forget(self) -> None:
        self._tokens.clear()


def tokeniser(secret: bytes) -> Tokeniser:
    """``token`` bound to one secret (see ``Tokeniser``)."""
    return Tokeniser(secret)


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What one top-level field of a record becomes for one grant."""

    name: str
    action: Action
    kind: str | None
    grade: str


@dataclass(frozen=True)
class MaskPlan:
    """The compiled masking of one domain schema under one grant's clearance and masks."""

    rules: tuple[FieldRule, ...]
    key_action: Action

    @property
    def masked_fields(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules if r.action in (MASK, TOKEN))

    @property
    def dropped_fields(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules if r.action == DROP)

    @property
    def needs_secret(self) -> bool:
        return self.key_action == TOKEN or any(r.action == TOKEN for r in self.rules)

    @property
    def is_identity(self) -> bool:
        """True when every field passes: the view is the source schema."""
        return self.key_action == PASS and all(r.action == PASS for r in self.rules)


def _subtree_grade(path: str, field: Mapping[str, Any], fields: list[tuple[str, Any]]) -> str:
    """The highest grade of a field and of every nested field under it."""
    grades = [field_grade(field)]
    grades += [field_grade(f) for p, f in fields if p.startswith(path + ".")]
    return max(grades)


def _rule(
    name: str, grade: str, pii: str | None, clearance: str, override: str | None
) -> FieldRule:
    above = grade > clearance
    if override is None or override == PASS:
        if not above:
            return FieldRule(name, PASS, None, grade)
        if pii in MASKS:
            return FieldRule(name, MASK, pii, grade)
        return FieldRule(name, DROP, None, grade)
    if override == DROP:
        return FieldRule(name, DROP, None, grade)
    if override == TOKEN:
        return FieldRule(name, TOKEN, None, grade)
    if override in MASKS:
        return FieldRule(name, MASK, override, grade)
    return FieldRule(name, DROP, None, grade)  # an unknown mask never lets data through


def _nested_masks(masks: Mapping[str, str]) -> set[str]:
    """Top-level fields holding a nested field that a mask makes stricter.

    Masks apply per top-level field and ``syncbus check`` refuses one on a nested
    field; a policy that carries one anyway drops the whole top-level field rather
    than deliver the nested value raw."""
    return {path.split(".")[0] for path, mask in masks.items() if "." in path and mask != PASS}


def compile_plan(
    domain_schema: Mapping[str, Any],
    clearance: str,
    masks: Mapping[str, str],
    key_field: str | None,
) -> MaskPlan:
    """The plan for one schema and grant; ``key_field`` decides whether keys are tokenised."""
    fields = list(iter_fields(domain_schema))
    rules = []
    key_grade = "L1"
    nested = _nested_masks(masks)
    for path, field in fields:
        if "." in path:
            continue
        grade = _subtree_grade(path, field, fields)
        override = DROP if path in nested else masks.get(path)
        rules.append(_rule(path, grade, field_pii(field), clearance, override))
        if path == key_field:
            key_grade = grade
    key_override = masks.get(key_field) if key_field else None
    key_raw = key_grade <= clearance and key_override in (None, PASS)
    return MaskPlan(tuple(rules), PASS if key_raw else TOKEN)


class Masker:
    """A plan bound to a subscriber's secret; applies it to records and keys.

    The plan is compiled into one straight-line function per grant (a dict display
    naming each delivered field), so masking a record costs one call, not a loop
    over rules.
    """

    def __init__(self, plan: MaskPlan, secret: bytes | None) -> None:
        if plan.needs_secret and not secret:
            raise ValueError("this grant tokenises values and needs the subscriber's secret")
        self.plan = plan
        self.secret = secret  # the router's byte path computes the same tokens in C
        self._token = tokeniser(secret or b"")
        self._record = _compile_masking(plan, self._token)
        self._key_raw = plan.key_action == PASS

    def record(self, record: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The record as the subscriber may see it; ``None`` stays ``None``."""
        return None if record is None else self._record(record)

    def forget(self) -> None:
        """Drop the remembered tokens (the router calls this between batches)."""
        self._token.forget()

    def key(self, key: str | None) -> str | None:
        """The entity key as the subscriber receives it (a token when above clearance)."""
        if key is None or self._key_raw:
            return key
        return self._token(key)


def _compile_masking(
    plan: MaskPlan, tokenise: Callable[[Any], str]
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """``lambda r: {name: step(r.get(name)), ...}`` written out for one plan."""
    if plan.is_identity:
        return dict
    namespace: dict[str, Any] = {}
    items = []
    for i, rule in enumerate(plan.rules):
        name = repr(rule.name)
        if rule.action == PASS:
            items.append(f"{name}: r.get({name})")
            continue
        if rule.action == DROP:
            continue
        namespace[f"f{i}"] = MASKS[rule.kind or ""] if rule.action == MASK else tokenise
        items.append(f"{name}: None if (v{i} := r.get({name})) is None else f{i}(v{i})")
    source = "def mask(r):\n    return {" + ", ".join(items) + "}\n"
    exec(compile(source, "<masking plan>", "exec"), namespace)
    compiled: Callable[[Mapping[str, Any]], dict[str, Any]] = namespace["mask"]
    return compiled
