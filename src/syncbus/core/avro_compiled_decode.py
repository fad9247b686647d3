"""Compiled Avro binary decoders: the router decodes every event, fastavro is the slow part.

One generated function per writer schema reads the body with no schema
interpretation and returns what fastavro returns (dicts in field order, ``date``,
aware UTC ``datetime`` for ``timestamp-micros``, ``uuid.UUID``, ``Decimal`` with
the writer's precision, enum symbols as str). It reads only the writer's own
schema; resolving a writer against a different reader stays with fastavro. Any
surprise in the bytes (truncation, bad branch index, bad UTF-8, overlong varint)
raises, and the codec then lets fastavro decode the same bytes and name the
error, so the outcome is always fastavro's.

API:
    compile_decoder(schema) -> Callable[[bytes, int], tuple[record, end]] | None
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any

from syncbus.core.avro_compiled import (
    _DAY_RANGE,
    _DAYS_SHIFT,
    _EPOCH,
    _PRIMITIVES,
    Decoder,
    Unsupported,
    _logical,
    _Source,
)

_DAY_VALUES: dict[int, Any] = {}


def _day(n: int) -> Any:
    """``date`` of Avro days since 1970 (memoised in a bounded range: dates repeat)."""
    found = _DAY_VALUES.get(n)
    if found is None:
        found = dt.date.fromordinal(n + _DAYS_SHIFT)
        if -_DAY_RANGE < n < _DAY_RANGE:
            _DAY_VALUES[n] = found
    return found


class _DecoderGen:
    def __init__(self, src: _Source) -> None:
        self.src = src

    def read(self, schema: Any, v: str, ind: int, ns: str, stack: tuple[str, ...]) -> None:
        src = self.src
        if isinstance(schema, list):
            return self.union(schema, v, ind, ns, stack)
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            named, named_ns = src.resolve(schema, ns, stack)
            return self.read(named, v, ind, named_ns, stack)
        kind, logical = _logical(schema)
        if isinstance(schema, Mapping) and kind in ("record", "enum", "fixed", "error"):
            full, inner = src.define(schema, ns)
            if kind == "enum":
                table = src.const(dict(enumerate(schema["symbols"])))
                self.long(v, ind)
                return src.add(ind, f"{v} = {table}[{v}]")
            if kind != "record":
                raise Unsupported(kind)
            return self.record(schema, v, ind, inner, (*stack, full))
        if kind in ("array", "map"):
            raise Unsupported(kind)
        if isinstance(schema, Mapping) and kind not in _PRIMITIVES:
            return self.read(kind, v, ind, ns, stack)
        self.primitive(kind, logical, schema, v, ind)
        return None

    def long(self, v: str, ind: int) -> None:
        """A zig-zag varint into ``v``; one-byte values without a call."""
        add = self.src.add
        add(ind, f"{v} = b[p]")
        add(ind, f"if {v} < 0x80: {v} = ({v} >> 1) ^ -({v} & 1); p += 1")
        add(ind, f"else: {v}, p = _rl(b, p)")

    def sized(self, v: str, ind: int) -> None:
        add = self.src.add
        self.long(v, ind)
        add(ind, f"if {v} < 0 or p + {v} > n: raise _Fb")
        add(ind, f"{v} = b[p:p + {v}]; p += len({v})")

    def primitive(self, kind: str, logical: str | None, schema: Any, v: str, ind: int) -> None:
        add = self.src.add
        if logical == "date" and kind == "int":
            self.long(v, ind)
            add(ind, f"{v} = _day({v})")
        elif logical == "timestamp-micros" and kind == "long":
            # the last (bytes, value) per field, as one tuple: a batch shares its timestamps
            memo = self.src.const([(b"\x00", _EPOCH)])  # a true pair: 0 is the epoch
            m = self.src.var("m")
            add(ind, f"{m} = {memo}[0]")
            add(ind, f"if b[p:p + len({m}[0])] == {m}[0]: {v} = {m}[1]; p += len({m}[0])")
            add(ind, "else:")
            add(ind + 1, "q = p")
            self.long(v, ind + 1)
            add(ind + 1, f"{v} = _EPOCH + _td(microseconds={v})")
            add(ind + 1, f"{memo}[0] = (b[q:p], {v})")
        elif logical == "decimal" and kind == "bytes":
            ctx = self.src.const(decimal.Context(prec=int(schema["precision"])))
            scale = int(schema.get("scale", 0))
            self.sized(v, ind)
            add(ind, f"{v} = {ctx}.create_decimal(int.from_bytes({v}, 'big', signed=True))"
                     f".scaleb({-scale}, {ctx})")
        elif logical == "uuid" and kind == "string":
            self.sized(v, ind)
            add(ind, f"{v} = _UUID({v}.decode())")
        elif logical is not None:
            raise Unsupported(f"logical type {logical} on {kind}")
        elif kind in ("int", "long"):
            self.long(v, ind)
            if kind == "int":
                add(ind, f"if not -2147483648 <= {v} < 2147483648: raise _Fb")
        elif kind == "string":
            self.sized(v, ind)
            add(ind, f"{v} = {v}.decode()")
        elif kind == "bytes":
            self.sized(v, ind)
        elif kind in ("double", "float"):
            size, unpack = (8, "_ud") if kind == "double" else (4, "_uf")
            add(ind, f"{v}, = {unpack}(b, p); p += {size}")
        elif kind == "boolean":
            add(ind, f"{v} = b[p]; p += 1")
            add(ind, f"if {v} > 1: raise _Fb")
            add(ind, f"{v} = {v} == 1")
        elif kind == "null":
            add(ind, f"{v} = None")
        else:
            raise Unsupported(kind)

    def union(self, branches: list[Any], v: str, ind: int, ns: str,
              stack: tuple[str, ...]) -> None:
        add = self.src.add
        add(ind, f"{v} = b[p]; p += 1")
        first = True
        for index, branch in enumerate(branches):
            if index > 63:
                raise Unsupported("union too wide")
            add(ind, f"{'if' if first else 'elif'} {v} == {index << 1}:")
            first = False
            if branch == "null":
                add(ind + 1, f"{v} = None")
            else:
                self.read(branch, v, ind + 1, ns, stack)
        add(ind, "else: raise _Fb")

    def record(self, schema: Mapping[str, Any], r: str, ind: int, ns: str,
               stack: tuple[str, ...]) -> None:
        items = []
        for field in schema["fields"]:
            v = self.src.var()
            self.read(field["type"], v, ind, ns, stack)
            items.append(f"{field['name']!r}: {v}")
        self.src.add(ind, f"{r} = {{{', '.join(items)}}}")


def compile_decoder(schema: Mapping[str, Any]) -> Decoder | None:
    """A decoder of ``schema``'s Avro bodies from an offset, or None if not compilable."""
    src = _Source()
    src.consts["_day"] = _day
    src.add(0, "def decode(b, p):")
    src.add(1, "n = len(b)")
    try:
        _DecoderGen(src).read(schema, "r", 1, "", ())
    except (Unsupported, KeyError, TypeError, ValueError):
        return None
    src.add(1, "return r, p")
    decoder: Decoder = src.build("decode")
    return decoder
