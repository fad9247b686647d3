"""python-stdnum's region data decides verdicts: this table fails loudly when it changes.

Region validity (``regions.is_valid_region``), names, and whether a citizen ID may carry
a region for a birth year (``citizen_ids.birth_place_ok``: our rule, the code in force
at some time from the birth year to today, on the periods of stdnum's ``cn/loc``
database) all depend on that database.
A new stdnum release may add, rename or close divisions, which would silently change
which records pass validation and which subscribers they reach. When this test fails
after a stdnum upgrade, read the changed rows, decide whether the bus accepts them
(README, streams/ regions, fake data) and update the table and pyproject.toml's bound
together.
"""

from __future__ import annotations

import pytest
import stdnum

from syncbus.core.regions import is_valid_region, region_name
from syncbus.core.validation import birth_place_ok

YEARS = (1950, 1985, 2000, 2011, 2012, 2013, 2020)

# code: (name or None when invalid, the birth years of YEARS whose IDs may carry it)
# The bus's own regions (streams/, core/fake.py), divisions merged away (Suzhou 2012,
# Nanjing 2013, Beijing 2010, Shanghai 2011) and codes that never existed.
REGIONS: dict[str, tuple[str | None, tuple[int, ...]]] = {
    "320000": ("江苏省", YEARS),
    "320100": ("江苏省南京市", YEARS),
    "320102": ("江苏省南京市玄武区", YEARS),
    "320103": ("江苏省南京市白下区", (1950, 1985, 2000, 2011, 2012, 2013)),
    "320104": ("江苏省南京市秦淮区", YEARS),
    "320105": ("江苏省南京市建邺区", YEARS),
    "320106": ("江苏省南京市鼓楼区", YEARS),
    "320200": ("江苏省无锡市", YEARS),
    "320205": ("江苏省无锡市锡山区", YEARS),
    "320500": ("江苏省苏州市", YEARS),
    "320502": ("江苏省苏州市沧浪区", (1950, 1985, 2000, 2011, 2012)),
    "320503": ("江苏省苏州市平江区", (1950, 1985, 2000, 2011, 2012)),
    "320504": ("江苏省苏州市金阊区", (1950, 1985, 2000, 2011, 2012)),
    "320505": ("江苏省苏州市虎丘区", YEARS),
    "320508": ("江苏省苏州市姑苏区", YEARS),
    "320583": ("江苏省苏州市昆山市", YEARS),
    "110101": ("北京市东城区", YEARS),
    "110103": ("北京市崇文区", (1950, 1985, 2000)),
    "310101": ("上海市黄浦区", YEARS),
    "310103": ("上海市卢湾区", (1950, 1985, 2000, 2011)),
    "440305": ("广东省深圳市南山区", YEARS),
    "000000": (None, ()),
    "320599": (None, ()),
    "999999": (None, ()),
}


@pytest.mark.parametrize("code", sorted(REGIONS))
def test_region_verdicts_are_those_the_bus_was_built_on(code: str) -> None:
    name, years = REGIONS[code]
    found_name = region_name(code) if is_valid_region(code) else None
    found_years = tuple(y for y in YEARS if birth_place_ok(code, str(y)))
    assert (found_name, found_years) == (name, years), (
        f"python-stdnum {stdnum.__version__} changed its verdict on region {code}: "
        f"name {found_name!r} (pinned {name!r}), birth years accepted {found_years} "
        f"(pinned {years}). Its region data decides validation and routing: review the "
        f"change, then update this table and the python-stdnum bound in pyproject.toml."
    )
