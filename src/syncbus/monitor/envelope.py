"""When a delivery's change happened and when it was routed, read from its envelope.

A share record carries these facts once, in its Avro envelope (``occurred_at``,
``routed_at``): the monitor decodes the records it samples with the writer schema
named by their fingerprint, found in ``syncbus.schemas`` like any reader finds it.
A record that does not decode is skipped, never fatal: the monitor keeps running.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.codec import Codec, DecodeError, peek_fingerprint
from syncbus.subscriber.schemas import SchemaResolver


class EnvelopeClock:
    """``latency(value, written_s)``: occurred_at to routed_at (else the record's time)."""

    def __init__(self, connection: Connection, names: TopicNames) -> None:
        self._codec = Codec()
        self._schemas = SchemaResolver(connection, self._codec, names.schemas)

    def close(self) -> None:
        self._schemas.close()

    def latency(self, value: bytes | None, written_s: float) -> float | None:
        if not value:
            return None
        try:
            fingerprint = peek_fingerprint(value)
            if self._schemas.ensure([fingerprint]):
                return None  # a writer syncbus.schemas does not hold (yet)
            record, _ = self._codec.decode(value)
        except (DecodeError, ValueError):
            return None
        occurred = _seconds(record.get("occurred_at"))
        if occurred is None:
            return None
        routed = _seconds(record.get("routed_at"))
        return max((routed if routed is not None else written_s) - occurred, 0.0)


def _seconds(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, int) and not isinstance(value, bool):
        return value / 1e6
    return None
