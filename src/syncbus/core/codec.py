"""Avro single-object encoding: ``C3 01``, the writer's 8-byte fingerprint, the body.

The fingerprint is the CRC-64-AVRO of the schema's Parsing Canonical Form, in
the little-endian byte order the Avro specification gives for single-object
encoding, so any Avro implementation can find the writer schema without a
registry server. A ``Codec`` holds the schemas it has seen by fingerprint; the
router decodes every event once, so each registered schema gets a native encoder
and decoder (``_avro_native``, C built from Cython at install), byte-identical to
fastavro. fastavro handles whatever those do not take, every schema where the
install could not compile them (no C compiler: correct, several times slower),
and resolving a writer against a different reader (cached per pair) with its
``schemaless_reader``.

Decoded types (fastavro's): ``date`` -> ``datetime.date``, ``timestamp-micros``
-> aware UTC ``datetime``, ``decimal`` -> ``decimal.Decimal``, ``uuid`` -> str
(written as string), enums -> str. Encoding accepts the same types, and int
micros for timestamps.

API:
    MAGIC = b"\\xc3\\x01"; fingerprint(schema) -> bytes (8)
    Codec(): register(schema) -> fp; writer_schema(fp) -> dict | None; known(fp) -> bool
             encode(fp, record) -> bytes; encode_many(fp, records) -> list[bytes]
             checked_encoder(fp, checks) -> validating native encoder | None
             decode(data, reader_fp=None) -> (record, writer_fp)
    peek_fingerprint(data) -> bytes
    native_codec: the native module, or None where it was not built
    DecodeError > NotSingleObjectEncoded, UnknownFingerprint(fp_hex), IncompatibleWriter,
                  CorruptBody; EncodeError (record does not fit the schema)
"""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from syncbus.core.avro_support import Decoder, Encoder
from syncbus.core.compat import incompatibilities

native_codec: ModuleType | None
try:  # C compiled from Cython at install time (setup.py)
    from syncbus.core import _avro_native as native_codec
except ImportError:  # no C compiler where this was installed: fastavro does it all
    native_codec = None

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8

Record = dict[str, Any]


class DecodeError(ValueError):
    """Bytes that cannot be turned into a record; the DLQ names this class."""


class NotSingleObjectEncoded(DecodeError):
    """The bytes do not start with ``C3 01`` and a fingerprint."""


class UnknownFingerprint(DecodeError):
    """No schema with this fingerprint is registered."""

    def __init__(self, fp: bytes) -> None:
        self.fingerprint = fp
        self.fp_hex = fp.hex()
        super().__init__(f"unknown writer schema fingerprint {self.fp_hex}")


class IncompatibleWriter(DecodeError):
    """The writer schema cannot be resolved against the reader schema."""


class CorruptBody(DecodeError):
    """The body does not decode with its writer schema (truncated, garbage)."""


_OBJECT_REPR = re.compile(r"\s*(?:from|at|in)?\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def _reason_of(exc: Exception) -> str:
    """A decoder error as a reason that depends only on the event: fastavro names the
    stream it read (``<_io.BytesIO object at 0x...>``), a new address every time,
    which would split one cause into many on a dashboard grouping by reason."""
    text = _OBJECT_REPR.sub("", str(exc)).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class EncodeError(ValueError):
    """The record does not fit the writer schema."""


def fingerprint(schema: Mapping[str, Any] | str) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, 8 bytes little-endian."""
    canonical = to_parsing_canonical_form(
        schema if isinstance(schema, str) else copy.deepcopy(dict(schema))
    )
    return bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))


def peek_fingerprint(data: bytes) -> bytes:
    """The writer fingerprint of an encoded message, without decoding it."""
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise NotSingleObjectEncoded("not Avro single-object encoded (no C3 01 header)")
    return bytes(data[2:HEADER_LEN])


class Codec:
    """Encoder and decoder for every schema registered with it; not thread-safe to register."""

    def __init__(self, schemas: Iterable[Mapping[str, Any]] = ()) -> None:
        self._raw: dict[bytes, dict[str, Any]] = {}
        self._parsed: dict[bytes, Any] = {}  # by fastavro, with its "already parsed" hint
        self._encoders: dict[bytes, Encoder | None] = {}
        self._decoders: dict[bytes, Decoder | None] = {}
        self._pairs: dict[tuple[bytes, bytes], tuple[Any, Any]] = {}
        # how often native code declined a value and fastavro took over: bad input
        # does this, so a steady rise on good traffic means a compiler gap to close
        self.fallbacks = 0
        for schema in schemas:
            self.register(schema)

    def register(self, schema: Mapping[str, Any]) -> bytes:
        """Parse and keep a schema; returns its fingerprint (idempotent)."""
        fp = fingerprint(schema)
        if fp not in self._parsed:
            raw = json.loads(json.dumps(schema))
            # One parse, kept with fastavro's "already parsed" hint: reading with it
            # too, since a schema parsed without the hint is parsed again on every
            # ``schemaless_reader`` call (a v1 event read as v2 cost 2.4x as much).
            self._parsed[fp] = parse_schema(copy.deepcopy(raw))
            if native_codec is not None:
                self._encoders[fp] = native_codec.compile_encoder(raw, MAGIC + fp)
                self._decoders[fp] = native_codec.compile_decoder(raw)
            self._raw[fp] = raw
        return fp

    def checked_encoder(
        self, fp: bytes, checks: Callable[[Mapping[str, Any]], Callable[[str], bool] | None]
    ) -> Callable[[Any], bytes] | None:
        """A native encoder of a registered schema that also validates (exact dicts, no
        unknown keys, ``checks`` on string fields) and raises instead of falling back;
        None without the native codec or for a schema it does not compile."""
        raw = self._raw.get(fp)
        if raw is None:
            raise UnknownFingerprint(fp)
        if native_codec is None:
            return None
        encoder: Callable[[Any], bytes] | None = native_codec.compile_encoder(
            raw, MAGIC + fp, checks)
        return encoder

    def known(self, fp: bytes) -> bool:
        return fp in self._parsed

    def writer_schema(self, fp: bytes) -> dict[str, Any] | None:
        """The registered schema with this fingerprint (for syncbus.schemas), or None."""
        return self._raw.get(fp)

    def fingerprints(self) -> list[bytes]:
        return list(self._raw)

    def _schema(self, fp: bytes) -> Any:
        try:
            return self._parsed[fp]
        except KeyError:
            raise UnknownFingerprint(fp) from None

    def encode(self, fp: bytes, record: Mapping[str, Any]) -> bytes:
        """``C3 01`` + fingerprint + Avro binary body of ``record``.

        The schema's native encoder writes the common case; any value it does not
        take (see ``_avro_native``) goes to fastavro, whose bytes and errors are the
        reference."""
        compiled = self._encoders.get(fp)
        if compiled is not None:
            try:
                return compiled(record)
            except Exception:  # fastavro below gives the reference bytes or error
                self.fallbacks += 1
        writer = self._parsed.get(fp)
        if writer is None:
            raise UnknownFingerprint(fp)
        out = io.BytesIO()
        out.write(MAGIC + fp)
        try:
            schemaless_writer(out, writer, record)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise EncodeError(f"record does not fit schema {fp.hex()}: {exc}") from exc
        return out.getvalue()

    def encode_many(self, fp: bytes, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        return [self.encode(fp, record) for record in records]

    def _pair(self, writer_fp: bytes, reader_fp: bytes) -> tuple[Any, Any]:
        """Parsed (writer, reader), checked compatible once per pair with avro's checker."""
        pair = self._pairs.get((writer_fp, reader_fp))
        if pair is None:
            writer, reader = self._schema(writer_fp), self._schema(reader_fp)
            found = incompatibilities(self._raw[reader_fp], self._raw[writer_fp])
            if found:
                detail = "; ".join(f"{path or '/'}: {message}" for path, message in found)
                raise IncompatibleWriter(
                    f"writer {writer_fp.hex()} cannot be read as {reader_fp.hex()}: {detail}"
                )
            pair = self._pairs[(writer_fp, reader_fp)] = (writer, reader)
        return pair

    def decode(self, data: bytes, reader_fp: bytes | None = None) -> tuple[Record, bytes]:
        """The record and its writer fingerprint, resolved to ``reader_fp`` when given."""
        writer_fp = peek_fingerprint(data)
        if reader_fp is None or reader_fp == writer_fp:
            compiled = self._decoders.get(writer_fp)
            if compiled is not None:
                try:
                    fast, end = compiled(data, HEADER_LEN)
                except Exception:  # fastavro below gives the reference record or error
                    self.fallbacks += 1
                else:
                    if end == len(data):
                        return fast, writer_fp
        writer = self._schema(writer_fp)
        reader = None
        if reader_fp is not None and reader_fp != writer_fp:
            writer, reader = self._pair(writer_fp, reader_fp)
        stream = io.BytesIO(data)
        stream.seek(HEADER_LEN)
        try:
            record = schemaless_reader(stream, writer, reader, return_record_name=False)
        except Exception as exc:  # fastavro raises many types on bad bodies
            if reader is not None and type(exc).__name__ == "SchemaResolutionError":
                raise IncompatibleWriter(
                    f"writer {writer_fp.hex()} cannot be read as {reader_fp!r}: {exc}"
                ) from exc
            raise CorruptBody(
                f"body does not decode with writer {writer_fp.hex()}: {_reason_of(exc)}"
            ) from exc
        if stream.tell() != len(data):
            raise CorruptBody(f"{len(data) - stream.tell()} trailing bytes after the record")
        if not isinstance(record, dict):
            raise CorruptBody("decoded value is not a record")
        return record, writer_fp
