"""Checks on the raw topics a worker consumes, before Faust starts."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from syncbus.connection import Connection


def raw_partitions(connection: Connection, raw_topics: list[str]) -> int:
    """Their common partition count; Faust co-partitions them with the sequence table."""
    metadata = AdminClient(connection.confluent()).list_topics(timeout=30).topics
    counts = {}
    for topic in raw_topics:
        if topic not in metadata:
            raise RuntimeError(f"raw topic {topic} does not exist: run `syncbus apply` first")
        counts[topic] = len(metadata[topic].partitions)
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{t}={n}" for t, n in sorted(counts.items()))
        raise RuntimeError(f"raw topics must have equal partition counts ({detail})")
    return next(iter(counts.values()))
