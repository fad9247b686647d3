from __future__ import annotations

import pytest

from syncbus.core.regions import covers, is_valid_region, region_name, scope_prefix


@pytest.mark.parametrize("code", ["320000", "320100", "320500", "320508", "320102", "110105"])
def test_real_codes_are_valid(code: str) -> None:
    assert is_valid_region(code)


@pytest.mark.parametrize("code", ["000000", "329999", "990000", "32050", "3205081", "abcdef", ""])
def test_bad_codes_are_invalid(code: str) -> None:
    assert not is_valid_region(code)


def test_names() -> None:
    assert region_name("320508") == "江苏省苏州市姑苏区"
    assert region_name("320000") == "江苏省"
    assert region_name("000000") == "全国"
    with pytest.raises(ValueError):
        region_name("329999")


@pytest.mark.parametrize(
    ("scope", "code", "expected"),
    [
        ("320000", "320508", True),
        ("320500", "320508", True),
        ("320508", "320508", True),
        ("320100", "320508", False),
        ("320102", "320106", False),
        ("320000", "110105", False),
        ("000000", "110105", True),
        ("", "320508", True),
        ("320500", "320100", False),
    ],
)
def test_covers(scope: str, code: str, expected: bool) -> None:
    assert covers(scope, code) is expected


def test_scope_prefix() -> None:
    assert scope_prefix("320000") == "32"
    assert scope_prefix("320100") == "3201"
    assert scope_prefix("000000") == ""
