"""JSON in and out of Avro records, for department systems that speak JSON.

Input is strict: an unknown field is an error naming it (a typo must not turn
into a silently missing column), a date is ``YYYY-MM-DD``, a decimal is a string
or number (strings keep precision), a timestamp is ISO 8601 or int micros. A
number its Avro type cannot hold is an error naming the field, never an exception
of the encoder: an ``int``/``long`` or timestamp beyond 32/64 bits, a decimal with
more digits than its precision. A ``float``/``double`` that is NaN, infinite
(Python's ``json`` reads ``NaN`` and ``1e400``) or beyond a double is converted as
it is, and validation refuses it (``validation._finite``), as it does from the API.
Output is what ``json.dumps`` takes: dates and datetimes ISO 8601, decimals as
strings, bytes as base64.

API:
    from_json(schema, obj, prefix="") -> record   raises ValidationError naming paths
    to_json(value) -> JSON-able value
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from syncbus.core.problems import FieldError, ValidationError


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


_INT_BITS = {"int": 31, "long": 63}


def _short(value: Any) -> str:
    """A number as an error may quote it: JSON integers can have thousands of digits."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."


def _number(kind: str, value: Any) -> None:
    """Raise _Bad when ``value`` is a number that an Avro ``kind`` cannot hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return  # not a number: the validator names the type
    if kind in _INT_BITS and isinstance(value, int):
        bound = 1 << _INT_BITS[kind]
        if not -bound <= value < bound:
            raise _Bad(f"{_short(value)} is out of range for {kind} (-2^{_INT_BITS[kind]} .. "
                       f"2^{_INT_BITS[kind]} - 1)")


def _logical(type_: Mapping[str, Any], value: Any) -> Any:
    logical = type_.get("logicalType")
    if logical in ("timestamp-micros", "timestamp-millis") and isinstance(value, int | float):
        _number("long", value)
    if logical == "date" and isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise _Bad(f"expected a date YYYY-MM-DD, got {value!r}") from None
    if logical in ("timestamp-micros", "timestamp-millis") and isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Bad(f"expected an ISO 8601 timestamp, got {value!r}") from None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    if (
        logical == "decimal"
        and isinstance(value, str | int | float)
        and not isinstance(value, bool)
    ):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise _Bad(f"expected a decimal number, got {value!r}") from None
        if not number.is_finite():
            raise _Bad(f"expected a finite decimal, got {value!r}")
        precision, scale = int(type_.get("precision", 0)), int(type_.get("scale", 0))
        try:  # rounded to the scale, then at most ``precision`` digits in all
            rounded = number.quantize(Decimal(1).scaleb(-scale), context=Context(prec=precision))
        except InvalidOperation:
            raise _Bad(f"{_short(value)} has more digits than decimal({precision}, {scale}) "
                       f"holds (at most {precision - scale} before the point)") from None
        return rounded
    return value


def _convert(
    type_: Any, value: Any, path: str, names: dict[str, Any], out: list[FieldError]
) -> Any:
    if isinstance(type_, str):
        type_ = names.get(type_, type_)
    if isinstance(type_, list):
        if value is None:
            return None
        branch = next((b for b in type_ if b != "null"), "null")
        return _convert(branch, value, path, names, out)
    if isinstance(type_, dict):
        kind = type_["type"]
        if kind in ("record", "enum", "fixed"):
            names[type_["name"]] = type_
            if "namespace" in type_:
                names[f"{type_['namespace']}.{type_['name']}"] = type_
        if kind == "record":
            return _record(type_, value, path, names, out)
        try:
            if "logicalType" not in type_:
                _number(kind, value)
            return _logical(type_, value)
        except _Bad as bad:
            out.append(FieldError(path, bad.reason))
            return value
    try:
        _number(type_, value)
    except _Bad as bad:
        out.append(FieldError(path, bad.reason))
    return value


def _record(
    schema: Mapping[str, Any], obj: Any, path: str, names: dict[str, Any], out: list[FieldError]
) -> Any:
    if not isinstance(obj, Mapping):
        out.append(FieldError(path or "/", f"expected an object, got {type(obj).__name__}"))
        return obj
    prefix = f"{path}." if path else ""
    known = {f["name"] for f in schema["fields"]}
    for name in obj:
        if name not in known:
            out.append(FieldError(prefix + str(name), "unknown field"))
    record = {}
    for field in schema["fields"]:
        name = field["name"]
        if name in obj:
            record[name] = _convert(field["type"], obj[name], prefix + name, names, out)
        elif "default" in field:
            record[name] = field["default"]
    return record


def from_json(schema: Mapping[str, Any], obj: Any, prefix: str = "") -> dict[str, Any]:
    """A record ready for ``Validator.check`` and the codec, from parsed JSON."""
    out: list[FieldError] = []
    record = _record(schema, obj, prefix, {}, out)
    if out:
        raise ValidationError(out)
    assert isinstance(record, dict)
    return record


def to_json(value: Any) -> Any:
    """A record (or any decoded Avro value) as plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value
