"""The Python half of the native Avro codec (``_avro_native.pyx``): its rules that are
not speed-critical, kept where mypy and the purity test see them.

- ``Fallback``: raised for a value or byte the native code does not take; the codec
  then asks fastavro, whose bytes, values and errors are the reference.
- ``Unsupported``: a schema feature not compiled (arrays, maps, fixed, recursive
  records, unions of several types when encoding, other logical types); such a
  schema is fastavro's only.
- ``TypeNames``: how a schema's named types resolve (namespaces, short names).
- ``logical_of`` / ``PRIMITIVES``: reading a type declaration.
- ``decimal_problem``: what a ``decimal(precision, scale)`` cannot hold (validation
  names it; ``decimal_bytes`` declines it).
- ``decimal_bytes``: fastavro's ``prepare_bytes_decimal``, step for step.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping
from typing import Any

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes, int], tuple[dict[str, Any], int]]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class Fallback(Exception):
    """The value is outside what the native code handles; use fastavro for it."""


class Unsupported(Exception):
    """A schema feature the native codec does not compile."""


def logical_of(schema: Any) -> tuple[str, str | None]:
    """(type, logicalType) of a type declaration."""
    if isinstance(schema, Mapping):
        return str(schema["type"]), schema.get("logicalType")
    return str(schema), None


class TypeNames:
    """The named types seen so far in one schema walk."""

    def __init__(self) -> None:
        self.named: dict[str, tuple[Mapping[str, Any], str]] = {}

    def resolve(self, ref: str, ns: str, stack: tuple[str, ...]) -> tuple[Mapping[str, Any], str]:
        """A named type referenced by name, with the namespace it was defined in."""
        for full in ((f"{ns}.{ref}", ref) if ns and "." not in ref else (ref,)):
            if full in self.named:
                if full in stack:
                    raise Unsupported(f"recursive type {full}")
                return self.named[full]
        raise Unsupported(f"unknown type name {ref}")

    def define(self, schema: Mapping[str, Any], ns: str) -> tuple[str, str]:
        """Register a named type; returns (full name, its namespace)."""
        name = str(schema["name"])
        if "." in name:
            full = name
        else:
            own = schema.get("namespace", ns) or ""
            full = f"{own}.{name}" if own else name
        inner = full.rpartition(".")[0]
        self.named[full] = (schema, inner)
        short = full.rpartition(".")[2]
        self.named.setdefault(short, (schema, inner))
        return full, inner


def decimal_problem(value: decimal.Decimal, precision: int, scale: int) -> str | None:
    """Why ``value`` cannot be a ``decimal(precision, scale)``, or None when it can.

    Avro writes the unscaled integer at exactly ``scale``: a value with more places
    would have to be rounded (fastavro refuses it), NaN and infinities have no
    integer, and a value with more than ``precision - scale`` digits before the point
    does not fit the type (fastavro counts only the digits written out, so it takes
    ``1E+17`` for a ``decimal(18, 2)``, and a city's ``NUMERIC(18, 2)`` refuses it).
    The value is not in the reason: a reason may end up in a dead letter."""
    if not value.is_finite():
        return "decimal must be a finite number, not NaN or an infinity"
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if exponent < -scale:
        return (f"decimal has more than {scale} digits after the point; round it to the "
                f"schema's decimal({precision}, {scale})")
    if not value.is_zero() and value.adjusted() >= precision - scale:
        return (f"decimal has more than {precision - scale} digits before the point; the "
                f"schema's type is decimal({precision}, {scale})")
    return None


def decimal_bytes(v: decimal.Decimal, precision: int, scale: int) -> bytes:
    """fastavro's ``prepare_bytes_decimal``, step for step, so the bytes are its bytes,
    for a value that fits the type. Any other is declined, also one fastavro would
    write (more digits than ``precision`` once scaled): the checked encoder then
    leaves its record to validation, which names the field."""
    if decimal_problem(v, precision, scale) is not None:
        raise Fallback("decimal outside precision/scale")
    sign, digits, exp = v.as_tuple()
    assert isinstance(exp, int)  # finite
    unscaled = 0
    for digit in digits:
        unscaled = unscaled * 10 + digit
    unscaled = int(10 ** (exp + scale)) * unscaled
    size = (unscaled.bit_length() + 8) // 8
    if sign:
        unscaled = -unscaled
    return unscaled.to_bytes(size, byteorder="big", signed=True)
