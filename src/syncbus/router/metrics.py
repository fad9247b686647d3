"""The router's Prometheus metrics, declared once; the registry is passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from syncbus.latency_buckets import LATENCY_BUCKETS
from syncbus.router.engine import BatchOutput


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.events = Counter(
            "syncbus_router_events_total",
            "Raw events taken from raw topics, per resource and the path that routed them: "
            "byte (C) or python (declined by the byte path, bad, or a resource it can't take).",
            ["resource", "path"],
            registry=registry,
        )
        self.deliveries = Counter(
            "syncbus_router_deliveries_total",
            "Events delivered to a share topic, per grant.",
            ["grant"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "syncbus_router_dead_letters_total",
            "Events sent to the dead-letter topic.",
            ["error"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "syncbus_router_batch_seconds",
            "Time from taking a batch to the broker confirming all of its output.",
            buckets=LATENCY_BUCKETS,  # a batch at a moderate rate takes a few ms
            registry=registry,
        )
        self.batches_in_flight = Gauge(
            "syncbus_router_batches_in_flight",
            "Batches written and not yet confirmed by the broker (at most the pipeline depth).",
            registry=registry,
        )
        self.policy_updates = Counter(
            "syncbus_router_policy_updates_total",
            "Policy versions applied, or refused.",
            ["outcome"],
            registry=registry,
        )
        self.policy_age = Gauge(
            "syncbus_router_policy_loaded_timestamp_seconds",
            "When the policy in force was loaded.",
            registry=registry,
        )

    def observe(self, output: BatchOutput, seconds: float) -> None:
        """Once per batch: counters move by the batch's totals, not per event."""
        for (resource, path), n in output.paths.items():
            self.events.labels(resource, path).inc(n)
        for grant, n in output.delivered.items():
            self.deliveries.labels(grant).inc(n)
        for error, n in output.dead_by_error.items():
            self.dead_letters.labels(error).inc(n)
        self.batch_seconds.observe(seconds)
