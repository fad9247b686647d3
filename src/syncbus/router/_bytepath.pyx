# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The routing engine's byte path: a valid event routed from its Avro bytes, in C.

The Python engine decodes every event into dicts, validates the dicts, masks them
into new dicts and encodes those again: about 75 us per event, most of it making
Python objects that live for one event. Here one walk over the bytes finds where
each field is and vouches for it (UTF-8, ranges, canonical varints, citizen ID,
USCC and region checks); a masked view is then written by copying the bytes of
the fields that pass, writing the masks of the others and the keyed tokens
(libcrypto's HMAC-SHA256), and every delivery is one bytes object made once.

It is an accelerator with one rule: it answers only for events it can vouch for,
and produces exactly what ``RoutingEngine``'s Python path would (the unit tests
compare both engines' output byte for byte on random events, and each C mask
with its Python one). Anything else (a bad or unusual event, a heartbeat, a
region move, an older writer schema, a schema or plan with shapes it does not
know) makes ``route`` return False before it has written anything, and the
Python path, the reference, routes or dead-letters that event.

API:
    compile_byte_route(rr, table, names, birth_place_ok) -> ByteRoute | str (why not)
    ByteRoute.route(message, batch) -> bool; ByteRoute.finish(delivered_counter);
        ByteRoute.routed (events it answered for)
    mask_text(kind, text) -> str; date_year_mask(days) -> str (tests)
    hmac_token(secret, text) -> str (tests)
"""

from syncbus.core._buf cimport Buf, _put, _put_long, _reserve
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, memset

from syncbus.core.codec import HEADER_LEN as _HEADER_LEN
from syncbus.core.codec import MAGIC as _MAGIC
from syncbus.core.envelope import ENVELOPE as _ENVELOPE
from syncbus.core.envelope import OPS as _OPS
from syncbus.core.masking import DROP, MASK, PASS, TOKEN, TOKEN_LENGTH
from syncbus.core.masking import ID_MASK_HEAD, ID_MASK_MIN_LENGTH, ID_MASK_TAIL
from syncbus.core.regions import is_valid_region as _is_valid_region

cdef extern from "Python.h":
    bint PyBytes_CheckExact(object o)

cdef extern from "_hmac.h":  # libcrypto's HMAC-SHA256
    ctypedef struct sb_hmac_key:
        pass
    void sb_hmac_key_free(sb_hmac_key* k)
    int sb_hmac_key_init(sb_hmac_key* k, const unsigned char* key, size_t n)
    int sb_hmac_token(sb_hmac_key* k, const unsigned char* text, size_t n, char* out)


cdef int _keyed(sb_hmac_key* k, bytes secret) except -1:
    if sb_hmac_key_init(k, <const unsigned char*>PyBytes_AS_STRING(secret),
                        PyBytes_GET_SIZE(secret)) < 0:
        raise MemoryError("libcrypto could not make an HMAC-SHA256 context")
    return 0


cdef inline int _token(sb_hmac_key* k, const unsigned char* text, size_t n,
                       char* out) except -1:
    if sb_hmac_token(k, text, n, out) < 0:
        raise MemoryError("libcrypto's HMAC-SHA256 failed")
    return 0


DEF MAX_FIELDS = 64
DEF HEADER = 10  # MAGIC + 8-byte fingerprint
DEF TOKEN_CHARS = 32  # hex characters of a keyed token, as sb_hmac_token writes them
if _HEADER_LEN != HEADER or TOKEN_LENGTH != TOKEN_CHARS:
    raise ImportError("the byte path's header or token length differs from the codec's")

# field types the byte path knows (others: the resource keeps the Python path)
cdef enum:
    T_STRING = 1
    T_BYTES = 2
    T_INT = 3
    T_LONG = 4
    T_DATE = 5
    T_TIMESTAMP = 6
    T_BOOLEAN = 7
    T_ENUM = 8

cdef enum:
    F_NONE = 0
    F_CITIZEN_ID = 1
    F_USCC = 2
    F_REGION = 3

cdef enum:
    A_PASS = 0
    A_DROP = 1
    A_MASK = 2
    A_TOKEN = 3

cdef enum:
    K_ID_NUMBER = 1
    K_NAME = 2
    K_PHONE = 3
    K_BIRTH_DATE = 4
    K_ADDRESS = 5

cdef unsigned char _REGION_VERDICT[1000000]  # six-digit code -> 0 unknown, 1 valid, 2 not
cdef int64_t _FIRST_DAY = -719162  # 0001-01-01, datetime.date's first day, from 1970
cdef int64_t _LAST_DAY = 2932896  # 9999-12-31
cdef int64_t _FIRST_MICROS = -62135596800000000  # datetime's range, as decoded
cdef int64_t _LAST_MICROS = 253402300799999999

cdef Py_ssize_t _ID_HEAD = ID_MASK_HEAD, _ID_TAIL = ID_MASK_TAIL, _ID_MIN = ID_MASK_MIN_LENGTH
if _ID_MIN < _ID_HEAD + _ID_TAIL:
    raise ImportError("the citizen-ID mask must hide at least one character")

_KINDS = {"id_number": K_ID_NUMBER, "name": K_NAME, "phone": K_PHONE,
          "birth_date": K_BIRTH_DATE, "address": K_ADDRESS}
_FORMATS = {None: F_NONE, "citizen_id": F_CITIZEN_ID, "uscc": F_USCC,
            "region_code": F_REGION}

# ------------------------------------------------------------------ reading

cdef struct FieldSpec:
    int type
    int nullable  # a union [null, T] (either order)
    int null_branch
    int value_branch
    int64_t symbols  # enum
    int format


cdef struct Slot:
    Py_ssize_t start, end  # the field's whole encoding, union branch included
    Py_ssize_t vstart, vend  # a string's or bytes' content
    int64_t num  # an int, long, date, timestamp or enum index
    int is_null


cdef inline int _long(const unsigned char* d, Py_ssize_t* pos, Py_ssize_t end,
                      int64_t* out) noexcept nogil:
    """Avro long; -1 when truncated, too long or not canonical (an overlong varint
    would not be written back the same, so the byte path does not vouch for it)."""
    cdef uint64_t n = 0
    cdef int shift = 0
    cdef unsigned char c = 0
    cdef Py_ssize_t p = pos[0]
    while True:
        if p >= end:
            return -1
        c = d[p]
        p += 1
        if shift == 63 and c > 1:
            return -1
        n |= <uint64_t>(c & 0x7F) << shift
        if not c & 0x80:
            break
        shift += 7
        if shift > 63:
            return -1
    if c == 0 and p - pos[0] > 1:
        return -1
    out[0] = <int64_t>(n >> 1) ^ -<int64_t>(n & 1)
    pos[0] = p
    return 0


cdef inline int _utf8(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """1 when ``s`` is strict UTF-8 as CPython decodes it (no surrogates, no overlongs)."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c, c1
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return 0
        if c < 0xE0:
            if i + 1 >= n or s[i + 1] & 0xC0 != 0x80:
                return 0
            i += 2
            continue
        if c < 0xF0:
            if i + 2 >= n:
                return 0
            c1 = s[i + 1]
            if c1 & 0xC0 != 0x80 or s[i + 2] & 0xC0 != 0x80:
                return 0
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
                return 0
            i += 3
            continue
        if i + 3 >= n:
            return 0
        c1 = s[i + 1]
        if c1 & 0xC0 != 0x80 or s[i + 2] & 0xC0 != 0x80 or s[i + 3] & 0xC0 != 0x80:
            return 0
        if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
            return 0
        i += 4
    return 1


cdef inline int _sized(const unsigned char* d, Py_ssize_t* pos, Py_ssize_t end,
                       Py_ssize_t* start) noexcept nogil:
    cdef int64_t n
    if _long(d, pos, end, &n) < 0 or n < 0 or n > end - pos[0]:
        return -1
    start[0] = pos[0]
    pos[0] += n
    return 0


cdef int _scan_value(FieldSpec* f, const unsigned char* d, Py_ssize_t* pos, Py_ssize_t end,
                     Slot* s) noexcept nogil:
    cdef int64_t n
    if f.type == T_STRING or f.type == T_BYTES:
        if _sized(d, pos, end, &s.vstart) < 0:
            return -1
        s.vend = pos[0]
        if f.type == T_STRING and not _utf8(d + s.vstart, s.vend - s.vstart):
            return -1
        return 0
    if f.type == T_BOOLEAN:
        if pos[0] >= end or d[pos[0]] > 1:
            return -1
        s.num = d[pos[0]]
        pos[0] += 1
        return 0
    if _long(d, pos, end, &n) < 0:
        return -1
    s.num = n
    if f.type == T_INT:
        return 0 if -2147483648 <= n <= 2147483647 else -1
    if f.type == T_DATE:
        return 0 if _FIRST_DAY <= n <= _LAST_DAY else -1
    if f.type == T_TIMESTAMP:
        return 0 if _FIRST_MICROS <= n <= _LAST_MICROS else -1
    if f.type == T_ENUM:
        return 0 if 0 <= n < f.symbols else -1
    return 0  # T_LONG


cdef int _scan_field(FieldSpec* f, const unsigned char* d, Py_ssize_t* pos, Py_ssize_t end,
                     Slot* s) noexcept nogil:
    cdef int64_t branch
    s.start = pos[0]
    s.is_null = 0
    if f.nullable:
        if _long(d, pos, end, &branch) < 0:
            return -1
        if branch == f.null_branch:
            s.is_null = 1
            s.end = pos[0]
            return 0
        if branch != f.value_branch:
            return -1
    if _scan_value(f, d, pos, end, s) < 0:
        return -1
    s.end = pos[0]
    return 0


# ------------------------------------------------------------------ masks


cdef inline int _put_stars(Buf* b, Py_ssize_t n) except -1:
    if b.len + n > b.cap:
        _reserve(b, n)
    memset(b.data + b.len, 42, n)  # "*"
    b.len += n
    return 0


cdef inline Py_ssize_t _chars(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Code points of valid UTF-8: the bytes that are not continuation bytes."""
    cdef Py_ssize_t i, count = 0
    for i in range(n):
        if s[i] & 0xC0 != 0x80:
            count += 1
    return count


cdef inline Py_ssize_t _head(const unsigned char* s, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Bytes of the first ``k`` code points (all of ``s`` when it has fewer)."""
    cdef Py_ssize_t i = 0
    while k > 0 and i < n:
        i += 1
        while i < n and s[i] & 0xC0 == 0x80:
            i += 1
        k -= 1
    return i


cdef inline Py_ssize_t _tail(const unsigned char* s, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Offset where the last ``k`` code points start."""
    cdef Py_ssize_t i = n
    while k > 0 and i > 0:
        i -= 1
        while i > 0 and s[i] & 0xC0 == 0x80:
            i -= 1
        k -= 1
    return i


# the UTF-8 of the address mask's markers (masking._DISTRICT, then _CITY)
cdef bytes _DISTRICTS = b"\0".join(m.encode() for m in ("自治县", "自治旗", "区", "县", "旗"))
cdef bytes _CITY = "市".encode()


cdef Py_ssize_t _address_cut(const unsigned char* s, Py_ssize_t n):
    """Bytes kept of an address: ``^.*?(?:自治县|自治旗|区|县|旗)``, else ``^.*市``,
    else none; ``.`` stops at a newline as in ``re``. UTF-8 is self-synchronising,
    so a marker found at any byte starts at a character."""
    cdef Py_ssize_t i, j, start, size, stop = n, city = 0
    cdef const unsigned char* markers = <const unsigned char*>PyBytes_AS_STRING(_DISTRICTS)
    cdef Py_ssize_t markers_len = PyBytes_GET_SIZE(_DISTRICTS)
    cdef const unsigned char* shi = <const unsigned char*>PyBytes_AS_STRING(_CITY)
    for i in range(n):
        if s[i] == 10:
            stop = i
            break
        if s[i] < 0xE5 or s[i] > 0xE8:  # no marker starts here (their lead bytes: E5-E8)
            continue
        start = 0
        while start < markers_len:
            size = 0
            while start + size < markers_len and markers[start + size] != 0:
                size += 1
            if i + size <= n and memcmp(s + i, markers + start, size) == 0:
                return i + size
            start += size + 1
    for j in range(stop - 2):
        if s[j] == shi[0] and s[j + 1] == shi[1] and s[j + 2] == shi[2]:
            city = j + 3
    return city


cdef int _mask_text(int kind, const unsigned char* s, Py_ssize_t n, Buf* out) except -1:
    """``masking.MASKS[kind]`` of a str, as UTF-8 into ``out``; ``_differs`` included."""
    cdef Py_ssize_t chars = _chars(s, n), mark = out.len, a, z
    if kind == K_ID_NUMBER:  # masking.mask_id_number, with its constants
        if chars < _ID_MIN:
            return _put_stars(out, chars if chars > 1 else 1)
        a, z = _head(s, n, _ID_HEAD), _tail(s, n, _ID_TAIL)
        _put(out, s, a)
        _put_stars(out, chars - _ID_HEAD - _ID_TAIL)
        _put(out, s + z, n - z)
    elif kind == K_NAME:
        a = _head(s, n, 1)
        _put(out, s, a)
        _put_stars(out, chars - 1 if chars > 1 else 0)
    elif kind == K_PHONE:
        if chars < 8:
            return _put_stars(out, chars if chars > 1 else 1)
        a, z = _head(s, n, 3), _tail(s, n, 4)
        _put(out, s, a)
        _put_stars(out, 4)
        _put(out, s + z, n - z)
    elif kind == K_BIRTH_DATE:
        _put(out, s, _head(s, n, 4))
    elif kind == K_ADDRESS:
        _put(out, s, _address_cut(s, n))
    else:
        raise ValueError(f"no byte-path mask for kind {kind}")
    if out.len - mark == n and memcmp(out.data + mark, s, n) == 0:  # masking._differs
        out.len = mark
        _put_stars(out, chars if chars > 1 else 1)
    return 0


cdef int _year(int64_t days) noexcept nogil:
    """The year of a day counted from 1970-01-01 (H. Hinnant's civil_from_days)."""
    cdef int64_t z = days + 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    return <int>(yoe + era * 400 + (1 if mp >= 10 else 0))


def mask_text(str kind, str text):
    """The byte path's mask of ``text`` (tests compare it with ``masking.MASKS``)."""
    cdef Buf b
    cdef bytes raw = text.encode()
    b.data, b.len, b.cap = NULL, 0, 0
    try:
        _mask_text(_KINDS[kind], <const unsigned char*>PyBytes_AS_STRING(raw),
                   PyBytes_GET_SIZE(raw), &b)
        return (<char*>b.data)[:b.len].decode() if b.len else ""
    finally:
        free(b.data)


def date_year_mask(int64_t days):
    """The byte path's birth-date mask of a date given as days since 1970-01-01."""
    return "%04d" % _year(days)


def hmac_token(bytes secret, bytes text):
    """The byte path's keyed token (tests compare it with ``masking.token``)."""
    cdef sb_hmac_key key
    cdef char out[32]
    memset(&key, 0, sizeof(key))
    try:
        _keyed(&key, secret)
        _token(&key, <const unsigned char*>PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text), out)
    finally:
        sb_hmac_key_free(&key)
    return out[:32].decode()


# ------------------------------------------------------------------ formats

cdef extern from "_id_checks.h":  # shared with core/_formats.pyx
    int sb_uscc_ok(const unsigned char* s, size_t n) noexcept nogil
    long long sb_citizen_id_place(const unsigned char* s, size_t n) noexcept nogil


# ------------------------------------------------------------------ the compiled route

cdef class _Record:
    """The top-level fields of one domain record."""
    cdef int n
    cdef FieldSpec fields[MAX_FIELDS]
    cdef int region  # index of the routing field


cdef class _View:
    """One masked encoding of the records: per field pass, drop, a mask or a token."""
    cdef int action[MAX_FIELDS]
    cdef int kind[MAX_FIELDS]
    cdef bytes header  # MAGIC + the view's fingerprint
    cdef sb_hmac_key key  # for tokenised fields
    cdef Py_ssize_t start, length  # where this event's records are in the scratch buffer
    cdef long long stamp  # the event they were written for

    def __dealloc__(self):
        sb_hmac_key_free(&self.key)


cdef class _Grant:
    cdef object key, topic, sequence_prefix, audit_tail, audit_key, suffix_head
    cdef _View view  # None: the raw bytes are forwarded
    cdef int key_token
    cdef sb_hmac_key secret
    cdef dict sequence_keys  # source partition -> "<subscriber>/<resource>/<partition>"
    cdef long delivered

    def __dealloc__(self):
        sb_hmac_key_free(&self.secret)


cdef class ByteRoute:
    cdef _Record record
    cdef object resource_id, table, names
    cdef bytes resource_bytes, reader_header
    cdef dict grants  # grant key -> _Grant
    cdef dict decided  # (op, region) -> tuple of _Grant, per batch
    cdef dict regions  # region bytes -> verdict
    cdef dict places  # citizen ID birth place -> verdict
    cdef object birth_place_ok
    cdef object batch
    cdef tuple op_names
    cdef Buf scratch  # one event's masked records, per view
    cdef Buf text  # one masked value
    cdef long long event_no
    cdef list used  # grants that delivered in this batch
    cdef public long long routed  # events this route answered for (tests, metrics)

    def __dealloc__(self):
        free(self.scratch.data)
        free(self.text.data)

    # ---------------------------------------------------------- vouching

    cdef int _valid_region(self, const unsigned char* s, Py_ssize_t n) except -1:
        """``is_valid_region``, remembered: per six-digit code in a C table, per other
        text in a bounded dict."""
        cdef int i, code = 0
        cdef bytes key
        cdef PyObject* found
        if n == 6:
            for i in range(6):
                if s[i] < 48 or s[i] > 57:
                    break
                code = code * 10 + s[i] - 48
            else:
                if not _REGION_VERDICT[code]:
                    valid = _is_valid_region((<const char*>s)[:6].decode())
                    _REGION_VERDICT[code] = 1 if valid else 2
                return _REGION_VERDICT[code] == 1
        key = PyBytes_FromStringAndSize(<const char*>s, n)
        found = PyDict_GetItem(self.regions, key)
        if found != NULL:
            return <object>found is True
        if len(self.regions) > 100_000:  # junk codes must not grow memory
            self.regions.clear()
        verdict = bool(_is_valid_region(key.decode()))
        self.regions[key] = verdict
        return verdict

    cdef int _citizen_id(self, const unsigned char* s, Py_ssize_t n) except -1:
        """``_formats.CitizenIdCheck`` on bytes: check digit and date in C, then the
        birth place by the validator's cached verdict."""
        cdef long long place = sb_citizen_id_place(s, n)
        if place == 0:
            return 0
        verdict = self.places.get(place)
        if verdict is None:
            if len(self.places) >= 65536:
                self.places.clear()
            text = (<const char*>s)[:10].decode()
            verdict = self.places[place] = bool(self.birth_place_ok(text[:6], text[6:10]))
        return verdict is True

    cdef int _vouch(self, const unsigned char* d, Slot* slots) except -1:
        """1 when the validator passes the record (its formats; Avro did the types)."""
        cdef int i, fmt
        cdef Slot* s
        for i in range(self.record.n):
            fmt = self.record.fields[i].format
            s = &slots[i]
            if fmt == F_NONE or s.is_null:
                continue
            if fmt == F_CITIZEN_ID and not self._citizen_id(d + s.vstart, s.vend - s.vstart):
                return 0
            if fmt == F_USCC and not sb_uscc_ok(d + s.vstart, s.vend - s.vstart):
                return 0
            if fmt == F_REGION and not self._valid_region(d + s.vstart, s.vend - s.vstart):
                return 0
        return 1

    # ---------------------------------------------------------- writing

    cdef int _write_record(self, _View view, const unsigned char* d, Slot* slots,
                           int present) except -1:
        """One record of the view (its union branch first), or null."""
        cdef int i, action
        cdef Slot* s
        cdef char token[32]
        cdef Buf* out = &self.scratch
        cdef Buf* text
        if not present:
            return _put(out, b"\x00", 1)
        _put(out, b"\x02", 1)
        for i in range(self.record.n):
            action = view.action[i]
            s = &slots[i]
            if action == A_PASS:
                _put(out, d + s.start, s.end - s.start)
            elif action == A_DROP:
                continue
            elif s.is_null:
                _put(out, b"\x00", 1)
            elif action == A_TOKEN:
                _token(&view.key, d + s.vstart, s.vend - s.vstart, token)
                _put(out, b"\x02\x40", 2)  # branch 1, length 32
                _put(out, token, TOKEN_CHARS)
            else:
                text = &self.text
                text.len = 0
                if self.record.fields[i].type == T_DATE:
                    _reserve(text, 16)
                    text.len = snprintf(<char*>text.data, 16, "%04d", _year(s.num))
                else:
                    _mask_text(view.kind[i], d + s.vstart, s.vend - s.vstart, text)
                _put(out, b"\x02", 1)
                _put_long(out, text.len)
                _put(out, text.data, text.len)
        return 0

    def route(self, message, batch):
        """Route one event into ``batch`` (the engine's ``_Batch``); False, having
        written nothing, when the byte path does not vouch for it."""
        cdef bytes raw
        cdef const unsigned char* d
        cdef Py_ssize_t pos, end, key_start, key_end, mid_end
        cdef Py_ssize_t region_v, region_n, eid_start
        cdef int64_t op, branch, n
        cdef Slot before[MAX_FIELDS]
        cdef Slot after[MAX_FIELDS]
        cdef int has_before, has_after, key_null, i
        cdef Slot* source
        cdef FieldSpec text_spec
        memset(&text_spec, 0, sizeof(FieldSpec))
        cdef Slot text_slot, key_slot, region_slot
        value = message.value
        if not PyBytes_CheckExact(value):
            return False
        raw = <bytes>value
        d = <const unsigned char*>PyBytes_AS_STRING(raw)
        end = PyBytes_GET_SIZE(raw)
        if end < HEADER + 3 or memcmp(d, PyBytes_AS_STRING(self.reader_header), HEADER) != 0:
            return False  # another writer schema: resolved on the Python path
        if d[end - 1] or d[end - 2] or d[end - 3]:
            return False  # router fields already set
        end -= 3
        pos = HEADER
        # event_id: the canonical 36-character uuid text
        if _long(d, &pos, end, &n) < 0 or n != 36 or end - pos < 36:
            return False
        eid_start = pos
        for i in range(36):
            if i == 8 or i == 13 or i == 18 or i == 23:
                if d[pos + i] != 45:
                    return False
            elif not (48 <= d[pos + i] <= 57 or 97 <= d[pos + i] <= 102
                      or 65 <= d[pos + i] <= 70):
                return False
        pos += 36
        text_spec.type = T_STRING
        text_spec.nullable = 0
        if _scan_value(&text_spec, d, &pos, end, &text_slot) < 0:  # source
            return False
        if _sized(d, &pos, end, &text_slot.vstart) < 0:  # resource: this topic's
            return False
        if pos - text_slot.vstart != PyBytes_GET_SIZE(self.resource_bytes) or memcmp(
                d + text_slot.vstart, PyBytes_AS_STRING(self.resource_bytes),
                pos - text_slot.vstart) != 0:
            return False
        if _long(d, &pos, end, &op) < 0 or not 0 <= op <= 3:  # heartbeats: Python path
            return False
        text_spec.nullable, text_spec.null_branch, text_spec.value_branch = 1, 0, 1
        key_start = pos
        if _scan_field(&text_spec, d, &pos, end, &key_slot) < 0:
            return False
        key_end = pos
        if _scan_field(&text_spec, d, &pos, end, &region_slot) < 0 or region_slot.is_null:
            return False
        for i in range(3):  # sequence, occurred_at, published_at
            if _long(d, &pos, end, &n) < 0:
                return False
            if i and not _FIRST_MICROS <= n <= _LAST_MICROS:
                return False
        mid_end = pos
        if _long(d, &pos, end, &branch) < 0 or not 0 <= branch <= 1:
            return False
        has_before = <int>branch
        if has_before and self._scan_record(d, &pos, end, before) < 0:
            return False
        if _long(d, &pos, end, &branch) < 0 or not 0 <= branch <= 1:
            return False
        has_after = <int>branch
        if has_after and self._scan_record(d, &pos, end, after) < 0:
            return False
        if pos != end:
            return False
        if (has_before and not self._vouch(d, before)) or (has_after and not self._vouch(d, after)):
            return False
        if op == 2:  # DELETE: the record it removes
            source = &before[0]
        else:
            source = &after[0]
        if not (has_before if op == 2 else has_after):
            return False
        i = self.record.region
        region_v, region_n = region_slot.vstart, region_slot.vend - region_slot.vstart
        if source[i].is_null or source[i].vend - source[i].vstart != region_n or memcmp(
                d + source[i].vstart, d + region_v, region_n) != 0:
            return False
        if not self._valid_region(d + region_v, region_n):
            return False
        if op == 1 and has_before and not before[i].is_null and (
                before[i].vend - before[i].vstart != region_n
                or memcmp(d + before[i].vstart, d + region_v, region_n) != 0):
            return False  # a region move: DELETE / CREATE, on the Python path
        grants = self._decide(batch, <int>op, d + region_v, region_n)
        if grants is None:
            return False
        self.routed += 1
        if not grants:
            return True
        return self._deliver(message, raw, <int>op, grants, eid_start, key_start, key_end,
                             &key_slot, mid_end, has_before, before, has_after, after)

    cdef int _scan_record(self, const unsigned char* d, Py_ssize_t* pos, Py_ssize_t end,
                          Slot* slots) noexcept:
        """-1 (no exception) when the bytes are not a record the byte path vouches for."""
        cdef int i
        for i in range(self.record.n):
            if _scan_field(&self.record.fields[i], d, pos, end, &slots[i]) < 0:
                return -1
        return 0

    cdef object _decide(self, object batch, int op, const unsigned char* region,
                        Py_ssize_t n):
        """The grants an (op, region) reaches, asked of the routing table once per
        batch (its time is the batch's); None when one of them has no byte route."""
        cdef bytes key = PyBytes_FromStringAndSize(NULL, n + 1)
        cdef char* k = PyBytes_AS_STRING(key)
        cdef PyObject* found
        if batch is not self.batch:
            self.batch = batch
            self.decided = {}
        k[0] = <char>op
        memcpy(k + 1, region, n)
        found = PyDict_GetItem(self.decided, key)
        if found != NULL:
            return <object>found
        op_name = self.op_names[op]
        try:
            deliveries = self.table.route(self.resource_id, op_name, key[1:].decode(), None,
                                          batch.now)
        except Exception:  # the Python path raises it again, as the event's dead letter
            return None
        grants = []
        for delivery in deliveries:
            grant = self.grants.get(delivery.key)
            if grant is None or delivery.op != op_name:
                grants = None
                break
            grants.append(grant)
        decided = None if grants is None else tuple(grants)
        self.decided[key] = decided
        return decided

    cdef object _deliver(self, object message, bytes raw, int op, tuple grants,
                         Py_ssize_t eid_start, Py_ssize_t key_start, Py_ssize_t key_end,
                         Slot* key_slot, Py_ssize_t mid_end, int has_before,
                         Slot* before, int has_after, Slot* after):
        cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(raw)
        cdef Py_ssize_t raw_len = PyBytes_GET_SIZE(raw), size, p
        cdef _Grant g
        cdef _View view
        cdef char token[32]
        cdef unsigned char sequence_bytes[10]
        cdef Py_ssize_t sequence_len, key_enc_len, size_all
        cdef const unsigned char* key_enc
        cdef unsigned char token_enc[34]
        cdef long long sequence
        cdef uint64_t zz
        cdef bytes value, audit_value, suffix_head, audit_tail, suffix, audit_end
        cdef char* w
        cdef int key_null = key_slot.is_null
        cdef PyObject* found
        batch_out = self.batch.out
        # each distinct view's records, written once for this event
        self.event_no += 1
        self.scratch.len = 0
        for g in grants:
            view = g.view
            if view is not None and view.stamp != self.event_no:
                view.start = self.scratch.len
                self._write_record(view, d, before, has_before)
                self._write_record(view, d, after, has_after)
                view.length = self.scratch.len - view.start
                view.stamp = self.event_no
        batch = self.batch
        partition = message.partition
        # the source partition and offset (the key's version): no raw header
        headers = batch.headers_of(partition, message.offset)
        raw_key = None if key_null else raw[key_slot.vstart:key_slot.vend]
        sequences = batch.sequences
        suffix = batch.suffix
        audit_end = batch.audit_end
        audit_topic = self.names.audit
        deliveries, audits = batch_out.deliveries, batch_out.audit
        for g in grants:
            view = g.view
            if key_null:
                key = None
                key_enc, key_enc_len = d + key_start, key_end - key_start
            elif g.key_token:
                _token(&g.secret, d + key_slot.vstart, key_slot.vend - key_slot.vstart, token)
                key = PyBytes_FromStringAndSize(token, 32)
                token_enc[0], token_enc[1] = 2, 64
                memcpy(token_enc + 2, token, 32)
                key_enc, key_enc_len = token_enc, 34
            else:
                key = raw_key
                key_enc, key_enc_len = d + key_start, key_end - key_start
            # the delivery sequence, per (subscriber, resource, source partition)
            found = PyDict_GetItem(g.sequence_keys, partition)
            if found == NULL:
                sequence_key = g.sequence_prefix + str(partition)
                g.sequence_keys[partition] = sequence_key
            else:
                sequence_key = <object>found
            found = PyDict_GetItem(sequences, sequence_key)
            if found == NULL:
                sequence = batch.first_sequence(sequence_key, partition)
            else:
                sequence = <object>found
            sequence += 1
            sequences[sequence_key] = sequence
            zz = (<uint64_t>sequence << 1) ^ <uint64_t>(sequence >> 63)
            sequence_len = 0
            while zz > 0x7F:
                sequence_bytes[sequence_len] = <unsigned char>((zz & 0x7F) | 0x80)
                sequence_len += 1
                zz >>= 7
            sequence_bytes[sequence_len] = <unsigned char>zz
            sequence_len += 1
            suffix_head = g.suffix_head
            if view is None:  # the raw event, as published
                size = raw_len - 3
            else:
                size = (HEADER + (key_start - HEADER) + key_enc_len + (mid_end - key_end)
                        + view.length)
            size_all = size + PyBytes_GET_SIZE(suffix_head) + sequence_len + PyBytes_GET_SIZE(suffix)
            value = PyBytes_FromStringAndSize(NULL, size_all)
            w = PyBytes_AS_STRING(value)
            if view is None:
                memcpy(w, d, size)
                p = size
            else:
                memcpy(w, PyBytes_AS_STRING(view.header), HEADER)
                memcpy(w + HEADER, d + HEADER, key_start - HEADER)
                p = key_start
                memcpy(w + p, key_enc, key_enc_len)
                p += key_enc_len
                memcpy(w + p, d + key_end, mid_end - key_end)
                p += mid_end - key_end
                memcpy(w + p, self.scratch.data + view.start, view.length)
                p += view.length
            memcpy(w + p, PyBytes_AS_STRING(suffix_head), PyBytes_GET_SIZE(suffix_head))
            p += PyBytes_GET_SIZE(suffix_head)
            memcpy(w + p, sequence_bytes, sequence_len)
            p += sequence_len
            memcpy(w + p, PyBytes_AS_STRING(suffix), PyBytes_GET_SIZE(suffix))
            deliveries.append((g.topic, key, value, headers))
            audit_tail = g.audit_tail
            audit_value = PyBytes_FromStringAndSize(
                NULL, 14 + 36 + PyBytes_GET_SIZE(audit_tail) + PyBytes_GET_SIZE(audit_end))
            w = PyBytes_AS_STRING(audit_value)
            memcpy(w, b'{"event_id": "', 14)
            memcpy(w + 14, d + eid_start, 36)
            memcpy(w + 50, PyBytes_AS_STRING(audit_tail), PyBytes_GET_SIZE(audit_tail))
            memcpy(w + 50 + PyBytes_GET_SIZE(audit_tail), PyBytes_AS_STRING(audit_end),
                   PyBytes_GET_SIZE(audit_end))
            audits.append((audit_topic, g.audit_key, audit_value, []))
            if not g.delivered:
                self.used.append(g)
            g.delivered += 1
        return True

    def finish(self, delivered):
        """Add this batch's delivery counts per grant key to ``delivered`` (a Counter)."""
        cdef _Grant g
        for g in self.used:
            delivered[g.key] += g.delivered
            g.delivered = 0
        self.used = []
        self.batch = None
        self.decided = {}


class _Ineligible(Exception):
    """A schema or plan shape the byte path does not know: the Python path routes it."""


cdef int _field_spec(object field, FieldSpec* spec) except -1:
    type_ = field["type"]
    spec.nullable = spec.null_branch = spec.value_branch = 0
    if isinstance(type_, list):
        if len(type_) != 2 or "null" not in type_:
            raise _Ineligible("a union other than [null, one type]")
        spec.nullable = 1
        spec.null_branch = type_.index("null")
        spec.value_branch = 1 - spec.null_branch
        type_ = type_[spec.value_branch]
    if isinstance(type_, dict):
        kind, logical = type_.get("type"), type_.get("logicalType")
    else:
        kind, logical = type_, None
    if kind == "enum":
        spec.type, spec.symbols = T_ENUM, len(type_["symbols"])
    elif (kind, logical) == ("string", None):
        spec.type = T_STRING
    elif (kind, logical) == ("bytes", None):
        spec.type = T_BYTES
    elif (kind, logical) == ("int", None):
        spec.type = T_INT
    elif (kind, logical) == ("int", "date"):
        spec.type = T_DATE
    elif (kind, logical) == ("long", None):
        spec.type = T_LONG
    elif (kind, logical) == ("long", "timestamp-micros"):
        spec.type = T_TIMESTAMP
    elif (kind, logical) == ("boolean", None):
        spec.type = T_BOOLEAN
    else:
        raise _Ineligible(f"type {kind}" + (f" ({logical})" if logical else ""))
    fmt = field.get("format")
    if fmt not in _FORMATS or (fmt is not None and spec.type != T_STRING):
        raise _Ineligible(f"format {fmt}")
    spec.format = _FORMATS[fmt]
    return 0


cdef _View _view(_Record record, list fields, object plan, bytes fingerprint, object secret):
    cdef _View view = _View()
    cdef int i
    if [rule.name for rule in plan.rules] != [f["name"] for f in fields]:
        raise _Ineligible("the view plan's fields are not the schema's")
    if secret is not None and type(secret) is not bytes:
        raise _Ineligible("a secret that is not bytes")
    for i, rule in enumerate(plan.rules):
        field_type = record.fields[i].type
        view.kind[i] = 0
        if rule.action == PASS:
            view.action[i] = A_PASS
        elif rule.action == DROP:
            view.action[i] = A_DROP
        elif rule.action == TOKEN and field_type == T_STRING:
            view.action[i] = A_TOKEN
        elif rule.action == MASK and rule.kind in _KINDS and (
                field_type == T_STRING or (field_type == T_DATE and rule.kind == "birth_date")):
            view.action[i], view.kind[i] = A_MASK, _KINDS[rule.kind]
        else:
            raise _Ineligible(f"field {rule.name}: {rule.action} {rule.kind}")
        if view.action[i] == A_TOKEN:
            if not secret:
                raise _Ineligible("token without a secret")
            _keyed(&view.key, secret)
    view.header = _MAGIC + fingerprint
    view.stamp = 0
    return view


def compile_byte_route(rr, table, names, birth_place_ok):
    """The byte route of a ``ResourceRoute``, or the reason (text) why the byte path
    does not know its schema or one of its grants' plans (then every event takes the
    Python path). ``birth_place_ok`` is ``citizen_ids.vouched_birth_place``, the one rule."""
    from syncbus.core.codec import fingerprint
    from syncbus.core.schemas import event_schema
    cdef ByteRoute route = ByteRoute()
    cdef _Grant g
    cdef int i
    domain = rr.domain
    if fingerprint(event_schema(domain, _ENVELOPE)) != rr.reader_fp:
        return "not the envelope layout the byte path reads"
    fields = list(domain["fields"])
    if len(fields) > MAX_FIELDS:
        return f"more than {MAX_FIELDS} fields"
    route.record = _Record()
    try:
        for i, field in enumerate(fields):
            try:
                _field_spec(field, &route.record.fields[i])
            except _Ineligible as exc:
                raise _Ineligible(f"field {field['name']}: {exc}") from None
        route.record.n = len(fields)
        names_ = [f["name"] for f in fields]
        route.record.region = names_.index(rr.resource.region_field)
        if route.record.fields[route.record.region].type != T_STRING:
            return "a region field that is not a string"
        views = {}
        route.grants = {}
        for key, grant_route in rr.grants.items():
            g = _Grant()
            plan = grant_route.view.plan
            secret = grant_route.masker.secret
            fp = grant_route.view.fingerprint
            if grant_route.passthrough and fp == rr.reader_fp:
                g.view = None
            else:
                view_key = grant_route.encode_id  # one masked record per distinct plan
                if view_key not in views:
                    try:
                        views[view_key] = _view(route.record, fields, plan, fp, secret)
                    except _Ineligible as exc:
                        raise _Ineligible(f"grant {key}: {exc}") from None
                g.view = views[view_key]
            g.key_token = plan.key_action != PASS
            if g.key_token:
                if not secret or type(secret) is not bytes:
                    return f"grant {key}: a key token without a secret in bytes"
                _keyed(&g.secret, secret)
            g.key, g.topic = key, grant_route.topic
            g.sequence_prefix = grant_route.sequence_prefix
            g.audit_tail, g.audit_key = grant_route.audit_tail, grant_route.audit_key
            g.suffix_head = grant_route.suffix_head
            g.sequence_keys = {}
            g.delivered = 0
            route.grants[key] = g
    except _Ineligible as exc:
        return str(exc)
    except (KeyError, ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    route.resource_id = rr.resource.id
    route.resource_bytes = rr.resource.id.encode()
    route.reader_header = _MAGIC + rr.reader_fp
    route.table, route.names = table, names
    route.decided, route.regions, route.places = {}, {}, {}
    route.birth_place_ok = birth_place_ok
    route.batch = None
    route.op_names = tuple(_OPS)
    route.event_no = route.routed = 0
    route.used = []
    return route
