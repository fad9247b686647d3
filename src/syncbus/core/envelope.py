"""The change-event envelope, as code so every adapter has it without reading files.

``schemas/envelope/change_event.v1.avsc`` is the same schema for readers of the
contracts; ``load_schemas`` reports a problem when the two differ, so they cannot
drift. ``before``/``after`` name the ``Placeholder`` record, which
``syncbus.core.schemas.event_schema`` replaces with a resource's domain record.

Decoded types: ``occurred_at``, ``published_at`` and ``routed_at`` are
``timestamp-micros``; fastavro returns them as aware UTC ``datetime`` and accepts
either ``datetime`` or int micros when encoding. ``event_id`` is a str (uuid).
"""

from __future__ import annotations

from typing import Any

OPS = ("CREATE", "UPDATE", "DELETE", "SNAPSHOT", "HEARTBEAT")
ROUTER_FIELDS = ("subscriber", "delivery_sequence", "routed_at")

ENVELOPE: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEvent",
    "namespace": "syncbus",
    "doc": "One change of one entity in a source system. before/after are typed per resource by "
    "syncbus.core.schemas.event_schema, which replaces the Placeholder record with the "
    "resource's domain record.",
    "fields": [
        {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}, "grade": "L1"},
        {
            "name": "source",
            "type": "string",
            "grade": "L1",
            "doc": "id of the source department (streams/departments.yaml)",
        },
        {
            "name": "resource",
            "type": "string",
            "grade": "L1",
            "doc": "catalog resource id, e.g. population.resident",
        },
        {
            "name": "op",
            "type": {
                "type": "enum",
                "name": "Op",
                "symbols": ["CREATE", "UPDATE", "DELETE", "SNAPSHOT", "HEARTBEAT"],
            },
            "grade": "L1",
        },
        {
            "name": "key",
            "type": ["null", "string"],
            "default": None,
            "grade": "L3",
            "doc": "entity key; null only for HEARTBEAT",
        },
        {
            "name": "region",
            "type": ["null", "string"],
            "default": None,
            "grade": "L1",
            "doc": "GB/T 2260 region of the record (after, or before on DELETE)",
        },
        {
            "name": "sequence",
            "type": "long",
            "grade": "L1",
            "doc": "per (source, resource) sequence number, gap-free",
        },
        {
            "name": "occurred_at",
            "type": {"type": "long", "logicalType": "timestamp-micros"},
            "grade": "L1",
            "doc": "when the change happened in the source system",
        },
        {
            "name": "published_at",
            "type": {"type": "long", "logicalType": "timestamp-micros"},
            "grade": "L1",
        },
        {
            "name": "before",
            "type": ["null", {"type": "record", "name": "Placeholder", "fields": []}],
            "default": None,
        },
        {"name": "after", "type": ["null", "Placeholder"], "default": None},
        {
            "name": "subscriber",
            "type": ["null", "string"],
            "default": None,
            "grade": "L1",
            "doc": "set by the router on delivery",
        },
        {
            "name": "delivery_sequence",
            "type": ["null", "long"],
            "default": None,
            "grade": "L1",
            "doc": "per (subscriber, resource) sequence set by the router",
        },
        {
            "name": "routed_at",
            "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
            "default": None,
            "grade": "L1",
        },
    ],
}
