"""The fast validity answers never disagree with stdnum or with the full checker tree.

``_citizen_id_ok`` and ``_uscc_ok`` compute GB 11643 / GB 32100 directly; they
may refuse what stdnum accepts (a lowercase ``x``: the slow path then accepts
it), never the reverse; their C versions (``_formats``) answer exactly as they
do. ``Validator.valid`` and the checked native encoder vouch for a record only
when the checker tree finds nothing, and the encoder's bytes are fastavro's.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc
from stdnum.exceptions import InvalidComponent
from stdnum.exceptions import ValidationError as StdnumError

from syncbus.core.catalog import Bus
from syncbus.core.codec import MAGIC, Codec
from syncbus.core.fake import RESOURCE_SCHEMAS, citizen_id, make_records, uscc_for
from syncbus.core.validation import (
    _citizen_id_ok,
    _uscc_ok,
    check_format,
    compile_validator,
    fast_format_check,
    vouched_birth_place,
)

try:
    from syncbus.core import _formats
except ImportError:  # the test below says why that is a failure here
    _formats = None  # type: ignore[assignment]
NOT_BUILT = "syncbus.core._formats is not built: run `make venv` (needs gcc and Python headers)"


def stdnum_valid(value: str) -> bool:
    """stdnum's verdict; its birth-place lookup raises KeyError on some codes (320599)."""
    try:
        return ric.is_valid(value)
    except LookupError:
        return False


REGIONS = ("320508", "320102", "110105", "440305", "320000", "999999", "320599", "542621")
ID_CHARS = "0123456789Xx -"
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXYIOZSVa -"


def mutate(value: str, rng: random.Random, alphabet: str) -> str:
    chars = list(value)
    for _ in range(rng.randrange(0, 3)):
        action = rng.randrange(3)
        if action == 0 and chars:
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        elif action == 1:
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(alphabet))
        elif chars:
            del chars[rng.randrange(len(chars))]
    return "".join(chars)


def stdnum_valid_but_for_the_place(value: str) -> bool:
    """stdnum's verdict on everything but the birth place, whose rule is ours
    (``citizen_ids``: stdnum wants the code in force in the birth year itself)."""
    try:
        ric.validate(value)
    except InvalidComponent:
        return ric.get_birth_date(value) is not None  # raises on an impossible date
    except (LookupError, StdnumError):
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**32), region=st.sampled_from(REGIONS),
       born=st.dates(dt.date(1900, 1, 1), dt.date(2025, 12, 31)))
def test_citizen_id_fast_check_agrees_with_the_full_check(
    seed: int, region: str, born: dt.date
) -> None:
    rng = random.Random(seed)
    good = citizen_id(region, born, rng)
    for value in (good, mutate(good, rng, ID_CHARS), good[:-1] + rng.choice(ID_CHARS)):
        accepted = check_format("citizen_id", value) is None
        if _citizen_id_ok(value):
            assert accepted, value  # the fast check vouches only for what the full one accepts
        if stdnum_valid(value) and value[6:14] <= dt.date.today().strftime("%Y%m%d"):
            assert accepted, value  # wider than stdnum's, but for births in the future
        if accepted:
            assert stdnum_valid_but_for_the_place(value), value


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**32), region=st.sampled_from(REGIONS))
def test_uscc_fast_check_agrees_with_stdnum(seed: int, region: str) -> None:
    rng = random.Random(seed)
    good = uscc_for(region, rng)
    assert _uscc_ok(good)
    for value in (good, mutate(good, rng, USCC_CHARS), good[:-1] + rng.choice(USCC_CHARS)):
        if _uscc_ok(value):
            assert uscc.is_valid(value), value
        assert (check_format("uscc", value) is None) == uscc.is_valid(value), value


def test_fast_checks_accept_the_canonical_forms_stdnum_accepts() -> None:
    rng = random.Random(5)
    ids = [citizen_id("110105", dt.date(1990, 1, 1) + dt.timedelta(days=i), rng)
           for i in range(300)]
    ids += [citizen_id("320508", dt.date(2013, 1, 1) + dt.timedelta(days=i), rng)
            for i in range(300)]  # 姑苏区 exists since 2012
    assert all(ric.is_valid(v) for v in ids)
    assert all(_citizen_id_ok(v) for v in ids)
    assert _citizen_id_ok("11010519491231002X")
    assert not _citizen_id_ok("11010519491231002x") and ric.is_valid("11010519491231002x")
    assert check_format("citizen_id", "11010519491231002x") is None  # the slow path says yes
    feb30 = "11010519490230002" + ric.calc_check_digit("110105194902300020")
    assert not _citizen_id_ok(feb30)
    assert "impossible birth date" in (check_format("citizen_id", feb30) or "")
    no_county = "32059919900101002" + ric.calc_check_digit("320599199001010020")
    with pytest.raises(KeyError):  # stdnum's own lookup fails on this code ...
        ric.is_valid(no_county)
    # ... and the check names the region instead of crashing the stream
    assert "region 320599 is not" in (check_format("citizen_id", no_county) or "")


def _broken(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One plausible mistake: a wrong type, a missing or unknown field, a bad code."""
    out = dict(record)
    name = rng.choice(sorted(out))
    action = rng.randrange(6)
    if action == 0:
        out[name] = rng.choice([None, 1, 1.5, "x", True, b"x", Decimal(1), dt.date(2020, 1, 1),
                                2**40, {}, ("a", 1)])
    elif action == 1:
        del out[name]
    elif action == 2:
        out["unexpected"] = 1
    elif action == 3 and isinstance(out[name], str):
        out[name] = mutate(out[name], rng, "0123456789X")
    elif action == 4 and isinstance(out[name], dict):
        inner = dict(out[name])
        inner[rng.choice(sorted(inner))] = "bad"
        out[name] = inner
    elif action == 5 and isinstance(out[name], str):
        out[name] = out[name].lower()
    return out


@pytest.mark.parametrize("name", RESOURCE_SCHEMAS)
def test_valid_only_when_the_tree_finds_nothing(bus: Bus, name: str) -> None:
    validator = compile_validator(bus.schemas.latest(name))
    rng = random.Random(name)
    vouched = 0
    for record in make_records(name, 40, seed=3):
        assert validator.valid(record)
        for _ in range(15):
            broken = _broken(record, rng)
            slow: list[Any] = []
            validator._check(broken, "", slow)
            if validator.valid(broken):
                vouched += 1
                assert slow == [], (broken, slow)
            assert (validator.errors(broken) == []) == (slow == [])
    assert vouched > 0  # some mutations keep the record valid (e.g. a nullable set to None)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32), region=st.sampled_from(REGIONS),
       born=st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)), noise=st.text(max_size=20))
def test_the_c_format_checks_answer_as_the_python_ones(
    seed: int, region: str, born: dt.date, noise: str
) -> None:
    assert _formats is not None, NOT_BUILT
    citizen_ok, uscc_ok = _formats.CitizenIdCheck(vouched_birth_place), _formats.uscc_ok
    rng = random.Random(seed)
    ids = [citizen_id(region, born, rng) for _ in range(3)]
    ids += [mutate(v, rng, ID_CHARS) for v in ids] + [v[:-1] + rng.choice(ID_CHARS) for v in ids]
    ids += [ids[0][:6] + f"{born.year:04d}{rng.randrange(100):02d}{rng.randrange(100):02d}"
            + ids[0][14:], ids[0][:17] + "x", noise, noise[:18].ljust(18, "1"), "１" * 18]
    codes = [uscc_for(region, rng) for _ in range(3)]
    codes += [mutate(v, rng, USCC_CHARS) for v in codes]
    codes += [v[:-1] + rng.choice(USCC_CHARS) for v in codes]
    codes += [codes[0].lower(), noise, noise[:18].ljust(18, "A"), "Ａ" * 18]
    for value in ids:
        assert citizen_ok(value) == _citizen_id_ok(value), value
    for value in codes:
        assert uscc_ok(value) == _uscc_ok(value), value
    assert citizen_ok("11010519491231002X") and uscc_ok(codes[0])  # valid ones are valid
    for other in (None, 1, b"110105194912310029", ["x"]):
        assert not citizen_ok(other) and not uscc_ok(other)


@pytest.mark.parametrize("name", RESOURCE_SCHEMAS)
def test_the_checked_encoder_vouches_only_for_valid_records(bus: Bus, name: str) -> None:
    """Bytes from the checked encoder mean "valid": never for a record the tree faults,
    and always fastavro's bytes (through the codec's reference path)."""
    domain = bus.schemas.latest(name)
    validator = compile_validator(domain)
    codec = Codec()
    fp = codec.register(domain)
    checked = codec.checked_encoder(fp, fast_format_check)
    assert checked is not None, "the native codec should compile every shipped schema"
    reference = Codec()
    reference._encoders.clear()  # fastavro for everything
    reference.register(domain)
    reference._encoders[fp] = None
    rng = random.Random(name)
    vouched = refused = 0
    for record in make_records(name, 40, seed=5):
        assert checked(record) == reference.encode(fp, record)
        for _ in range(15):
            broken = _broken(record, rng)
            try:
                data = checked(broken)
            except Exception:
                refused += 1
                continue
            vouched += 1
            slow: list[Any] = []
            validator._check(broken, "", slow)
            assert slow == [], (broken, slow)
            assert data == reference.encode(fp, broken) and data.startswith(MAGIC + fp)
    assert vouched > 0 and refused > 0
