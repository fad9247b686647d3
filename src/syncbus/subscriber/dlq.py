"""What happens to an event the handler cannot take, and to bytes that are no event.

A handler that raises is retried with exponential backoff; when the attempts are
spent, ``RetryPolicy.on_failure`` decides: ``dead_letter`` sends the original
message to the subscriber's own dead-letter topic (with where it came from and why)
and the stream goes on, ``stop`` raises ``HandlerFailed`` after committing only what
came before the event. Messages that cannot be decoded at all take the dead-letter
path whatever the policy: bad input never stops a stream. Dead letters are flushed
before any offset is committed, so no commit ever passes an event that went nowhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from syncbus.connection import Connection
from syncbus.core.topics import (
    H_DLQ_ERROR,
    H_DLQ_ERROR_CLASS,
    H_DLQ_OFFSET,
    H_DLQ_PARTITION,
    H_DLQ_TIME,
    H_DLQ_TOPIC,
    encode_header,
)

FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    on_failure: Literal["dead_letter", "stop"] = "dead_letter"

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1 (1 = no retry)")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("RetryPolicy needs 0 <= initial_backoff_s <= max_backoff_s")
        if self.on_failure not in ("dead_letter", "stop"):
            raise ValueError("RetryPolicy.on_failure is 'dead_letter' or 'stop'")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)))


class HandlerFailed(RuntimeError):
    """The handler kept failing on one event and the policy says stop; offsets stay
    before it, so the next run starts with this event."""

    def __init__(self, topic: str, partition: int, offset: int, event_id: str) -> None:
        super().__init__(
            f"handler failed on event {event_id} at {topic}[{partition}]@{offset}; stopped "
            "before it (fix the handler and restart, or use on_failure='dead_letter')"
        )
        self.topic, self.partition, self.offset, self.event_id = topic, partition, offset, event_id


class DeadLetters:
    """The subscriber's dead-letter producer. ``apply`` creates its topic; where it did not
    (an older bus, a test prefix), the first dead letter creates it."""

    def __init__(self, connection: Connection, topic: str, partitions: int = 1) -> None:
        self.connection = connection
        self.topic = topic
        self._partitions = partitions
        self._producer: Producer | None = None
        self._pending = 0
        self._failures: list[str] = []

    def send(self, message: Message, error: BaseException) -> None:
        if self._producer is None:
            self._ensure_topic()
            self._producer = Producer(self.connection.confluent(**{"enable.idempotence": True}))
        headers: list[tuple[str, str | bytes | None]] = list(_header_list(message))
        headers += [
            (H_DLQ_TOPIC, encode_header(message.topic() or "")),
            (H_DLQ_PARTITION, encode_header(message.partition() or 0)),
            (H_DLQ_OFFSET, encode_header(message.offset() or 0)),
            (H_DLQ_ERROR_CLASS, encode_header(type(error).__name__)),
            (H_DLQ_ERROR, encode_header(str(error)[:2000])),
            (H_DLQ_TIME, encode_header(time.time_ns() // 1000)),
        ]
        self._producer.produce(
            self.topic, message.value(), message.key(), headers=headers, on_delivery=self._delivered
        )
        self._pending += 1

    def flush(self) -> None:
        """Wait until every dead letter is on the broker; raises if one is not."""
        if self._producer is None or not self._pending:
            return
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left or self._failures:
            failures, self._failures = self._failures, []
            raise KafkaException(
                KafkaError(
                    KafkaError._TIMED_OUT if left else KafkaError._MSG_TIMED_OUT,
                    f"dead letters to {self.topic} not confirmed: {left} pending, "
                    f"failed: {'; '.join(failures[:3]) or 'none'}",
                )
            )
        self._pending = 0

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def _ensure_topic(self) -> None:
        admin = AdminClient(self.connection.confluent())
        future = admin.create_topics([NewTopic(self.topic, self._partitions, -1)])[self.topic]
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def _header_list(message: Message) -> list[tuple[str, str | bytes | None]]:
    found = message.headers() or []
    items = found.items() if isinstance(found, dict) else found
    return [(str(name), value) for name, value in items]
