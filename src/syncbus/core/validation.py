"""Record validation before a record enters the bus, with errors naming the field.

The publisher SDK refuses a bad record before sending and the router
dead-letters one that slipped through, so the check is compiled once per schema
into a tree of small checkers. Checks: required (non-nullable) fields present
and not null, Avro type of every value, unknown fields, and the ``format`` of a
field: ``citizen_id`` (GB 11643, ``stdnum.cn.ric``), ``uscc`` (GB 32100,
``stdnum.cn.uscc``), ``region_code`` (GB/T 2260).

API:
    FieldError(path, reason); ValidationError(errors) (a ValueError, str lists them)
    compile_validator(domain_schema) -> Validator  (cached per schema)
    Validator.errors(record, prefix="") -> list[FieldError]; Validator.check(record, prefix="")
    check_format(fmt, value) -> reason | None
    from_json / to_json: see syncbus.core.jsonconv (re-exported here)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

from stdnum.cn import ric, uscc
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidLength
from stdnum.exceptions import ValidationError as StdnumError

from syncbus.core.jsonconv import from_json, to_json
from syncbus.core.problems import FieldError, ValidationError
from syncbus.core.regions import is_valid_region


def _stdnum_reason(what: str, exc: StdnumError, value: str) -> str:
    if isinstance(exc, InvalidLength):
        return f"{what} must be 18 characters (got {value})"
    if isinstance(exc, InvalidChecksum):
        return f"{what} check digit is wrong (got {value})"
    if isinstance(exc, InvalidComponent):
        return f"{what} has an invalid birth date or region (got {value})"
    return f"{what} has an invalid format (got {value})"


def check_format(fmt: str, value: Any) -> str | None:
    """Why ``value`` breaks format ``fmt``, or None when it is fine."""
    if not isinstance(value, str):
        return None
    if fmt == "citizen_id":
        try:
            ric.validate(value)
        except StdnumError as exc:
            return _stdnum_reason("citizen ID", exc, value)
    elif fmt == "uscc":
        try:
            uscc.validate(value)
        except StdnumError as exc:
            return _stdnum_reason("USCC", exc, value)
    elif fmt == "region_code" and not is_valid_region(value):
        return f"not a GB/T 2260 region code (got {value})"
    return None


Check = Callable[[Any, str, list[FieldError]], None]

_INT_RANGE = {"int": 2**31, "long": 2**63}


def _primitive(type_: str, logical: str | None) -> Check:
    def check(value: Any, path: str, out: list[FieldError]) -> None:
        ok: bool
        if logical == "date":
            ok = isinstance(value, dt.date) and not isinstance(value, dt.datetime)
        elif logical in ("timestamp-micros", "timestamp-millis"):
            ok = isinstance(value, dt.datetime) or (
                isinstance(value, int) and not isinstance(value, bool)
            )
        elif logical == "decimal":
            ok = isinstance(value, Decimal)
        elif type_ in _INT_RANGE:
            bound = _INT_RANGE[type_]
            ok = isinstance(value, int) and not isinstance(value, bool) and -bound <= value < bound
        elif type_ in ("float", "double"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif type_ == "string":
            ok = isinstance(value, str)
        elif type_ == "boolean":
            ok = isinstance(value, bool)
        elif type_ == "bytes":
            ok = isinstance(value, bytes)
        else:
            ok = value is None
        if not ok:
            expected = logical or type_
            out.append(FieldError(path, f"expected {expected}, got {type(value).__name__}"))

    return check


def _compile(type_: Any, names: dict[str, Check]) -> Check:
    if isinstance(type_, str):
        return names[type_] if type_ in names else _primitive(type_, None)
    if isinstance(type_, list):
        return _union(type_, names)
    kind = type_["type"]
    if kind == "record":
        return _record(type_, names)
    if kind == "enum":
        symbols = frozenset(type_["symbols"])

        def enum(value: Any, path: str, out: list[FieldError]) -> None:
            if value not in symbols:
                out.append(
                    FieldError(path, f"{value!r} is not one of {', '.join(type_['symbols'])}")
                )

        names[_full(type_)] = names[type_["name"]] = enum
        return enum
    if kind in ("array", "map", "fixed"):
        raise ValueError(f"{kind} fields are not used in syncbus domain schemas")
    return _primitive(kind, type_.get("logicalType"))


def _full(type_: Mapping[str, Any]) -> str:
    ns = type_.get("namespace")
    return f"{ns}.{type_['name']}" if ns else str(type_["name"])


def _union(branches: list[Any], names: dict[str, Check]) -> Check:
    nullable = "null" in branches
    others = [_compile(b, names) for b in branches if b != "null"]

    def union(value: Any, path: str, out: list[FieldError]) -> None:
        if value is None:
            if not nullable:
                out.append(FieldError(path, "must not be null"))
            return
        for branch in others:
            found: list[FieldError] = []
            branch(value, path, found)
            if not found:
                return
        if len(others) == 1:
            others[0](value, path, out)
        else:
            out.append(FieldError(path, "value matches no branch of the union"))

    return union


def _record(schema: Mapping[str, Any], names: dict[str, Check]) -> Check:
    fields: list[tuple[str, Check, str | None, bool]] = []

    def record(value: Any, path: str, out: list[FieldError]) -> None:
        prefix = f"{path}." if path else ""
        if not isinstance(value, Mapping):
            out.append(FieldError(path or "/", f"expected a record, got {type(value).__name__}"))
            return
        for name, check, fmt, required in fields:
            field_path = prefix + name
            if name not in value or value[name] is None:
                if required:
                    out.append(FieldError(field_path, "required field is missing"))
                continue
            before = len(out)
            check(value[name], field_path, out)
            if fmt is not None and len(out) == before:
                reason = check_format(fmt, value[name])
                if reason:
                    out.append(FieldError(field_path, reason))
        for name in value.keys() - known:
            out.append(FieldError(prefix + str(name), "unknown field"))

    names[_full(schema)] = names[schema["name"]] = record
    for field in schema["fields"]:
        type_ = field["type"]
        nullable = isinstance(type_, list) and "null" in type_
        check = _compile(type_, names)
        fields.append((field["name"], check, field.get("format"), not nullable))
    known = frozenset(name for name, *_ in fields)
    return record


class Validator:
    """A compiled check of one record schema."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._check = _record(schema, {})

    def errors(self, record: Any, prefix: str = "") -> list[FieldError]:
        """Every problem of ``record``; paths start with ``prefix`` (e.g. ``after``)."""
        out: list[FieldError] = []
        self._check(record, prefix, out)
        return out

    def check(self, record: Any, prefix: str = "") -> None:
        """Raise ValidationError naming every bad field."""
        errors = self.errors(record, prefix)
        if errors:
            raise ValidationError(errors)


@lru_cache(maxsize=256)
def _compiled(key: str) -> Validator:
    return Validator(json.loads(key))


def compile_validator(schema: Mapping[str, Any]) -> Validator:
    """The validator of a record schema, compiled once per distinct schema."""
    return _compiled(json.dumps(schema, sort_keys=True, ensure_ascii=False))


__all__ = [
    "FieldError",
    "ValidationError",
    "Validator",
    "check_format",
    "compile_validator",
    "from_json",
    "to_json",
]
