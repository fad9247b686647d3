"""GB/T 2260 region codes: validity, names and coverage.

Validity comes from python-stdnum's ``cn/loc`` database (the administrative
division codes, including abolished ones, since old records still carry them).
``covers`` decides which subscribers see a record, once per event and grant on
the router's hot path, so its answers are cached.

API:
    NATIONAL: the national scope ``"000000"`` (covers every region; not a record region)
    is_valid_region(code) -> bool
    region_name(code) -> str          e.g. "江苏省苏州市姑苏区"
    scope_prefix(scope) -> str        "320500" -> "3205", "000000" -> ""
    covers(scope, code) -> bool
"""

from __future__ import annotations

import re
from functools import lru_cache

from stdnum import numdb

NATIONAL = "000000"
_SIX_DIGITS = re.compile(r"^\d{6}$")
_VALIDITY = re.compile(r"^\[[^\]]*\]")


@lru_cache(maxsize=8192)
def _lookup(code: str) -> tuple[tuple[str, dict[str, str]], ...]:
    return tuple(numdb.get("cn/loc").info(code))


def is_valid_region(code: str) -> bool:
    """True when ``code`` is a real six-digit division code (province, city or county)."""
    if not isinstance(code, str) or not _SIX_DIGITS.match(code) or code == NATIONAL:
        return False
    parts = _lookup(code)
    return len(parts) == 2 and all(props for _, props in parts)


def _clean(name: str) -> str:
    # numdb marks validity periods like "[2012-]姑苏区"; several periods are comma separated
    return _VALIDITY.sub("", name.split(",")[-1])


@lru_cache(maxsize=8192)
def region_name(code: str) -> str:
    """Full Chinese name, province then city then county; raises ValueError if unknown."""
    if code == NATIONAL:
        return "全国"
    if not is_valid_region(code):
        raise ValueError(f"not a GB/T 2260 region code: {code!r}")
    province = _lookup(code)[0][1]["province"]
    names = [province]
    if code[2:] != "0000":
        city_code = code[:4] + "00"
        if city_code != code and is_valid_region(city_code):
            city = _clean(_lookup(city_code)[1][1]["county"])
            if city not in ("市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"):
                names.append(city)
        names.append(_clean(_lookup(code)[1][1]["county"]))
    return "".join(names)


@lru_cache(maxsize=4096)
def scope_prefix(scope: str) -> str:
    """The prefix a scope covers: trailing ``00`` pairs dropped, ``""`` for national."""
    prefix = scope or ""
    while prefix.endswith("00"):
        prefix = prefix[:-2]
    return prefix


@lru_cache(maxsize=65536)
def covers(scope: str, code: str) -> bool:
    """True when a subscriber whose region is ``scope`` may see a record of ``code``."""
    return code.startswith(scope_prefix(scope))
