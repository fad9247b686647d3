"""Taking what a librdkafka consumer holds without waiting for a batch to fill.

``Consumer.consume(most, timeout)`` returns when ``most`` messages arrived or the
whole timeout passed. Whenever fewer than ``most`` are coming, that holds every
message taken for the whole timeout: at a moderate rate a subscriber's events
waited up to half a second for their batch to fill, and reading the schemas topic
(far fewer than a batch) cost a subscriber's first event 50 ms per read.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer


def take_ready(consumer: Consumer, most: int, timeout: float) -> list[Any]:
    """What the consumer holds now, up to ``most``; when it holds nothing, the first
    message to come within ``timeout`` and whatever arrived with it."""
    messages = consumer.consume(most, 0)
    if not messages:
        messages = consumer.consume(1, timeout)
        if messages and most > 1:
            messages += consumer.consume(most - 1, 0)
    return messages
