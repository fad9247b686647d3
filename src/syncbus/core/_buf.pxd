# cython: language_level=3
"""A growable C byte buffer, shared by the native codec and the router's byte path
(``cimport``-ed: these inline functions are compiled into each module)."""

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport realloc
from libc.string cimport memcpy


cdef struct Buf:
    unsigned char* data
    Py_ssize_t len
    Py_ssize_t cap


cdef inline int _reserve(Buf* b, Py_ssize_t n) except -1:
    cdef Py_ssize_t cap
    cdef unsigned char* grown
    if b.len + n <= b.cap:
        return 0
    cap = b.cap * 2
    if cap < b.len + n:
        cap = b.len + n
    grown = <unsigned char*>realloc(b.data, cap)
    if grown == NULL:
        raise MemoryError()
    b.data, b.cap = grown, cap
    return 0


cdef inline int _put(Buf* b, const void* src, Py_ssize_t n) except -1:
    if b.len + n > b.cap:
        _reserve(b, n)
    memcpy(b.data + b.len, src, n)
    b.len += n
    return 0


cdef inline int _put_long(Buf* b, int64_t v) except -1:
    """Avro long: zig-zag, then unsigned LEB128."""
    cdef uint64_t n = (<uint64_t>v << 1) ^ <uint64_t>(v >> 63)
    if b.len + 10 > b.cap:
        _reserve(b, 10)
    while n > 0x7F:
        b.data[b.len] = <unsigned char>((n & 0x7F) | 0x80)
        b.len += 1
        n >>= 7
    b.data[b.len] = <unsigned char>n
    b.len += 1
    return 0
