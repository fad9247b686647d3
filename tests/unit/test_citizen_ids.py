"""Which citizen IDs are valid: real-shaped numbers through every path that checks one.

A region code is possible when it was in force at some time between the holder's
birth year and today (``syncbus.core.citizen_ids``). The Python check, the C fast
check of ``_formats`` and the router's C byte path must all agree with it: a number
of a Xuanwu resident born in 1960 (the code exists since 1983) is valid; a Baixia
number (retired 2013) for someone born in 2015 is not.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from datetime import UTC, datetime

import pytest
from stdnum import numdb
from stdnum.cn import ric

from syncbus.admin.names import TopicNames
from syncbus.core.catalog import Bus
from syncbus.core.citizen_ids import birth_place_ok, citizen_id_problem, vouched_birth_place
from syncbus.core.codec import Codec
from syncbus.core.fake import make_record
from syncbus.core.validation import _citizen_id_ok, check_format, compile_validator
from syncbus.core.views import ViewCache
from syncbus.router.compiled import CompiledPolicy
from syncbus.router.engine import RawMessage, RoutingEngine
from syncbus.router.secrets import TokenSecrets

try:
    from syncbus.core import _formats
except ImportError:  # the fixture below says why that is a failure here
    _formats = None  # type: ignore[assignment]


def number(region: str, born: str, order: str = "123") -> str:
    body = f"{region}{born}{order}"
    return body + ric.calc_check_digit(body + "0")


def wrong_check_digit(value: str) -> str:
    return value[:-1] + ("1" if value[-1] == "0" else "0")


# (number, why it is valid)
VALID = [
    ("11010519491231002X", "GB 11643's own example (Beijing Chaoyang, 1949)"),
    ("440524188001010014", "GB 11643's own example (Chaoyang county, born 1880)"),
    (number("320102", "19500301"), "Xuanwu 320102 (since 1983), born 1950"),
    (number("320102", "19600615"), "Xuanwu, born 1960"),
    (number("320102", "19781130"), "Xuanwu, born 1978"),
    (number("320102", "19900101"), "Xuanwu, born 1990"),
    (number("320508", "19700505"), "Gusu 320508 (since 2012), born 1970"),
    (number("320508", "20110101"), "Gusu, born the year before it existed"),
    (number("320205", "19851010"), "Xishan 320205 (since 2000), born 1985"),
    (number("320103", "19700101"), "Baixia 320103 (1983-2013), born 1970"),
    (number("320103", "20130708"), "Baixia, born in its last year"),
]

# (number, the words its reason must contain)
INVALID = [
    (number("320103", "20150101"), "region 320103 was retired in 2013"),
    (number("999999", "19800101"), "region 999999 is not a GB/T 2260"),
    (number("320599", "19800101"), "region 320599 is not a GB/T 2260"),
    (wrong_check_digit(number("320102", "19600615")), "check digit is wrong"),
    (number("320102", "19600230"), "impossible birth date (19600230)"),
    (number("320102", "19601301"), "impossible birth date (19601301)"),
    (number("320102", "20990101"), "birth date is in the future"),
    (number("320102", (dt.date.today() + dt.timedelta(days=2)).strftime("%Y%m%d")),
     "birth date is in the future"),
    ("3201021960061512", "must be 18 characters (got 16)"),
    ("32010219600615A23X", "must be 17 digits and a check digit"),
]


@pytest.fixture
def c_formats() -> object:
    assert _formats is not None, (
        "syncbus.core._formats is not built: run `make venv` (needs gcc and Python headers)")
    return _formats


@pytest.mark.parametrize(("value", "why"), VALID)
def test_valid_numbers_pass_the_python_and_c_checks(value: str, why: str, c_formats) -> None:
    assert citizen_id_problem(value) is None, why
    assert check_format("citizen_id", value) is None, why
    fast = c_formats.CitizenIdCheck(vouched_birth_place)  # type: ignore[attr-defined]
    assert fast(value) is True, why
    assert _citizen_id_ok(value) is True, why


@pytest.mark.parametrize(("value", "words"), INVALID)
def test_invalid_numbers_are_refused_with_their_own_reason(
    value: str, words: str, c_formats
) -> None:
    reason = check_format("citizen_id", value)
    assert reason is not None and words in reason, (value, reason)
    assert citizen_id_problem(value) == reason
    assert value not in reason  # the reason names the wrong part, not the whole number
    fast = c_formats.CitizenIdCheck(vouched_birth_place)  # type: ignore[attr-defined]
    assert fast(value) is False
    assert _citizen_id_ok(value) is False


def test_the_region_rule_spans_birth_year_to_today() -> None:
    assert birth_place_ok("320508", "1950")  # created 2012: in force since, so possible
    assert birth_place_ok("320103", "2013") and not birth_place_ok("320103", "2014")
    assert not birth_place_ok("999999", "1990") and not birth_place_ok("3201", "1990")
    this_year = str(dt.date.today().year)
    assert birth_place_ok("320102", this_year)
    # the C paths may not vouch for this year's births: the slow path checks the date
    assert not vouched_birth_place("320102", this_year)
    assert vouched_birth_place("320102", str(dt.date.today().year - 1))


def test_born_earlier_this_year_is_valid_through_the_slow_path() -> None:
    today = dt.date.today()
    if today.timetuple().tm_yday == 1:
        pytest.skip("no earlier day in this year")
    value = number("320102", (today - dt.timedelta(days=1)).strftime("%Y%m%d"))
    assert check_format("citizen_id", value) is None
    assert not _citizen_id_ok(value)  # not vouched by the fast check: decided slowly


def _engines(bus: Bus) -> tuple[RoutingEngine, RoutingEngine]:
    secrets = TokenSecrets({s: f"secret-{s}" for s in bus.subscribers})
    dlq_secret = os.urandom(32)
    engines = []
    for byte_path in (True, False):
        codec = Codec()
        policy = CompiledPolicy(bus, secrets, codec, ViewCache(), TopicNames(""), dlq_secret)
        engines.append(RoutingEngine(policy, codec, TopicNames(""), 10**9, byte_path=byte_path))
    return engines[0], engines[1]


def _resident_event(bus: Bus, value: str, n: int) -> RawMessage:
    resource = bus.resource("population.resident")
    codec = Codec()
    fp = codec.register(bus.schemas.event_schema(resource.schema, None))
    region = value[:6]
    born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    after = make_record(resource.schema, region=region, seed=n)
    after.update(id_number=value, birth_date=born, region=region,
                 registered_on=max(after["registered_on"], born))
    event = {
        "event_id": str(uuid.uuid4()), "source": resource.owner,
        "resource": "population.resident", "op": "CREATE", "key": value, "region": region,
        "sequence": n + 1, "occurred_at": 1_700_000_000_000_000 + n,
        "published_at": 1_700_000_000_000_100 + n, "before": None, "after": after,
    }
    raw = TopicNames("").raw("population.resident")
    return RawMessage(raw, 0, n, value.encode(), codec.encode(fp, event), [])


def test_the_router_byte_path_and_python_path_agree_on_real_numbers(bus: Bus) -> None:
    """Xuanwu residents born 1950-1990 reach Nanjing, the province and Xuanwu on both
    paths; a Baixia number of someone born in 2015 is dead-lettered on both."""
    fast, slow = _engines(bus)
    rng = random.Random(5)
    good = [number("320102", f"{y}0{rng.randrange(1, 10)}1{rng.randrange(0, 9)}")
            for y in (1950, 1960, 1978, 1990)]
    good += [number("320508", "19700505"), number("320205", "19851010")]
    bad = [number("320103", "20150101")]
    batch = [_resident_event(bus, v, n) for n, v in enumerate(good + bad)]
    now = datetime.now(UTC)
    got = fast.process(batch, now, lambda _: 0)
    expected = slow.process(batch, now, lambda _: 0)
    assert got.deliveries == expected.deliveries and got.dead == expected.dead
    assert len(got.dead) == 1
    delivered_to = {topic for topic, *_ in got.deliveries}
    assert {"share.city.nanjing.population.resident", "share.district.xuanwu.population.resident",
            "share.province.jiangsu.population.resident",
            "share.city.suzhou.population.resident"} <= delivered_to
    route = fast._byte_routes[TopicNames("").raw("population.resident")]
    assert route is not None and route.routed == len(good)  # all valid ones on the byte path


def test_a_validator_with_citizen_ids_reads_the_region_database_when_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stdnum reads its region database on first use; the router's first event waited
    for it (30-160 ms), so compiling a validator that checks citizen IDs reads it."""
    monkeypatch.setattr(numdb, "_open_databases", {})
    compile_validator({"type": "record", "name": "NoIds", "fields": [
        {"name": "name", "type": "string"}]})
    assert "cn/loc" not in numdb._open_databases
    compile_validator({"type": "record", "name": "WithIds", "fields": [
        {"name": "id_number", "type": "string", "format": "citizen_id"}]})
    assert "cn/loc" in numdb._open_databases
