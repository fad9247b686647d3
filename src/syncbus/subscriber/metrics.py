"""Every metric the Subscriber SDK and the sink export, declared once.

The registry is passed in so a host application, a test or two subscribers in one
process each get their own (``None``: a private one, not exported). Latencies:
end to end from the change in the source system (``occurred_at``) to the
handler's success, and per hop: ``published`` (occurred -> publisher's send),
``routed`` (published -> router's delivery), ``received`` (routed -> this subscriber decoded it).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from syncbus.latency_buckets import LATENCY_BUCKETS

HOPS = ("published", "routed", "received")


class SubscriberMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # None: a private registry, so two subscribers in one process never collide
        registry = registry if registry is not None else CollectorRegistry()
        labels = ("subscriber", "resource")
        self.events = Counter(
            "syncbus_subscriber_events_total",
            "Events handled successfully.",
            labels,
            registry=registry,
        )
        self.duplicates = Counter(
            "syncbus_subscriber_duplicates_total",
            "Redelivered events skipped because their id was already handled.",
            labels,
            registry=registry,
        )
        self.gaps = Counter(
            "syncbus_subscriber_gaps_total",
            "Holes seen in the router's delivery sequence.",
            labels,
            registry=registry,
        )
        self.missing = Counter(
            "syncbus_subscriber_missing_events_total",
            "Deliveries missing, summed over all gaps.",
            labels,
            registry=registry,
        )
        self.handler_errors = Counter(
            "syncbus_subscriber_handler_errors_total",
            "Handler attempts that raised (each retry counts).",
            labels,
            registry=registry,
        )
        self.dead_letters = Counter(
            "syncbus_subscriber_dead_letters_total",
            "Messages sent to the subscriber's dead-letter topic, by reason.",
            (*labels, "reason"),
            registry=registry,
        )
        self.end_to_end = Histogram(
            "syncbus_subscriber_end_to_end_seconds",
            "From occurred_at in the source system to the handler's success.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.hop = Histogram(
            "syncbus_subscriber_hop_seconds",
            "Latency of each hop: published, routed, received.",
            (*labels, "hop"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.sink_rows = Counter(
            "syncbus_sink_rows_total",
            "Rows the sink wrote, by action: upsert, delete, resync_drop (rows a full "
            "resync did not resend).",
            (*labels, "action"),
            registry=registry,
        )
