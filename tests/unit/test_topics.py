from __future__ import annotations

import pytest

from syncbus.core import topics


def test_topic_names() -> None:
    assert topics.raw_topic("population.resident") == "raw.population.resident"
    share = topics.share_topic("city.suzhou", "population.resident")
    assert share == "share.city.suzhou.population.resident"
    assert topics.parse_share_topic(share) == ("city.suzhou", "population.resident")
    known = frozenset({"population.resident"})
    assert topics.parse_share_topic(share, known) == ("city.suzhou", "population.resident")
    with pytest.raises(ValueError):
        topics.parse_share_topic("raw.population.resident")


def test_headers_are_utf8_bytes() -> None:
    assert topics.H_EVENT_ID == "syncbus-event-id"
    assert topics.encode_header(42) == b"42"
    assert topics.encode_header("姑苏") == "姑苏".encode()
    assert topics.decode_header(b"320508") == "320508"
    assert topics.decode_header(None) is None
