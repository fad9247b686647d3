"""An L2 subscriber cannot narrow a masked citizen ID down to a few people.

An L2 grant on residents delivers the masked ID beside the birth year (the
birth-date mask), the gender and the region. This counts, for every masked value
such a subscriber can see, the real IDs it could stand for: same region, a real
day of that birth year, the gender's parity of the 17th digit, a valid GB 11643
check digit. Each count must be at least 1,000 (keeping the last four digits
left about 33).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from stdnum.cn import ric

from syncbus.core.masking import mask_birth_date, mask_id_number

MIN_CANDIDATES = 1_000


def _candidates(region: str, year: int) -> Counter[tuple[str, int]]:
    """(masked ID, gender parity) -> how many real IDs of that region and year give it."""
    counts: Counter[tuple[str, int]] = Counter()
    day = dt.date(year, 1, 1)
    while day.year == year:
        head = region + day.strftime("%Y%m%d")
        for sequence in range(1000):
            body = f"{head}{sequence:03d}"
            number = body + ric.calc_check_digit(body)
            counts[mask_id_number(number), sequence % 2] += 1
        day += dt.timedelta(days=1)
    return counts


@pytest.mark.parametrize(("region", "year"), [("320508", 1990), ("110101", 2000)])
def test_region_birth_year_gender_and_mask_leave_a_thousand_candidates(
    region: str, year: int
) -> None:
    counts = _candidates(region, year)
    assert mask_birth_date(dt.date(year, 6, 1)) == str(year)  # all the date an L2 sees
    fewest = min(counts.values())
    assert fewest >= MIN_CANDIDATES, f"a masked ID fits only {fewest} real IDs"
    assert len(counts) > 100  # the mask still tells IDs apart a little (region + tail)
