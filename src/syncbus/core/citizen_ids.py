"""Citizen IDs (公民身份号码, GB 11643): the one definition of when a number is valid.

A number is 6 digits of region, 8 of birth date, 3 of order and a check digit.
python-stdnum computes the check digit and keeps the history of region codes; the
rule about *when* a region code may appear is ours, because stdnum's differs from
how numbers were actually issued:

- numbers were assigned from the mid-1980s on, with the region code in force where
  the person was registered at that time, and a number never changes afterwards;
- so a code is possible when it was in force at some time between the birth year
  and today: everyone in Gusu district (``320508``, created 2012) born before 2012
  holds a valid number, while a Baixia district number (``320103``, retired 2013)
  for someone born in 2015 is impossible.

stdnum asks instead whether the code was in force *in the birth year*, which
refuses most adults of any district created after they were born.

Every check of a citizen ID (the validator, its C fast checks, the router's byte
path) reaches the region verdict through :func:`birth_place_ok`; the C paths only
vouch for numbers whose birth year has ended (:func:`vouched_birth_place`), so the
"not in the future" rule never needs a second definition in C.

API:
    load_regions()                               read stdnum's region database now
    birth_place_ok(region6, year4) -> bool       the region rule above (cached)
    vouched_birth_place(region6, year4) -> bool  what the fast paths may vouch for
    citizen_id_problem(value) -> reason | None   every rule, each with its own reason
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from stdnum import numdb
from stdnum.cn import ric

_PERIOD = re.compile(r"^\[(\d*)-(\d*)\]")


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def load_regions() -> None:
    """Read stdnum's region code database now. stdnum parses its ~7,000 lines on the
    first number checked (30-160 ms here), and a router's first event waited that
    long behind it; a validator of a schema with citizen IDs calls this when it is
    compiled (``syncbus.core.validation``)."""
    numdb.get("cn/loc")


@lru_cache(maxsize=8192)
def _periods(region: str) -> tuple[tuple[int | None, int | None], ...] | None:
    """The periods (first year, last year; None = open) in which ``region`` was in
    force as stdnum's ``cn/loc`` records them, or None for a code it does not know."""
    if len(region) != 6 or not region.isascii() or not region.isdigit():
        return None
    info = {k: v for _, props in numdb.get("cn/loc").info(region) for k, v in props.items()}
    county = info.get("county")
    if not county or "province" not in info:
        return None
    periods: list[tuple[int | None, int | None]] = []
    for entry in county.split(","):
        found = _PERIOD.match(entry)
        if found is None:  # a name with no period: in force throughout
            periods.append((None, None))
        else:
            start, end = found.groups()
            periods.append((int(start) if start else None, int(end) if end else None))
    return tuple(periods)


def _retired_before(region: str, year: int) -> int | None:
    """The year ``region`` was retired when that was before ``year``, else None."""
    periods = _periods(region) or ()
    if any(end is None or end >= year for _, end in periods):
        return None
    return max(end for _, end in periods if end is not None)


@lru_cache(maxsize=65536)
def birth_place_ok(region: str, year: str) -> bool:
    """Whether a number of someone born in ``year`` may carry region code ``region``:
    the code exists and was in force at some time from that year to today."""
    if _periods(region) is None or not (year.isascii() and year.isdigit()):
        return False
    return _retired_before(region, int(year)) is None


@lru_cache(maxsize=65536)
def vouched_birth_place(region: str, year: str) -> bool:
    """What the C fast paths may accept without asking again: a good birth place of
    a birth year already over, which no birth date in it can put in the future. A
    False here only sends the number to :func:`citizen_id_problem`, which decides."""
    return birth_place_ok(region, year) and int(year) < _today().year


def citizen_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid citizen ID, or None. Each rule has its own reason,
    naming the part that is wrong but not the whole number (it is personal data)."""
    number = ric.compact(value)
    if len(number) != 18:
        return f"citizen ID must be 18 characters (got {len(number)})"
    if not (number[:17].isascii() and number[:17].isdigit()):
        return "citizen ID must be 17 digits and a check digit (0-9 or X)"
    if number[-1] != ric.calc_check_digit(number):
        return "citizen ID check digit is wrong"
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return f"citizen ID has an impossible birth date ({number[6:14]})"
    if born > _today():
        return "citizen ID birth date is in the future"
    region = number[:6]
    if _periods(region) is None:
        return f"citizen ID region {region} is not a GB/T 2260 region code"
    retired = _retired_before(region, born.year)
    if retired is not None:
        return (f"citizen ID region {region} was retired in {retired}, "
                f"before the holder was born ({born.year})")
    return None
