# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast format checks of ``validation`` in C: same verdicts, no interpreter.

Every citizen ID and USCC on the bus is checked once by the publisher and once
by the router. In Python ``_citizen_id_ok`` costs about 2 us and ``_uscc_ok``
about 1.2 us, most of it slicing, encoding and ``int(text, base)``; here they
walk the characters once. They answer exactly what the Python functions in
``validation`` answer (tests compare them on random and near-valid strings),
which in turn accept only what stdnum accepts.

API:
    uscc_ok(value) -> bool
    CitizenIdCheck(birth_place_ok)(value) -> bool  (birth_place_ok(region6, year4))
"""

cdef extern from "Python.h":
    bint PyUnicode_CheckExact(object o)
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL

cdef extern from "_id_checks.h":
    int sb_uscc_ok(const unsigned char* s, size_t n)
    long long sb_citizen_id_place(const unsigned char* s, size_t n)


cdef inline const unsigned char* _eighteen(v, Py_ssize_t* size):
    """The UTF-8 of ``v`` if it is an exact ``str`` of 18 characters (both codes'
    length), else NULL (a lone surrogate, which has no UTF-8, included)."""
    if not PyUnicode_CheckExact(v) or len(<str>v) != 18:
        return NULL
    try:
        return <const unsigned char*>PyUnicode_AsUTF8AndSize(v, size)
    except UnicodeEncodeError:
        return NULL


def uscc_ok(v) -> bool:
    """GB 32100 check digit of an 18-character canonical USCC (``validation._uscc_ok``)."""
    cdef Py_ssize_t n = 0
    cdef const unsigned char* s = _eighteen(v, &n)
    return s != NULL and sb_uscc_ok(s, n) == 1


cdef class CitizenIdCheck:
    """GB 11643 of an 18-character canonical citizen ID (``validation._citizen_id_ok``):
    check digit and birth date in C, birth place by ``citizen_ids.vouched_birth_place``."""
    cdef object birth_place_ok
    cdef dict places  # region * 10000 + year -> verdict: an int key, no slicing per call

    def __init__(self, birth_place_ok):
        self.birth_place_ok = birth_place_ok
        self.places = {}

    def __call__(self, v) -> bool:
        cdef Py_ssize_t n = 0
        cdef const unsigned char* s = _eighteen(v, &n)
        cdef long long place = sb_citizen_id_place(s, n) if s != NULL else 0
        if place == 0:
            return False
        verdict = self.places.get(place)
        if verdict is None:
            if len(self.places) >= 65536:  # a flood of junk must not grow memory
                self.places.clear()
            verdict = self.places[place] = bool(self.birth_place_ok(v[:6], v[6:10]))
        return verdict
