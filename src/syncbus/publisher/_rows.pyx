# cython: language_level=3, boundscheck=False, wraparound=False
"""The publisher's per-event loops in C: new states, and handing rows to librdkafka.

A CREATE or SNAPSHOT carrying only ``after`` is most of what departments publish.
For it the Python path checks the record, builds an event dict, encodes it, and
builds nine header tuples and the spooled meta string: about 11 us per event in
the interpreter, a third of the publisher's CPU. Here one loop does the same with
the checked encoder (``_avro_native.compile_encoder(..., checks=...)``), which
validates the record while writing it. It stops at the first change it does not
take (another op, a record the checked encoder refuses, a key or region that is
not a plain string) and returns its index; ``ResourceWriter`` then handles that
change in Python, where a bad record is rejected with its reasons, and calls
``write`` again after it. The header layout and meta are ``ResourceWriter``'s,
passed in; tests hold both paths to the same rows.

``send`` and ``DeliveryReport`` are ``Sender.offer``'s loop and its per-event delivery
callback, and ``mark_acked`` is ``Spool.acknowledge``'s, for the same reason: the
Python loops and callback frames cost about 2 us an event of the one interpreter
lock the caller and the pump share.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.long cimport PyLong_FromLongLong
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8String

cimport cython

from libc.string cimport memcpy

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL
    void PyObject_GC_UnTrack(object o)
    bint PyDict_CheckExact(object o)
    bint PyLong_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)


cdef class NewStateWriter:
    """Rows of new-state changes for one (department, resource), as ``write`` says."""
    cdef object encode, change_type, source, resource, key_field, region_field, sep
    cdef dict op_headers
    cdef tuple h_source, h_resource, h_fp
    cdef object n_event_id, n_region, n_sequence, n_occurred, n_published

    def __init__(self, encode, change_type, source, resource, key_field, region_field,
                 dict op_headers, tuple fixed_headers, tuple fingerprint_header,
                 tuple header_names, sep):
        """``op_headers``: the ops taken here -> their op header; ``header_names``:
        event id, region, sequence, occurred at, published at."""
        self.encode, self.change_type = encode, change_type
        self.source, self.resource = source, resource
        self.key_field, self.region_field, self.sep = key_field, region_field, sep
        self.op_headers = op_headers
        self.h_source, self.h_resource = fixed_headers
        self.h_fp = fingerprint_header
        (self.n_event_id, self.n_region, self.n_sequence, self.n_occurred,
         self.n_published) = header_names

    def write(self, list changes, Py_ssize_t start, list event_ids, long long first_seq,
              published, list rows, list accepted):
        """Append (key, value, meta, headers) to ``rows`` and the event id to ``accepted``
        for ``changes[start:]``, up to the first change not taken here; return its index
        (``len(changes)`` when all were taken). The k-th accepted event of the batch gets
        ``event_ids[k]`` and sequence ``first_seq + k``."""
        cdef Py_ssize_t i, k, n = len(changes)
        cdef PyObject* found
        published_s = str(published)
        h_published = (self.n_published, published_s)
        # one event dict for the whole call, its values replaced per change: the
        # encoder keeps nothing of it, and a dict per event is garbage to collect
        cdef dict event = {
            "event_id": None, "source": self.source, "resource": self.resource, "op": None,
            "key": None, "region": None, "sequence": None, "occurred_at": None,
            "published_at": published, "before": None, "after": None,
        }
        for i in range(start, n):
            change = changes[i]
            if type(change) is not self.change_type or change.before is not None:
                return i
            op = change.op
            found = PyDict_GetItem(self.op_headers, op) if PyUnicode_CheckExact(op) else NULL
            if found == NULL:
                return i
            h_op = <object>found
            after = change.after
            if not PyDict_CheckExact(after):
                return i
            occurred = change.occurred_at
            if occurred is None:
                occurred, occurred_s = published, published_s
            elif PyLong_CheckExact(occurred):
                occurred_s = str(occurred)
            else:
                return i
            found = PyDict_GetItem(after, self.key_field)
            if found == NULL or not PyUnicode_CheckExact(<object>found):
                return i
            key = <object>found
            found = PyDict_GetItem(after, self.region_field)
            if found == NULL or not PyUnicode_CheckExact(<object>found) \
                    or PyUnicode_GET_LENGTH(<object>found) == 0:
                return i
            region = <object>found
            k = len(accepted)
            event_id = event_ids[k]
            sequence = PyLong_FromLongLong(first_seq + k)
            event["event_id"], event["op"], event["key"] = event_id, op, key
            event["region"], event["sequence"] = region, sequence
            event["occurred_at"], event["after"] = occurred, after
            try:
                value = self.encode(event)
            except Exception:  # invalid, or not for the fast path: Python decides
                return i
            seq_s = str(sequence)
            headers = [self.h_source, self.h_resource, _pair(self.n_event_id, event_id), h_op,
                       _pair(self.n_region, region), _pair(self.n_sequence, seq_s),
                       _pair(self.n_occurred, occurred_s), h_published, self.h_fp]
            PyObject_GC_UnTrack(headers)
            meta = self.sep.join((event_id, op, region, "", seq_s, occurred_s, published_s))
            row = (PyUnicode_AsUTF8String(key), value, meta, headers)
            PyObject_GC_UnTrack(row)
            rows.append(row)
            accepted.append(event_id)
        return n


cdef inline tuple _pair(name, value):
    """A header tuple, untracked by the cycle collector. A row (its tuple, its header
    list and their tuples) holds only strings and bytes and is never changed, so it
    can be in no reference cycle; tracked, the 6 containers of every event were walked
    by each collection they lived through and promoted into the old generation,
    costing the publisher a tenth of its time in full collections."""
    cdef tuple pair = (name, value)
    PyObject_GC_UnTrack(pair)
    return pair


@cython.no_gc  # refers to two lists of ints and strings: it can be in no cycle
cdef class DeliveryReport:
    """One event's delivery callback: its spool id into ``acked``, or with the error's
    name and text into ``failed``. A C call instead of a Python frame per event in the
    thread that serves librdkafka's reports."""
    cdef list acked, failed
    cdef object spool_id

    def __init__(self, list acked, list failed, spool_id):
        self.acked, self.failed, self.spool_id = acked, failed, spool_id

    def __call__(self, err, msg):
        if err is None:
            self.acked.append(self.spool_id)
        else:
            self.failed.append((self.spool_id, err.name(), err.str()))


def send(produce, topic, list rows, long long first_id, list acked, list failed,
         tuple stop_on):
    """``produce`` each (key, value, meta, headers) row in order, the k-th with the
    ``DeliveryReport`` of spool id ``first_id + k``; returns how many were handed over
    (fewer when ``produce`` raised one of ``stop_on``: queue full, or refused)."""
    cdef Py_ssize_t i
    for i in range(len(rows)):
        key, value, _, headers = <tuple>rows[i]
        try:
            produce(topic, value, key, headers=headers,
                    on_delivery=DeliveryReport(acked, failed, PyLong_FromLongLong(first_id + i)))
        except stop_on:
            return i
    return len(rows)


def mark_acked(bytearray bits, long long first, long long end, list ids, Py_ssize_t start):
    """Set bit ``id - first`` of ``bits`` for ``ids[start:]`` while they fall in
    ``[first, end)``; returns (how many bits were newly set, the index of the first id
    outside). ``Spool.acknowledge``'s loop: one C step per delivery report."""
    cdef Py_ssize_t i, n = len(ids), count = 0
    cdef long long spool_id, offset
    cdef unsigned char mask
    cdef unsigned char* data = bits
    for i in range(start, n):
        spool_id = ids[i]
        if spool_id < first or spool_id >= end:
            return count, i
        offset = spool_id - first
        mask = 1 << (offset & 7)
        if not data[offset >> 3] & mask:
            data[offset >> 3] |= mask
            count += 1
    return count, n


def numbered(str prefix, Py_ssize_t n):
    """``prefix`` followed by 0, 1, ... ``n - 1`` as 11 lowercase hex digits: the loop
    of ``changes.new_event_ids``, one string allocation an id instead of four."""
    cdef Py_ssize_t i, j, size
    cdef unsigned long long counter
    cdef char* data
    cdef const char* head
    if not prefix.isascii():
        raise ValueError("an event id prefix is ASCII")
    head = PyUnicode_AsUTF8AndSize(prefix, &size)
    cdef list out = []
    for i in range(n):
        text = PyUnicode_New(size + 11, 127)
        data = <char*>PyUnicode_DATA(text)
        memcpy(data, head, size)
        counter = i
        for j in range(size + 10, size - 1, -1):
            data[j] = b"0123456789abcdef"[counter & 15]
            counter >>= 4
        out.append(text)
    return out
