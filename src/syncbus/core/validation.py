"""Record validation before a record enters the bus, with errors naming the field.

The publisher SDK refuses a bad record before sending and the router
dead-letters one that slipped through, so the check is compiled once per schema
into a tree of small checkers. Checks: required (non-nullable) fields present
and not null, Avro type of every value (a decimal within its precision and scale,
``avro_support.decimal_problem``; a float or double finite, ``_finite``), unknown
fields, and the ``format`` of a field: ``citizen_id`` (GB 11643, the rule in
``syncbus.core.citizen_ids``), ``uscc`` (GB 32100, ``stdnum.cn.uscc``), ``region_code``
(GB/T 2260).

Every event passes through here, and almost every record is valid, so each
schema also gets one generated function that only answers "certainly valid"
(exact types, the check digits computed directly, region and birth-place
verdicts cached); only a record it does not vouch for walks the checker tree,
which finds and names every problem. The fast answers accept a subset of what
the full checks accept (tests compare them), so the verdicts never differ.

API:
    FieldError(path, reason); ValidationError(errors) (a ValueError, str lists them)
    compile_validator(domain_schema) -> Validator  (cached per schema)
    Validator.errors(record, prefix="") -> list[FieldError]; Validator.check(record, prefix="")
    check_format(fmt, value) -> reason | None
    fast_format_check(field) -> the check vouching for a field's value in the fast paths
    from_json / to_json: see syncbus.core.jsonconv (re-exported here)
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache, partial
from types import ModuleType
from typing import Any

from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, InvalidLength
from stdnum.exceptions import ValidationError as StdnumError

from syncbus.core.avro_support import decimal_problem
from syncbus.core.citizen_ids import (
    birth_place_ok,
    citizen_id_problem,
    load_regions,
    vouched_birth_place,
)
from syncbus.core.jsonconv import from_json, to_json
from syncbus.core.problems import FieldError, ValidationError
from syncbus.core.regions import is_valid_region


def _uscc_reason(exc: StdnumError, value: str) -> str:
    if isinstance(exc, InvalidLength):
        return f"USCC must be 18 characters (got {value})"
    if isinstance(exc, InvalidChecksum):
        return f"USCC check digit is wrong (got {value})"
    return f"USCC has an invalid format (got {value})"


@lru_cache(maxsize=65536)
def _date_ok(yyyymmdd: str) -> bool:
    try:
        dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return True


def _citizen_id_ok(v: str) -> bool:
    """Vouches for a canonical citizen ID that ``citizen_id_problem`` accepts: check
    digit and calendar date computed directly, the place by ``vouched_birth_place``."""
    head = v[:17]
    return (
        len(v) == 18 and head.isascii() and head.isdigit()
        and v[17] == _RIC_CHECK[(1 - 2 * int(head, 13)) % 11]
        and _date_ok(v[6:14]) and vouched_birth_place(v[:6], v[6:10])
    )


_RIC_CHECK = "0123456789X"
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# GB 32100 weighs position i by 3**i mod 31, so the weighted sum mod 31 is the value
# of the reversed code read in base 34 (34 = 3 mod 31), which int() computes in C once
# each character is translated to its base-34 digit (anything else to "!": refused)
_USCC_BASE34 = bytes(
    b"0123456789ABCDEFGHIJKLMNOPQRSTU"[_USCC_ALPHABET.find(chr(c))]
    if chr(c) in _USCC_ALPHABET else ord("!")
    for c in range(256)
)


def _uscc_ok(v: str) -> bool:
    """GB 32100 exactly as ``uscc.validate`` checks it, for the canonical form only."""
    if len(v) != 18:
        return False
    try:
        raw = v.encode("ascii")
        total = int(raw[16::-1].translate(_USCC_BASE34), 34)
    except ValueError:  # not ASCII, or a character outside the alphabet
        return False
    return raw[:8].isdigit() and v[17] == _USCC_ALPHABET[(31 - total) % 31]


_region_ok = lru_cache(maxsize=8192)(is_valid_region)

_native_formats: ModuleType | None
try:  # the same two checks in C, compiled from Cython at install time (setup.py)
    from syncbus.core import _formats as _native_formats
except ImportError:  # no C compiler where this was installed: the Python versions above
    _native_formats = None

_FAST_FORMATS: dict[str, Callable[[str], bool]] = {
    "citizen_id": (_native_formats.CitizenIdCheck(vouched_birth_place) if _native_formats
                   else _citizen_id_ok),
    "uscc": _native_formats.uscc_ok if _native_formats else _uscc_ok,
    "region_code": _region_ok,
}


def fast_format_check(field: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """The check that vouches for a non-null value of ``field`` in the fast paths (the
    generated ``ok`` and the native checked encoder), or None: a format with a fast
    check, on a field whose value is a string (``["null", "string"]`` included), and
    ``_finite`` on a float or double field."""
    fast = _FAST_FORMATS.get(field.get("format") or "")
    type_ = field.get("type")
    if isinstance(type_, list):
        branches = [b for b in type_ if b != "null"]
        type_ = branches[0] if len(branches) == 1 else None
    if type_ in ("float", "double", {"type": "float"}, {"type": "double"}):
        return _finite
    return fast if type_ in ("string", {"type": "string"}) else None


def check_format(fmt: str, value: Any) -> str | None:
    """Why ``value`` breaks format ``fmt``, or None when it is fine."""
    if not isinstance(value, str):
        return None
    fast = _FAST_FORMATS.get(fmt)
    if fast is not None and type(value) is str and fast(value):
        return None
    if fmt == "citizen_id":
        return citizen_id_problem(value)
    if fmt == "uscc":
        try:
            uscc.validate(value)
        except StdnumError as exc:
            return _uscc_reason(exc, value)
    elif fmt == "region_code" and not _region_ok(value):
        return f"not a GB/T 2260 region code (got {value})"
    return None


Check = Callable[[Any, str, list[FieldError]], None]

_INT_RANGE = {"int": 2**31, "long": 2**63}


def _finite(value: float) -> bool:
    """A float or double must be a number a JSON reader and a SQL column take: NaN and
    the infinities are neither. JSON input meets the rule here too (``from_json``
    converts ``NaN`` and ``1e400`` as they are)."""
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a double
        return False


def _primitive(type_: str, logical: str | None) -> Check:
    def check(value: Any, path: str, out: list[FieldError]) -> None:
        ok: bool
        if logical == "date":
            ok = isinstance(value, dt.date) and not isinstance(value, dt.datetime)
        elif logical in ("timestamp-micros", "timestamp-millis"):
            ok = isinstance(value, dt.datetime) or (
                isinstance(value, int) and not isinstance(value, bool)
            )
        elif type_ in _INT_RANGE:
            bound = _INT_RANGE[type_]
            ok = isinstance(value, int) and not isinstance(value, bool) and -bound <= value < bound
        elif type_ in ("float", "double"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and not _finite(value):
                out.append(FieldError(path, "must be a finite number, not NaN, an infinity "
                                            "or beyond a double"))
                return
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
            if not isinstance(value, str) or value not in symbols:
                out.append(
                    FieldError(path, f"{value!r} is not one of {', '.join(type_['symbols'])}")
                )

        names[_full(type_)] = names[type_["name"]] = enum
        return enum
    if kind in ("array", "map", "fixed"):
        raise ValueError(f"{kind} fields are not used in syncbus domain schemas")
    if type_.get("logicalType") == "decimal":
        return _decimal(type_["precision"], type_.get("scale", 0))
    return _primitive(kind, type_.get("logicalType"))


def _decimal(precision: int, scale: int) -> Check:
    def check(value: Any, path: str, out: list[FieldError]) -> None:
        if not isinstance(value, Decimal):
            out.append(FieldError(path, f"expected decimal, got {type(value).__name__}"))
            return
        reason = decimal_problem(value, precision, scale)
        if reason:
            out.append(FieldError(path, reason))

    return check


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
        if field.get("format") == "citizen_id":
            load_regions()  # at compile time, not at the first number checked
        fields.append((field["name"], check, field.get("format"), not nullable))
    known = frozenset(name for name, *_ in fields)
    return record


class _Unsupported(Exception):
    """A schema shape the fast check does not vouch for; the tree checks it alone."""


_FAST_TYPES = {
    "string": "type({v}) is not str", "bytes": "type({v}) is not bytes",
    "boolean": "type({v}) is not bool", "float": "type({v}) is not float",
    "double": "type({v}) is not float",
    "int": "type({v}) is not int or not -2147483648 <= {v} < 2147483648",
    "long": "type({v}) is not int or not -9223372036854775808 <= {v} < 9223372036854775808",
    "date": "type({v}) is not _date",
    "timestamp-micros": "type({v}) is not int and type({v}) is not _datetime",
    "timestamp-millis": "type({v}) is not int and type({v}) is not _datetime",
}


class _FastGen:
    """Source of ``ok(r) -> bool``: True only for records the checker tree would pass."""

    def __init__(self) -> None:
        self.lines = ["def ok(r):"]
        self.env: dict[str, Any] = {"_date": dt.date, "_datetime": dt.datetime,
                                    "_Decimal": Decimal}
        self.named: dict[str, Mapping[str, Any]] = {}
        self.n = 0

    def name(self, value: Any = None, prefix: str = "v") -> str:
        self.n += 1
        if value is not None:
            self.env[f"_c{self.n}"] = value
            return f"_c{self.n}"
        return f"{prefix}{self.n}"

    def add(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    def record(self, schema: Mapping[str, Any], r: str, ind: int, stack: tuple[str, ...]) -> None:
        self.named[_full(schema)] = self.named[schema["name"]] = schema
        known = self.name(frozenset(f["name"] for f in schema["fields"]))
        self.add(ind, f"if type({r}) is not dict or not {known}.issuperset({r}): return False")
        for field in schema["fields"]:
            v, type_, inner = self.name(), field["type"], ind
            self.add(ind, f"{v} = {r}.get({field['name']!r})")
            if isinstance(type_, list):
                branches = [b for b in type_ if b != "null"]
                if len(branches) != 1:
                    raise _Unsupported("union of several types")
                if "null" in type_:
                    self.add(ind, f"if {v} is not None:")
                    inner = ind + 1
                else:
                    self.add(ind, f"if {v} is None: return False")
                type_ = branches[0]
            else:
                self.add(ind, f"if {v} is None: return False")
            self.value(type_, v, inner, (*stack, _full(schema)))
            fast = fast_format_check(field)
            if fast is not None:
                self.add(inner, f"if not {self.name(fast)}({v}): return False")

    def value(self, type_: Any, v: str, ind: int, stack: tuple[str, ...]) -> None:
        if isinstance(type_, str) and type_ in self.named:
            type_ = self.named[type_]
        if isinstance(type_, Mapping) and type_["type"] in ("record", "enum"):
            if _full(type_) in stack:
                raise _Unsupported("recursive record")
            if type_["type"] == "record":
                return self.record(type_, v, ind, stack)
            self.named[_full(type_)] = self.named[type_["name"]] = type_
            symbols = self.name(frozenset(type_["symbols"]))
            return self.add(ind, f"if {v} not in {symbols}: return False")
        kind = type_ if isinstance(type_, str) else type_.get("logicalType") or type_["type"]
        if kind == "decimal":
            fits = self.name(partial(decimal_problem, precision=type_["precision"],
                                     scale=type_.get("scale", 0)))
            return self.add(ind, f"if type({v}) is not _Decimal or {fits}({v}) is not None: "
                                 "return False")
        if kind not in _FAST_TYPES:
            kind = type_ if isinstance(type_, str) else type_["type"]
        if kind not in _FAST_TYPES:
            raise _Unsupported(str(kind))
        self.add(ind, f"if {_FAST_TYPES[kind].format(v=v)}: return False")
        return None


def _fast_check(schema: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    gen = _FastGen()
    try:
        gen.record(schema, "r", 1, ())
    except (_Unsupported, KeyError, TypeError):
        return None
    gen.add(1, "return True")
    exec("\n".join(gen.lines), gen.env)
    ok: Callable[[Any], bool] = gen.env["ok"]
    return ok


class Validator:
    """A compiled check of one record schema."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._check = _record(schema, {})
        self._fast = _fast_check(schema)

    @property
    def has_fast_path(self) -> bool:
        """True when the schema got its generated check: its shapes are the simple ones."""
        return self._fast is not None

    def valid(self, record: Any) -> bool:
        """True when the fast check vouches for ``record`` (False: ask ``errors``)."""
        try:
            return self._fast is not None and self._fast(record)
        except Exception:
            return False

    def errors(self, record: Any, prefix: str = "") -> list[FieldError]:
        """Every problem of ``record``; paths start with ``prefix`` (e.g. ``after``)."""
        if self.valid(record):
            return []
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
    "birth_place_ok",
    "check_format",
    "compile_validator",
    "fast_format_check",
    "from_json",
    "to_json",
    "vouched_birth_place",
]
