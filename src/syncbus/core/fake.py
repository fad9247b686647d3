"""Deterministic, valid, realistic records for tests, benchmarks and the demo.

Faker's ``zh_CN`` provider supplies names, addresses and companies; citizen IDs
and USCCs are computed with their real check digits for the requested region,
so every record passes ``validation`` and the router's region routing sees
realistic codes. Faker is a test extra, so it is imported inside functions.

API:
    RESOURCE_SCHEMAS: schema names this module generates
    citizen_id(region, birth_date, rng, female=None) -> str
    uscc_for(region, rng) -> str
    make_record(schema_name, region="320508", seed=None, rng=None) -> dict
    make_records(schema_name, n, regions=(...), seed=0) -> list[dict]
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from stdnum.cn import ric, uscc

from syncbus.core.regions import is_valid_region, region_name

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
DEFAULT_REGIONS = ("320102", "320106", "320205", "320505", "320508", "320583")
# generated dates stay before this day, so a record never claims a future registration
LATEST_DATE = dt.date(2025, 12, 31)
ETHNICITIES = ("汉族", "汉族", "汉族", "汉族", "回族", "满族", "蒙古族", "壮族")


def citizen_id(
    region: str, birth_date: dt.date, rng: random.Random, female: bool | None = None
) -> str:
    """An 18-character citizen ID with a correct GB 11643 check digit."""
    order = rng.randrange(0, 500) * 2 + (0 if female else 1)
    if female is None:
        order = rng.randrange(1, 1000)
    body = f"{region}{birth_date:%Y%m%d}{order:03d}"
    return body + ric.calc_check_digit(body + "0")


def uscc_for(region: str, rng: random.Random) -> str:
    """An 18-character USCC (enterprise, 91) with a correct GB 32100 check digit."""
    org = "".join(rng.choice(_USCC_ALPHABET) for _ in range(9))
    body = f"91{region}{org}"
    return body + uscc.calc_check_digit(body)


def _retired_in(region: str) -> int | None:
    """The last year a retired region code was in force (None while in force): no
    one born after it can hold a number with it (``citizen_ids.birth_place_ok``)."""
    from stdnum import numdb

    county = numdb.get("cn/loc").info(region)[-1][1].get("county", "")
    if re.search(r"(^|,)(\[\d*-\]|[^\[])", county):
        return None
    ends = [int(y) for y in re.findall(r"-(\d{4})\]", county)]
    return max(ends) if ends else None


def _birth_date(rng: random.Random, region: str, earliest: int = 1950) -> dt.date:
    retired = _retired_in(region)
    end = max(earliest + 1, min(2005, retired + 1 if retired is not None else 2005))
    return dt.date(earliest, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * (end - earliest)))


@lru_cache(maxsize=1)
def _new_faker() -> Any:
    from faker import Faker  # imported on first use: only bench, demo and tests make records

    return Faker("zh_CN")


def _faker(rng: random.Random) -> Any:
    fake = _new_faker()  # building one costs ~10 ms, so it is shared and reseeded
    fake.seed_instance(rng.randrange(2**32))
    return fake


def _address(region: str, fake: Any) -> str:
    """A street address written the Chinese way: province, city, district, then street."""
    return f"{region_name(region)}{fake.street_address()}"


def _resident(rng: random.Random, region: str, fake: Any) -> dict[str, Any]:
    female = rng.random() < 0.5
    born = _birth_date(rng, region)
    return {
        "id_number": citizen_id(region, born, rng, female),
        "name": fake.name_female() if female else fake.name_male(),
        "gender": "F" if female else "M",
        "birth_date": born,
        "ethnicity": rng.choice(ETHNICITIES),
        "region": region,
        "address": _address(region, fake),
        "phone": fake.phone_number() if rng.random() < 0.9 else None,
        "registered_on": min(born + dt.timedelta(days=rng.randrange(0, 9000)), LATEST_DATE),
    }


def _marriage(rng: random.Random, region: str, fake: Any) -> dict[str, Any]:
    on = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(0, 3650))
    return {
        "registration_number": f"J{region}-{on.year}-{rng.randrange(10**6):06d}",
        "kind": rng.choice(("MARRIAGE", "MARRIAGE", "DIVORCE", "REISSUE")),
        "party_a_id": citizen_id(region, _birth_date(rng, region, 1970), rng, False),
        "party_a_name": fake.name_male(),
        "party_b_id": citizen_id(region, _birth_date(rng, region, 1970), rng, True),
        "party_b_name": fake.name_female(),
        "registered_on": on,
        "registry_region": region,
        "registry_office": f"{fake.city_name()}市民政局婚姻登记处",
    }


def _company(rng: random.Random, region: str, fake: Any) -> dict[str, Any]:
    return {
        "uscc": uscc_for(region, rng),
        "name": fake.company(),
        "entity_type": rng.choice(("有限责任公司", "股份有限公司", "个人独资企业")),
        "legal_rep_name": fake.name(),
        "legal_rep_id": citizen_id(region, _birth_date(rng, region, 1960), rng),
        "registered_capital": Decimal(rng.randrange(10_000, 100_000_000)) / 100,
        "established_on": dt.date(1995, 1, 1) + dt.timedelta(days=rng.randrange(0, 10000)),
        "address": _address(region, fake),
        "region": region,
        "status": rng.choice(("存续", "在业", "注销", "吊销")),
        "business_scope": rng.choice((None, "技术开发、技术咨询、技术服务", "日用百货销售")),
    }


def _licence(rng: random.Random, region: str, fake: Any) -> dict[str, Any]:
    start = dt.date(2010, 1, 1) + dt.timedelta(days=rng.randrange(0, 5000))
    return {
        "licence_number": f"{region}{rng.randrange(10**9):09d}",
        "holder_uscc": uscc_for(region, rng),
        "holder_name": fake.company(),
        "issuer": f"{fake.city_name()}市市场监督管理局",
        "region": region,
        "valid_from": start,
        "valid_to": rng.choice((None, start + dt.timedelta(days=3650 * 3))),
        "status": rng.choice(("VALID", "VALID", "SUSPENDED", "REVOKED", "EXPIRED")),
    }


def _parcel(rng: random.Random, region: str, fake: Any) -> dict[str, Any]:
    return {
        "unit_id": f"{region}{rng.randrange(10**6):06d}GB{rng.randrange(10**5):05d}F0001",
        "region": region,
        "area_m2": round(rng.uniform(30, 5000), 2),
        "land_use": rng.choice(("城镇住宅用地", "商业服务业用地", "工业用地", "耕地")),
        "owner_id": citizen_id(region, _birth_date(rng, region), rng),
        "location": {"longitude": rng.uniform(116.3, 121.9), "latitude": rng.uniform(30.7, 35.1)},
        "right_type": rng.choice(("国有建设用地使用权/房屋所有权", "集体土地所有权")),
    }


def _penalty(rng: random.Random, region: str, fake: Any) -> dict[str, Any]:
    legal = rng.random() < 0.7
    return {
        "decision_number": f"苏{region[:4]}罚〔{rng.randrange(2018, 2026)}〕{rng.randrange(999)}号",
        "subject_kind": "LEGAL" if legal else "NATURAL",
        "subject_uscc": uscc_for(region, rng) if legal else None,
        "subject_id_number": None if legal else citizen_id(region, _birth_date(rng, region), rng),
        "subject_name": fake.company() if legal else fake.name(),
        "category": rng.choice(("警告", "罚款", "没收违法所得", "责令停产停业")),
        "decided_on": dt.date(2018, 1, 1) + dt.timedelta(days=rng.randrange(0, 2800)),
        "amount": rng.choice((None, Decimal(rng.randrange(100, 10_000_000)) / 100)),
        "authority": f"{fake.city_name()}市市场监督管理局",
        "region": region,
    }


def _diagnosis(rng: random.Random, region: str, fake: Any) -> dict[str, Any]:
    code, text = rng.choice((("E11.9", "2型糖尿病"), ("I10", "原发性高血压"), ("J18.9", "肺炎")))
    return {
        "record_id": f"EMR{rng.randrange(10**12):012d}",
        "patient_id": citizen_id(region, _birth_date(rng, region), rng),
        "patient_name": fake.name(),
        "icd10": code,
        "diagnosis": text,
        "diagnosed_on": dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(0, 2000)),
        "hospital": f"{fake.city_name()}市第{rng.randrange(1, 9)}人民医院",
        "region": region,
    }


_MAKERS: dict[str, Callable[[random.Random, str, Any], dict[str, Any]]] = {
    "population.resident": _resident,
    "population.marriage": _marriage,
    "legal.company": _company,
    "licence.business": _licence,
    "spatial.parcel": _parcel,
    "credit.penalty": _penalty,
    "health.diagnosis": _diagnosis,
}
RESOURCE_SCHEMAS = tuple(_MAKERS)


def make_record(
    schema_name: str,
    region: str = "320508",
    seed: int | None = None,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """One valid record of a v1 schema; the same seed gives the same record."""
    if schema_name not in _MAKERS:
        raise KeyError(f"no generator for schema {schema_name!r}")
    if not is_valid_region(region):
        raise ValueError(f"not a GB/T 2260 region code: {region!r}")
    rng = rng or random.Random(seed)
    return _MAKERS[schema_name](rng, region, _faker(rng))


def make_records(
    schema_name: str, n: int, regions: Sequence[str] = DEFAULT_REGIONS, seed: int = 0
) -> list[dict[str, Any]]:
    """``n`` records spread over ``regions``, deterministic for a seed."""
    rng = random.Random(seed)
    return [make_record(schema_name, regions[i % len(regions)], rng=rng) for i in range(n)]
