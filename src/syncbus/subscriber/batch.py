"""One consumed batch made ready for the handler: decoded, gap-checked, deduplicated.

Each piece of work is done once per message and once per batch where it can be:
unknown writer fingerprints trigger at most one read of ``syncbus.schemas``, the
dedupe store is asked once for all ids. Gap checking sees every decoded message,
duplicates included, so state that lags the stream after a crash never reports a
gap that is not there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Message

from syncbus.core.codec import Codec, DecodeError, NotSingleObjectEncoded, peek_fingerprint
from syncbus.subscriber.event import Event, build_event, header_map
from syncbus.subscriber.gaps import Gap, GapChecker
from syncbus.subscriber.metrics import SubscriberMetrics
from syncbus.subscriber.schemas import SchemaResolver
from syncbus.subscriber.store import SqlStore


@dataclass(slots=True)
class Item:
    """A message of the batch and what became of it before the handler."""

    message: Message
    event: Event | None = None
    error: Exception | None = None
    duplicate: bool = False


class BatchPreparer:
    def __init__(
        self,
        subscriber_id: str,
        codec: Codec,
        resolver: SchemaResolver,
        topics: Mapping[str, str],
        reader_fps: Mapping[str, bytes],
        store: SqlStore,
        gaps: GapChecker,
        metrics: SubscriberMetrics,
        on_gap: Callable[[Gap], None] | None,
    ) -> None:
        self.subscriber_id = subscriber_id
        self.codec, self.resolver, self.topics, self.reader_fps = (
            codec,
            resolver,
            topics,
            reader_fps,
        )
        self.store, self.gaps, self.metrics, self.on_gap = store, gaps, metrics, on_gap
        self.check_seen = True

    def prepare(self, messages: Sequence[Message]) -> list[Item]:
        self.resolver.ensure(self._fingerprints(messages))
        items = [self._decode(message) for message in messages]
        events = [item.event for item in items if item.event is not None]
        for event in events:
            self._check_gap(event)
        seen = self.store.seen(e.event_id for e in events) if self.check_seen else set()
        received = time.time()
        for item in items:
            if item.event is None:
                continue
            event = item.event
            if event.event_id in seen:
                item.duplicate = True
                self.metrics.duplicates.labels(self.subscriber_id, event.resource).inc()
            else:
                seen.add(event.event_id)  # a second copy later in this batch is a duplicate
                self._observe_hops(event, received)
        return items

    @staticmethod
    def _fingerprints(messages: Sequence[Message]) -> set[bytes]:
        found = set()
        for message in messages:
            try:
                found.add(peek_fingerprint(message.value() or b""))
            except NotSingleObjectEncoded:
                continue  # dead-lettered by _decode
        return found

    def _decode(self, message: Message) -> Item:
        topic = message.topic() or ""
        resource = self.topics[topic]
        try:
            record, writer_fp = self.codec.decode(
                message.value() or b"", self.reader_fps.get(resource)
            )
            event = build_event(
                record,
                resource=resource,
                topic=topic,
                partition=message.partition() or 0,
                offset=message.offset() or 0,
                message_key=message.key(),
                headers=header_map(message.headers()),
                writer_fingerprint=writer_fp,
            )
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            return Item(message, error=exc)
        return Item(message, event=event)

    def _check_gap(self, event: Event) -> None:
        gap = self.gaps.observe(event.resource, event.source_partition, event.delivery_sequence)
        if gap is None:
            return
        self.metrics.gaps.labels(self.subscriber_id, event.resource).inc()
        self.metrics.missing.labels(self.subscriber_id, event.resource).inc(gap.missing)
        if self.on_gap is not None:
            self.on_gap(gap)

    def _observe_hops(self, event: Event, received: float) -> None:
        hop = self.metrics.hop
        labels = (self.subscriber_id, event.resource)
        published = event.published_at.timestamp()
        hop.labels(*labels, "published").observe(
            max(0.0, published - event.occurred_at.timestamp())
        )
        if event.routed_at is not None:
            routed = event.routed_at.timestamp()
            hop.labels(*labels, "routed").observe(max(0.0, routed - published))
            hop.labels(*labels, "received").observe(max(0.0, received - routed))
