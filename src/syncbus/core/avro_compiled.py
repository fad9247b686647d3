"""Avro binary encoders and decoders generated as Python source, one per schema.

fastavro interprets the schema on every call, which costs more than the bytes of
our small change events; a function specialised to one schema (straight-line
field writes into a ``bytearray``, strings length-prefixed, unions as a branch
byte) is several times faster. It is an accelerator, never a second definition
of Avro: it accepts only values whose encoding is unambiguous (exact ``str``,
``int`` in range, aware ``datetime``, ``date``, ``Decimal``, dict records, one
non-null branch per union) and raises ``Fallback`` on anything else, so the
codec hands those values to fastavro and the result is always fastavro's. The
decoder likewise raises on anything unusual and the codec retries with fastavro,
which names the error. Tests check both directions byte for byte against fastavro.

Schemas with features not compiled here (arrays, maps, fixed, multi-branch unions,
recursive records, other logical types) compile to ``None``: fastavro only.

API:
    Fallback (an Exception)
    compile_encoder(schema, prefix=b"") -> Callable[[record], bytes] | None
    compile_decoder(schema) -> Callable[[bytes, int], tuple[record, int]] | None
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
from collections.abc import Callable, Mapping
from typing import Any

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes, int], tuple[dict[str, Any], int]]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DAYS_SHIFT = dt.date(1970, 1, 1).toordinal()
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_RANGES = {"int": 2**31, "long": 2**63}
_MISSING = object()


class Fallback(Exception):
    """The value is outside what the compiled code handles; use fastavro for it."""


class Unsupported(Exception):
    """A schema feature the generator does not compile."""


def _varint(n: int) -> bytes:
    """Unsigned LEB128 of an already zig-zagged ``n``; short values without a loop."""
    if n < 0x200000:
        if n < 0x80:
            return _SMALL_U[n]
        if n < 0x4000:
            return bytes((n & 0x7F | 0x80, n >> 7))
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    out = [n & 0x7F | 0x80]
    n >>= 7
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_U = tuple(bytes((i,)) for i in range(0x80))
_SMALL = tuple(_varint((i << 1) ^ (i >> 63)) for i in range(-64, 64))  # zig-zag, 1 byte
# length prefixes of strings and bytes up to 16 KiB; longer ones raise IndexError: fastavro
_LEN = tuple(_varint(i << 1) for i in range(1 << 14))
_DAY_RANGE = 80_000  # dates within ~219 years of 1970 are memoised (bounded)
_DAYS_MEMO: dict[int, bytes] = {}


def _long(v: int) -> bytes:
    if -64 <= v < 64:
        return _SMALL[v + 64]
    return _varint((v << 1) ^ (v >> 63))


def _days(d: dt.date) -> bytes:
    """A ``date`` as Avro days since 1970; a record has several and they repeat."""
    n = d.toordinal() - _DAYS_SHIFT
    found = _DAYS_MEMO.get(n)
    if found is None:
        found = _long(n)
        if -_DAY_RANGE < n < _DAY_RANGE:
            _DAYS_MEMO[n] = found
    return found


def _read_long(b: bytes, p: int) -> tuple[int, int]:
    c = b[p]
    p += 1
    n = c & 0x7F
    shift = 7
    while c & 0x80:
        c = b[p]
        p += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise Fallback("varint too long")
    return (n >> 1) ^ -(n & 1), p


def _decimal_bytes(v: decimal.Decimal, precision: int, scale: int) -> bytes:
    """fastavro's ``prepare_bytes_decimal``, step for step, so the bytes are its bytes."""
    sign, digits, exp = v.as_tuple()
    if not isinstance(exp, int) or len(digits) > precision or exp + scale < 0:
        raise Fallback("decimal outside precision/scale")
    unscaled = 0
    for digit in digits:
        unscaled = unscaled * 10 + digit
    unscaled = int(10 ** (exp + scale)) * unscaled
    size = (unscaled.bit_length() + 8) // 8
    if sign:
        unscaled = -unscaled
    return unscaled.to_bytes(size, byteorder="big", signed=True)


_GLOBALS: dict[str, Any] = {
    "_Fb": Fallback, "_long": _long, "_LEN": _LEN, "_varint": _varint, "_rl": _read_long,
    "_MISSING": _MISSING, "_date": dt.date, "_datetime": dt.datetime, "_EPOCH": _EPOCH,
    "_td": dt.timedelta, "_Decimal": decimal.Decimal, "_dec": _decimal_bytes,
    "_UUID": uuid.UUID, "_pd": struct.Struct("<d").pack, "_pf": struct.Struct("<f").pack,
    "_ud": struct.Struct("<d").unpack_from, "_uf": struct.Struct("<f").unpack_from,
    "_DAYS": _DAYS_SHIFT, "_days": _days,
}


class _Source:
    """Lines of generated code, constants it refers to, and the named types seen."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.named: dict[str, tuple[Mapping[str, Any], str]] = {}
        self._n = 0

    def var(self, prefix: str = "v") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: Any) -> str:
        name = self.var("_k")
        self.consts[name] = value
        return name

    def add(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def build(self, name: str) -> Any:
        namespace = {**_GLOBALS, **self.consts}
        exec("\n".join(self.lines), namespace)
        return namespace[name]

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


def _logical(schema: Any) -> tuple[str, str | None]:
    if isinstance(schema, Mapping):
        return str(schema["type"]), schema.get("logicalType")
    return str(schema), None


def _zigzag_check(src: _Source, ind: int, v: str, bound: int) -> None:
    src.add(ind, f"if type({v}) is not int or not {-bound} <= {v} < {bound}: raise _Fb")


class _EncoderGen:
    def __init__(self, src: _Source) -> None:
        self.src = src

    def write(self, schema: Any, v: str, ind: int, ns: str, stack: tuple[str, ...]) -> None:
        src = self.src
        if isinstance(schema, list):
            return self.union(schema, v, ind, ns, stack)
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            named, named_ns = src.resolve(schema, ns, stack)
            return self.write(named, v, ind, named_ns, stack)
        kind, logical = _logical(schema)
        if isinstance(schema, Mapping) and kind in ("record", "enum", "fixed", "error"):
            full, inner = src.define(schema, ns)
            if kind == "enum":
                table = src.const({s: _long(i) for i, s in enumerate(schema["symbols"])})
                return src.add(ind, f"o += {table}[{v}]")
            if kind != "record":
                raise Unsupported(kind)
            return self.record(schema, v, ind, inner, (*stack, full))
        if kind in ("array", "map"):
            raise Unsupported(kind)
        if isinstance(schema, Mapping) and kind not in _PRIMITIVES:
            return self.write(kind, v, ind, ns, stack)
        self.primitive(kind, logical, schema, v, ind)
        return None

    def primitive(self, kind: str, logical: str | None, schema: Any, v: str, ind: int) -> None:
        add = self.src.add
        if logical == "date" and kind == "int":
            add(ind, f"if type({v}) is not _date: raise _Fb")
            add(ind, f"o += _days({v})")
        elif logical == "timestamp-micros" and kind == "long":
            add(ind, f"if type({v}) is _datetime and {v}.tzinfo is not None:")
            add(ind + 1, f"{v} = {v} - _EPOCH")
            add(ind + 1, f"{v} = ({v}.days * 86400 + {v}.seconds) * 1000000 + {v}.microseconds")
            # the last value per field, as one tuple (atomic): a batch shares its timestamps
            memo = self.src.const([(None, b"")])
            m = self.src.var("m")
            add(ind, f"{m} = {memo}[0]")
            add(ind, f"if {v} == {m}[0] and type({v}) is int: o += {m}[1]")
            add(ind, "else:")
            _zigzag_check(self.src, ind + 1, v, _RANGES["long"])
            add(ind + 1, f"{m} = ({v}, _long({v}))")
            add(ind + 1, f"{memo}[0] = {m}")
            add(ind + 1, f"o += {m}[1]")
        elif logical == "decimal" and kind == "bytes":
            precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
            add(ind, f"if type({v}) is not _Decimal: raise _Fb")
            add(ind, f"{v} = _dec({v}, {precision}, {scale})")
            self.sized(v, ind)
        elif logical not in (None, "uuid") or (logical == "uuid" and kind != "string"):
            raise Unsupported(f"logical type {logical} on {kind}")
        elif kind in _RANGES:
            _zigzag_check(self.src, ind, v, _RANGES[kind])
            add(ind, f"o += _long({v})")
        elif kind == "string":
            add(ind, f"if type({v}) is not str: raise _Fb")
            add(ind, f"{v} = {v}.encode()")
            self.sized(v, ind)
        elif kind == "bytes":
            add(ind, f"if type({v}) is not bytes: raise _Fb")
            self.sized(v, ind)
        elif kind in ("double", "float"):
            add(ind, f"if type({v}) is not float: raise _Fb")
            add(ind, f"o += {'_pd' if kind == 'double' else '_pf'}({v})")
        elif kind == "boolean":
            add(ind, f"if {v} is True: o += b'\\x01'")
            add(ind, f"elif {v} is False: o += b'\\x00'")
            add(ind, "else: raise _Fb")
        elif kind == "null":
            add(ind, f"if {v} is not None: raise _Fb")
        else:
            raise Unsupported(kind)

    def sized(self, v: str, ind: int) -> None:
        self.src.add(ind, f"o += _LEN[len({v})]")
        self.src.add(ind, f"o += {v}")

    def union(self, branches: list[Any], v: str, ind: int, ns: str,
              stack: tuple[str, ...]) -> None:
        others = [i for i, b in enumerate(branches) if b != "null"]
        if len(others) > 1 or len(branches) > len(others) + 1:
            raise Unsupported("union with more than one non-null branch")
        add = self.src.add
        if len(others) < len(branches):
            add(ind, f"if {v} is None: o += {_long(branches.index('null'))!r}")
            if not others:
                add(ind, "else: raise _Fb")
                return
            add(ind, "else:")
            ind += 1
        index = others[0]
        add(ind, f"o += {_long(index)!r}")
        self.write(branches[index], v, ind, ns, stack)

    def record(self, schema: Mapping[str, Any], r: str, ind: int, ns: str,
               stack: tuple[str, ...]) -> None:
        add = self.src.add
        for field in schema["fields"]:
            name = field["name"]
            v = self.src.var()
            if "default" not in field:
                add(ind, f"{v} = {r}[{name!r}]")
            elif field["default"] is None:
                add(ind, f"{v} = {r}.get({name!r})")
            else:
                add(ind, f"{v} = {r}.get({name!r}, _MISSING)")
                add(ind, f"if {v} is _MISSING: raise _Fb")
            self.write(field["type"], v, ind, ns, stack)


def compile_encoder(schema: Mapping[str, Any], prefix: bytes = b"") -> Encoder | None:
    """An encoder of ``prefix`` + the Avro body of ``schema``'s records, or None if not
    compilable (the prefix is the single-object header: one buffer, no concatenation)."""
    src = _Source()
    src.add(0, "def encode(r):")
    src.add(1, f"o = bytearray({src.const(prefix)})")
    try:
        _EncoderGen(src).write(schema, "r", 1, "", ())
    except (Unsupported, KeyError, TypeError, ValueError):
        return None
    src.add(1, "return bytes(o)")
    encoder: Encoder = src.build("encode")
    return encoder
