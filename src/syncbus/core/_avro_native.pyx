# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Native Avro encoders and decoders, one node tree per schema.

fastavro interprets the schema on every call, and Python code specialised per
schema still pays the interpreter for every field (about 0.5 us each): a quarter
of the publisher's CPU per event and half of the router's. Here a schema becomes
a tree of typed nodes whose ``enc``/``dec`` are C calls writing into a C buffer.
It is an accelerator, never a second definition of Avro: only values whose
encoding is unambiguous are taken (exact ``str``, ``int`` in range, aware
``datetime``, ``date``, ``Decimal``, dict records, one non-null branch per
union), anything else raises ``Fallback`` and the codec asks fastavro, whose
bytes and errors are the reference. Decoders raise on any surprise in the bytes
for the same reason. Its Python-level rules live in ``avro_support``; tests
compare every schema with fastavro byte for byte.

API:
    compile_encoder(schema, prefix=b"", checks=None) -> Callable[[record], bytes] | None
    compile_decoder(schema) -> Callable[[bytes, int], tuple[record, int]] | None
"""

from collections.abc import Mapping

from syncbus.core._buf cimport Buf, _put, _put_long, _reserve
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport (
    PyDate_CheckExact,
    PyDateTime_CheckExact,
    PyDateTime_GET_DAY,
    PyDateTime_GET_MONTH,
    PyDateTime_GET_YEAR,
    date_new,
    datetime_tzinfo,
    import_datetime,
    timedelta_days,
    timedelta_microseconds,
    timedelta_seconds,
)
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.long cimport PyLong_FromLongLong
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

import datetime as _dt
import decimal as _decimal
import uuid as _uuid
from sys import intern as _intern

from syncbus.core.avro_support import (
    EPOCH as _EPOCH,
    PRIMITIVES as _PRIMITIVES,
    Fallback,
    TypeNames,
    Unsupported,
    decimal_bytes as _decimal_bytes,
    logical_of as _logical,
)

import_datetime()

cdef extern from "Python.h":
    int PyFloat_Pack4(double x, char *p, int le) except -1
    int PyFloat_Pack8(double x, char *p, int le) except -1
    double PyFloat_Unpack4(const char *p, int le) except? -1.0
    double PyFloat_Unpack8(const char *p, int le) except? -1.0
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL
    long long PyLong_AsLongLongAndOverflow(object v, int *overflow) except? -1
    bint PyLong_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyBytes_CheckExact(object o)
    bint PyFloat_CheckExact(object o)
    bint PyDict_CheckExact(object o)
    double PyFloat_AS_DOUBLE(object o)
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    int PyObject_GenericSetAttr(object o, object name, object value) except -1

cdef object _MISSING = object()
cdef object _TIMEDELTA = _dt.timedelta
cdef object _DECIMAL = _decimal.Decimal
cdef object _UUID = _uuid.UUID
cdef object _SAFE_UNKNOWN = _uuid.SafeUUID.unknown
cdef object _OBJECT_NEW = object.__new__
cdef int64_t _FIRST_DAY = -719162  # 0001-01-01, datetime.date's first day, from 1970
cdef int64_t _LAST_DAY = 2932896  # 9999-12-31

# ------------------------------------------------------------------ buffers

cdef inline int _put_sized(Buf* b, bytes data) except -1:
    """Avro ``bytes``: the length, then the bytes."""
    _put_long(b, PyBytes_GET_SIZE(data))
    _put(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    return 0


cdef inline long long _exact_long(object v) except? -1:
    """An exact ``int`` (not bool) within 64 bits, else Fallback."""
    cdef int overflow = 0
    cdef long long n
    if not PyLong_CheckExact(v):
        raise Fallback("not an int")
    n = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow:
        raise Fallback("int out of range")
    return n


cdef struct Reader:
    const unsigned char* data
    Py_ssize_t pos
    Py_ssize_t end


cdef inline int _get_long(Reader* r, int64_t* out) except -1:
    cdef uint64_t n = 0
    cdef int shift = 0
    cdef unsigned char c
    while True:
        if r.pos >= r.end:
            raise Fallback("truncated varint")
        c = r.data[r.pos]
        r.pos += 1
        if shift == 63 and c > 1:
            raise Fallback("varint too long")
        n |= <uint64_t>(c & 0x7F) << shift
        if not c & 0x80:
            break
        shift += 7
        if shift > 63:
            raise Fallback("varint too long")
    out[0] = <int64_t>(n >> 1) ^ -<int64_t>(n & 1)
    return 0


cdef inline const unsigned char* _get_sized(Reader* r, Py_ssize_t* size) except NULL:
    cdef int64_t n
    _get_long(r, &n)
    if n < 0 or n > r.end - r.pos:
        raise Fallback("length beyond the buffer")
    size[0] = <Py_ssize_t>n
    r.pos += n
    return r.data + r.pos - n


cdef inline bytes _get_bytes(Reader* r):
    cdef Py_ssize_t size
    cdef const unsigned char* p = _get_sized(r, &size)
    return PyBytes_FromStringAndSize(<const char*>p, size)


# ------------------------------------------------------------------ days

cdef inline int64_t _days_from_civil(int64_t y, int64_t m, int64_t d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef object _civil_from_days(int64_t z):
    if z < _FIRST_DAY or z > _LAST_DAY:
        raise Fallback("date out of range")
    z += 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t d = doy - (153 * mp + 2) // 5 + 1
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    cdef int64_t y = yoe + era * 400 + (1 if m <= 2 else 0)
    return date_new(<int>y, <int>m, <int>d)


# ------------------------------------------------------------------ nodes

cdef class Node:
    cdef int enc(self, object v, Buf* b) except -1:
        raise Unsupported(type(self).__name__)

    cdef object dec(self, Reader* r):
        raise Unsupported(type(self).__name__)


cdef class NullNode(Node):
    cdef int enc(self, object v, Buf* b) except -1:
        if v is not None:
            raise Fallback("not null")
        return 0

    cdef object dec(self, Reader* r):
        return None


cdef class BooleanNode(Node):
    cdef int enc(self, object v, Buf* b) except -1:
        if v is True:
            _put(b, b"\x01", 1)
        elif v is False:
            _put(b, b"\x00", 1)
        else:
            raise Fallback("not a bool")
        return 0

    cdef object dec(self, Reader* r):
        cdef unsigned char c
        if r.pos >= r.end:
            raise Fallback("truncated")
        c = r.data[r.pos]
        r.pos += 1
        if c > 1:
            raise Fallback("bad boolean")
        return c == 1


cdef class IntegerNode(Node):
    """``int`` (32-bit range checked) or ``long``."""
    cdef bint is_int

    def __init__(self, bint is_int):
        self.is_int = is_int

    cdef int enc(self, object v, Buf* b) except -1:
        cdef long long n = _exact_long(v)
        if self.is_int and not -2147483648 <= n <= 2147483647:
            raise Fallback("int out of range")
        _put_long(b, n)
        return 0

    cdef object dec(self, Reader* r):
        cdef int64_t n
        _get_long(r, &n)
        if self.is_int and not -2147483648 <= n <= 2147483647:
            raise Fallback("int out of range")
        return PyLong_FromLongLong(n)


cdef class FloatNode(Node):
    """``float`` (4 bytes) or ``double`` (8), little-endian, as ``struct`` packs them."""
    cdef bint double

    def __init__(self, bint double):
        self.double = double

    cdef int enc(self, object v, Buf* b) except -1:
        if not PyFloat_CheckExact(v):
            raise Fallback("not a float")
        _reserve(b, 8)
        if self.double:
            PyFloat_Pack8(PyFloat_AS_DOUBLE(v), <char*>b.data + b.len, 1)
            b.len += 8
        else:
            PyFloat_Pack4(PyFloat_AS_DOUBLE(v), <char*>b.data + b.len, 1)
            b.len += 4
        return 0

    cdef object dec(self, Reader* r):
        cdef Py_ssize_t size = 8 if self.double else 4
        if r.end - r.pos < size:
            raise Fallback("truncated")
        r.pos += size
        if self.double:
            return PyFloat_Unpack8(<const char*>r.data + r.pos - 8, 1)
        return PyFloat_Unpack4(<const char*>r.data + r.pos - 4, 1)


cdef class StringNode(Node):
    """``string``; with ``uuid`` the decoder returns ``uuid.UUID`` as fastavro does."""
    cdef bint uuid

    def __init__(self, bint uuid):
        self.uuid = uuid

    cdef int enc(self, object v, Buf* b) except -1:
        cdef Py_ssize_t size
        cdef const char* utf8
        if not PyUnicode_CheckExact(v):
            raise Fallback("not a str")
        utf8 = PyUnicode_AsUTF8AndSize(v, &size)  # raises on lone surrogates
        _put_long(b, size)
        _put(b, utf8, size)
        return 0

    cdef object dec(self, Reader* r):
        cdef Py_ssize_t size
        cdef const unsigned char* p = _get_sized(r, &size)
        if self.uuid:
            return _uuid_of(p, size)
        return PyUnicode_DecodeUTF8(<const char*>p, size, NULL)


cdef object _uuid_of(const unsigned char* p, Py_ssize_t size):
    """``uuid.UUID(text)`` for the canonical 36-character form, built without its
    parsing (2.8 us -> 0.3 us); any other text takes ``uuid.UUID`` itself."""
    cdef uint64_t halves[2]
    cdef int i, half = 0, digits = 0
    cdef unsigned char c
    cdef uint64_t nibble
    if size == 36 and p[8] == 45 and p[13] == 45 and p[18] == 45 and p[23] == 45:  # "-"
        halves[0] = halves[1] = 0
        for i in range(36):
            c = p[i]
            if i == 8 or i == 13 or i == 18 or i == 23:
                continue
            if 48 <= c <= 57:
                nibble = c - 48
            elif 97 <= c <= 102:
                nibble = c - 87
            elif 65 <= c <= 70:
                nibble = c - 55
            else:
                break
            halves[half] = (halves[half] << 4) | nibble
            digits += 1
            if digits == 16:
                half = 1
        if digits == 32:
            value = (PyLong_FromUnsignedLongLong(halves[0]) << 64) \
                | PyLong_FromUnsignedLongLong(halves[1])
            made = _OBJECT_NEW(_UUID)
            PyObject_GenericSetAttr(made, "int", value)
            PyObject_GenericSetAttr(made, "is_safe", _SAFE_UNKNOWN)
            return made
    return _UUID(PyUnicode_DecodeUTF8(<const char*>p, size, NULL))


cdef class BytesNode(Node):
    cdef int enc(self, object v, Buf* b) except -1:
        if not PyBytes_CheckExact(v):
            raise Fallback("not bytes")
        return _put_sized(b, v)

    cdef object dec(self, Reader* r):
        return _get_bytes(r)


cdef class EnumNode(Node):
    cdef dict index
    cdef tuple symbols

    def __init__(self, symbols):
        self.symbols = tuple(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}

    cdef int enc(self, object v, Buf* b) except -1:
        cdef PyObject* found = PyDict_GetItem(self.index, v) if PyUnicode_CheckExact(v) else NULL
        if found == NULL:
            raise Fallback("not a symbol")
        _put_long(b, <object>found)
        return 0

    cdef object dec(self, Reader* r):
        cdef int64_t n
        _get_long(r, &n)
        if not 0 <= n < len(self.symbols):
            raise Fallback("bad enum index")
        return self.symbols[n]


cdef class DateNode(Node):
    cdef int enc(self, object v, Buf* b) except -1:
        if not PyDate_CheckExact(v):
            raise Fallback("not a date")
        _put_long(b, _days_from_civil(
            PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v)))
        return 0

    cdef object dec(self, Reader* r):
        cdef int64_t n
        _get_long(r, &n)
        return _civil_from_days(n)


cdef class TimestampMicrosNode(Node):
    """Aware ``datetime`` or int micros in; aware UTC ``datetime`` out. The last value
    decoded is kept: the events of a batch share their timestamps."""
    cdef int64_t last_micros
    cdef object last_value

    def __init__(self):
        self.last_micros = 0
        self.last_value = _EPOCH

    cdef int enc(self, object v, Buf* b) except -1:
        if PyDateTime_CheckExact(v) and datetime_tzinfo(v) is not None:
            delta = v - _EPOCH  # |days| < 3.7e6: the micros fit in 64 bits
            _put_long(b, (<int64_t>timedelta_days(delta) * 86400 + timedelta_seconds(delta))
                      * 1000000 + timedelta_microseconds(delta))
            return 0
        _put_long(b, _exact_long(v))
        return 0

    cdef object dec(self, Reader* r):
        cdef int64_t n
        _get_long(r, &n)
        if n != self.last_micros:
            self.last_value = _EPOCH + _TIMEDELTA(microseconds=n)
            self.last_micros = n
        return self.last_value


cdef class DecimalNode(Node):
    """Bytes decimals, through the Python helpers: rare, and their rules are fastavro's."""
    cdef int precision, scale
    cdef object context

    def __init__(self, int precision, int scale):
        self.precision, self.scale = precision, scale
        self.context = _decimal.Context(prec=precision)

    cdef int enc(self, object v, Buf* b) except -1:
        if type(v) is not _DECIMAL:
            raise Fallback("not a Decimal")
        return _put_sized(b, _decimal_bytes(v, self.precision, self.scale))

    cdef object dec(self, Reader* r):
        unscaled = int.from_bytes(_get_bytes(r), "big", signed=True)
        return self.context.create_decimal(unscaled).scaleb(-self.scale, self.context)


cdef class UnionNode(Node):
    """Encodes ``null`` plus at most one other branch; decodes any union."""
    cdef tuple branches
    cdef int null_index, value_index

    def __init__(self, branches, int null_index, int value_index):
        self.branches = tuple(branches)
        self.null_index, self.value_index = null_index, value_index

    cdef int enc(self, object v, Buf* b) except -1:
        if v is None and self.null_index >= 0:
            _put_long(b, self.null_index)
            return 0
        if self.value_index < 0:
            raise Fallback("no branch for the value")
        _put_long(b, self.value_index)
        return (<Node>self.branches[self.value_index]).enc(v, b)

    cdef object dec(self, Reader* r):
        cdef int64_t n
        _get_long(r, &n)
        if not 0 <= n < len(self.branches):
            raise Fallback("bad union branch")
        return (<Node>self.branches[n]).dec(r)


cdef class RecordNode(Node):
    """A record. With ``checks`` it is also validated while it is written: an exact
    ``dict`` without unknown keys, whose string fields pass their fast format checks;
    anything else is Fallback, so bytes from a checked record mean "valid and
    encoded" in one walk."""
    cdef tuple names, nodes, modes  # mode 0: required, 1: default null, 2: other default
    cdef tuple checks  # None: encode only; else per field None or callable(str) -> bool

    def __init__(self, names, nodes, modes, checks=None):
        # interned: a record's keys are mostly interned literals, so the lookups of
        # its fields find them by identity instead of comparing their characters
        self.names = tuple(_intern(str(name)) for name in names)
        self.nodes, self.modes = tuple(nodes), tuple(modes)
        self.checks = None if checks is None else tuple(checks)

    cdef int enc(self, object v, Buf* b) except -1:
        cdef Py_ssize_t i, present = 0
        cdef PyObject* found
        cdef bint checked = self.checks is not None
        cdef bint exact = PyDict_CheckExact(v)
        if not exact and (checked or not isinstance(v, Mapping)):
            raise Fallback("not a dict" if checked else "not a mapping")
        for i in range(len(self.names)):
            name = self.names[i]
            if exact:
                found = PyDict_GetItem(v, name)
                value = <object>found if found != NULL else _MISSING
            else:
                value = v.get(name, _MISSING)
            if value is _MISSING:
                if self.modes[i] != 1:
                    raise Fallback("missing field")
                value = None
            else:
                present += 1
            (<Node>self.nodes[i]).enc(value, b)
            if checked:
                check = self.checks[i]
                if check is not None and value is not None and not check(value):
                    raise Fallback("format check failed")
        if checked and present != len(v):
            raise Fallback("unknown field")
        return 0

    cdef object dec(self, Reader* r):
        cdef Py_ssize_t i
        cdef dict out = {}
        for i in range(len(self.names)):
            PyDict_SetItem(out, self.names[i], (<Node>self.nodes[i]).dec(r))
        return out


# ------------------------------------------------------------------ entry points

cdef class Encoder:
    """``prefix`` + the Avro body of a record, in one buffer."""
    cdef Node root
    cdef bytes prefix

    def __init__(self, Node root, bytes prefix):
        self.root, self.prefix = root, prefix

    def __call__(self, record):
        cdef Buf b
        b.cap = 512
        b.len = 0
        b.data = <unsigned char*>malloc(b.cap)
        if b.data == NULL:
            raise MemoryError()
        try:
            _put(&b, PyBytes_AS_STRING(self.prefix), PyBytes_GET_SIZE(self.prefix))
            self.root.enc(record, &b)
            return PyBytes_FromStringAndSize(<const char*>b.data, b.len)
        finally:
            free(b.data)


cdef class Decoder:
    """(record, end offset) of the body starting at ``pos``."""
    cdef Node root

    def __init__(self, Node root):
        self.root = root

    def __call__(self, data, Py_ssize_t pos):
        cdef Reader r
        if not PyBytes_CheckExact(data):
            data = bytes(data)
        r.data = <const unsigned char*>PyBytes_AS_STRING(data)
        r.end = PyBytes_GET_SIZE(data)
        if pos < 0 or pos > r.end:
            raise Fallback("offset outside the data")
        r.pos = pos
        record = self.root.dec(&r)
        return record, r.pos


def _node(schema, src, ns, stack, bint encoding, checks=None):
    """The node tree of ``schema``; ``src`` holds the named types seen so far. With
    ``checks`` (field -> format check or None) records are checked (``RecordNode``)."""
    if isinstance(schema, list):
        return _union(schema, src, ns, stack, encoding, checks)
    if isinstance(schema, str) and schema not in _PRIMITIVES:
        named, named_ns = src.resolve(schema, ns, stack)
        return _node(named, src, named_ns, stack, encoding, checks)
    kind, logical = _logical(schema)
    if isinstance(schema, Mapping) and kind in ("record", "enum", "fixed", "error"):
        full, inner = src.define(schema, ns)
        if kind == "enum":
            return EnumNode(schema["symbols"])
        if kind != "record":
            raise Unsupported(kind)
        inner_stack = (*stack, full)
        names, nodes, modes = [], [], []
        for field in schema["fields"]:
            names.append(str(field["name"]))
            nodes.append(_node(field["type"], src, inner, inner_stack, encoding, checks))
            modes.append(0 if "default" not in field else 1 if field["default"] is None else 2)
        if checks is not None:
            return RecordNode(names, nodes, modes, [checks(f) for f in schema["fields"]])
        return RecordNode(names, nodes, modes)
    if kind in ("array", "map"):
        raise Unsupported(kind)
    if isinstance(schema, Mapping) and kind not in _PRIMITIVES:
        return _node(kind, src, ns, stack, encoding, checks)
    return _primitive(kind, logical, schema)


def _primitive(kind, logical, schema):
    if logical == "date" and kind == "int":
        return DateNode()
    if logical == "timestamp-micros" and kind == "long":
        return TimestampMicrosNode()
    if logical == "decimal" and kind == "bytes":
        return DecimalNode(int(schema["precision"]), int(schema.get("scale", 0)))
    if logical == "uuid" and kind == "string":
        return StringNode(True)
    if logical is not None:
        raise Unsupported(f"logical type {logical} on {kind}")
    if kind in ("int", "long"):
        return IntegerNode(kind == "int")
    if kind in ("float", "double"):
        return FloatNode(kind == "double")
    if kind == "string":
        return StringNode(False)
    if kind == "bytes":
        return BytesNode()
    if kind == "boolean":
        return BooleanNode()
    if kind == "null":
        return NullNode()
    raise Unsupported(kind)


def _union(branches, src, ns, stack, bint encoding, checks=None):
    nulls = [i for i, b in enumerate(branches) if b == "null"]
    others = [i for i, b in enumerate(branches) if b != "null"]
    if encoding and (len(others) > 1 or len(nulls) > 1):
        raise Unsupported("union with more than one non-null branch")
    if len(branches) > 64:
        raise Unsupported("union too wide")
    nodes = [_node(b, src, ns, stack, encoding, checks) for b in branches]
    return UnionNode(nodes, nulls[0] if nulls else -1, others[0] if others else -1)


def compile_encoder(schema, bytes prefix=b"", checks=None):
    """An encoder of ``prefix`` + the Avro body of ``schema``'s records, or None.

    With ``checks`` (a field's schema -> its format check, or None) the encoder is
    checked: every record in the value must be an exact ``dict`` with no unknown
    keys whose checked fields pass, or it raises Fallback (see ``RecordNode``).
    """
    try:
        return Encoder(_node(schema, TypeNames(), "", (), True, checks), prefix)
    except (Unsupported, KeyError, TypeError, ValueError):
        return None


def compile_decoder(schema):
    """A decoder of ``schema``'s Avro bodies from an offset, or None."""
    try:
        return Decoder(_node(schema, TypeNames(), "", (), False))
    except (Unsupported, KeyError, TypeError, ValueError):
        return None
