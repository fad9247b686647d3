"""One consumed batch made ready for the handler: decoded, gap-checked, deduplicated,
version-checked, markers set apart.

Each piece of work is done once per message and once per batch where it can be:
unknown writer fingerprints trigger at most one read of ``syncbus.schemas``, the
dedupe store is asked once for all ids and once per resource for the held versions.
Gap checking sees every decoded live message, duplicates included, so state that
lags the stream after a crash never reports a gap that is not there; resync
deliveries are not fed to it (their delivery sequence means nothing).

Versions (``event.newer``): a delivery whose version is not newer than the one held
for its (resource, key) is ``stale`` and is not handed on. Within a batch each
delivery is judged against the previous one of its key, as if that one is handled.
A replay (``check_seen`` off) judges only against what it re-delivers itself, from
batch to batch (the versions held from before it are ignored, as its ids are).

Markers (``syncbus-marker`` header) are never decoded as events: a well-formed one
becomes ``Item.marker``; a malformed one is ``skipped`` with its reason, logged,
never dead-lettered (the contract: a marker is not an event).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Message

from syncbus.core.codec import Codec, DecodeError, NotSingleObjectEncoded, peek_fingerprint
from syncbus.subscriber.event import (
    BadMarker,
    Event,
    Marker,
    build_event,
    header_map,
    is_marker,
    newer,
    parse_marker,
)
from syncbus.subscriber.gaps import Gap, GapChecker
from syncbus.subscriber.metrics import SubscriberMetrics
from syncbus.subscriber.schemas import SchemaResolver
from syncbus.subscriber.store import SqlStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Item:
    """A message of the batch and what became of it before the handler."""

    message: Message
    event: Event | None = None
    error: Exception | None = None
    duplicate: bool = False
    stale: bool = False  # its version is not newer than the key's: not handed on
    marker: Marker | None = None  # a resync marker, never an event
    skipped: str | None = None  # why a message is neither handled nor dead-lettered

    @property
    def for_handler(self) -> bool:
        """An event the handler is to get: decoded, not a duplicate, not stale."""
        return self.event is not None and not (self.duplicate or self.stale)


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
        # a replay's versions handled so far, per key (``handled``); each batch judges
        # against a copy, so deliveries rewound unhandled (the caller left early)
        # are judged again as they were
        self._replay_held: dict[tuple[str, str], int] = {}

    def prepare(self, messages: Sequence[Message]) -> list[Item]:
        self.resolver.ensure(self._fingerprints(messages))
        items = [self._decode(message) for message in messages]
        events = [item.event for item in items if item.event is not None]
        for event in events:
            if not event.from_resync:
                self._check_gap(event)
        seen = self.store.seen(e.event_id for e in events) if self.check_seen else set()
        held = (
            self.store.versions((e.resource, str(e.key)) for e in events if e.versioned)
            if self.check_seen
            else dict(self._replay_held)
        )
        received = time.time()
        for item in items:
            if item.event is None:
                continue
            event = item.event
            if event.event_id in seen:
                item.duplicate = True
                self.metrics.duplicates.labels(self.subscriber_id, event.resource).inc()
            elif not _fresh(event, held):
                item.stale = True
            else:
                seen.add(event.event_id)  # a second copy later in this batch is a duplicate
                self._observe_hops(event, received)
        return items

    def handled(self, event: Event) -> None:
        """The handler took ``event``: a replay holds its version from now on (outside a
        replay the store holds it: ``SqlStore.hold_version``)."""
        if not self.check_seen and event.versioned:
            assert event.version is not None and event.key is not None
            slot = (event.resource, event.key)
            self._replay_held[slot] = max(event.version, self._replay_held.get(slot, -1))

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
        headers = header_map(message.headers())
        if is_marker(headers):
            return _marker_item(message, headers, resource)
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
                headers=headers,
                writer_fingerprint=writer_fp,
            )
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            return Item(message, error=exc)
        return Item(message, event=event)

    def _check_gap(self, event: Event) -> None:
        """Live deliveries only: ``prepare`` keeps resync deliveries away from it."""
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


def _fresh(event: Event, held: dict[tuple[str, str], int]) -> bool:
    """Whether ``event`` passes the version rule against ``held`` (and, if it does,
    becomes what is held for the rest of the batch)."""
    if not event.versioned:
        return True  # no version (older router) or not state: applied as before
    assert event.version is not None and event.key is not None
    slot = (event.resource, event.key)
    if not newer(event.version, held.get(slot), event.from_resync):
        return False
    held[slot] = event.version
    return True


def _marker_item(message: Message, headers: dict[str, str], resource: str) -> Item:
    try:
        marker = parse_marker(
            headers,
            resource=resource,
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
        )
    except BadMarker as exc:
        log.warning("skipped: %s", exc)
        return Item(message, skipped=str(exc))
    return Item(message, marker=marker)
