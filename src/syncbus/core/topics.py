"""Topic and header names: the one place every adapter takes them from.

Header values are UTF-8 bytes (``encode_header``); numbers and timestamps
(micros since the epoch, UTC) are written in decimal.

Each fact of an event has one home on a share topic: the Avro envelope (id,
source, resource, op, key, region, sequences, timestamps, subscriber, writer
schema). The router reads no header of a raw event, forwards none to a
subscriber, and adds only what the body does not carry: ``H_SOURCE_PARTITION``
(the raw partition that a delivery sequence runs on) and ``H_SOURCE_OFFSET`` (the
raw offset, the key's version); a resync adds ``H_RESYNC``, and its begin and end
markers carry the ``H_MARKER`` set (docs/resync-contract.md). The other ``H_*``
names below are the publisher's on raw topics; nothing on the bus reads them.

API:
    raw_topic(resource_id) -> "raw.<resource>"
    share_topic(subscriber_id, resource_id) -> "share.<subscriber>.<resource>"
    parse_share_topic(topic) -> (subscriber_id, resource_id)
    DLQ_TOPIC, QUARANTINE_TOPIC, AUDIT_TOPIC, POLICY_TOPIC, SCHEMAS_TOPIC, RESYNC_TOPIC
    H_* header names; encode_header(value) -> bytes; decode_header(raw) -> str
"""

from __future__ import annotations

RAW_PREFIX = "raw."
SHARE_PREFIX = "share."

DLQ_TOPIC = "syncbus.dlq"
# every dead-lettered raw event as it was read (its body may hold personal data in
# clear): only the admin principal may read it; ``syncbus dlq redrive`` replays it.
# Compacted, keyed by origin ``<topic>/<partition>/<offset>``: a redriven event is
# tombstoned, so a second redrive does not replay it again.
QUARANTINE_TOPIC = "syncbus.quarantine"
AUDIT_TOPIC = "syncbus.audit"
POLICY_TOPIC = "syncbus.policy"
SCHEMAS_TOPIC = "syncbus.schemas"
# the router's resync jobs and their progress per raw partition (compacted; router only)
RESYNC_TOPIC = "syncbus.resync"

H_EVENT_ID = "syncbus-event-id"
H_SOURCE = "syncbus-source"
H_RESOURCE = "syncbus-resource"
H_REGION = "syncbus-region"
H_OLD_REGION = "syncbus-old-region"
H_SEQUENCE = "syncbus-sequence"
H_OP = "syncbus-op"
H_OCCURRED_AT = "syncbus-occurred-at"
H_PUBLISHED_AT = "syncbus-published-at"
H_FINGERPRINT = "syncbus-fingerprint"

# on every delivery on a share topic: the delivery sequence (in the body) runs per
# (subscriber, resource, source partition), and this names the partition
H_SOURCE_PARTITION = "syncbus-source-partition"

# issue #17 (docs/resync-contract.md): the key's version on every delivery, and what
# marks a resync's deliveries and its begin and end markers
H_SOURCE_OFFSET = "syncbus-source-offset"  # raw offset of the event a delivery comes from
H_RESYNC = "syncbus-resync"  # resync id (32 hex) on every resync delivery and marker
H_MARKER = "syncbus-marker"  # b"begin" | b"end", on markers only
H_RESYNC_KIND = "syncbus-resync-kind"  # b"delta" | b"full", on markers
H_WATERMARK = "syncbus-watermark"  # on markers: JSON {"<raw partition>": <end offset>}
# no longer written by the router (each is in the body); subscribers of older
# deliveries still read the last two when the body lacks them
H_SUBSCRIBER = "syncbus-subscriber"
H_GRANT = "syncbus-grant"
H_DELIVERY_SEQUENCE = "syncbus-delivery-sequence"
H_ROUTED_AT = "syncbus-routed-at"

# dead-letter headers: where the bad message came from and why it was refused
H_DLQ_TOPIC = "syncbus-dlq-topic"
H_DLQ_PARTITION = "syncbus-dlq-partition"
H_DLQ_OFFSET = "syncbus-dlq-offset"
H_DLQ_ERROR_CLASS = "syncbus-dlq-error-class"
H_DLQ_ERROR = "syncbus-dlq-error"
H_DLQ_TIME = "syncbus-dlq-time"
H_DLQ_EVENT_ID = "syncbus-dlq-event-id"  # a refused delivery's event
H_DLQ_KEY = "syncbus-dlq-key"  # quarantine only: the raw record's key, for replay


def raw_topic(resource_id: str) -> str:
    """The topic the owner publishes a resource to."""
    return f"{RAW_PREFIX}{resource_id}"


def share_topic(subscriber_id: str, resource_id: str) -> str:
    """The topic holding exactly what one subscriber may see of one resource."""
    return f"{SHARE_PREFIX}{subscriber_id}.{resource_id}"


def subscriber_dlq_topic(subscriber_id: str) -> str:
    """A subscriber's own dead letters, under its ``share.<itself>.`` prefix: the only
    one its ACLs open. ``apply`` creates it, so a subscriber needs no create right."""
    return f"{SHARE_PREFIX}{subscriber_id}.dlq"


def parse_share_topic(topic: str, resource_ids: frozenset[str] | None = None) -> tuple[str, str]:
    """Split a share topic into (subscriber, resource).

    Ids contain dots, so the split is ambiguous in general; resource ids are two
    dotted words (``population.resident``), which decides it, unless
    ``resource_ids`` is given, which is then matched as a suffix.
    """
    if not topic.startswith(SHARE_PREFIX):
        raise ValueError(f"not a share topic: {topic!r}")
    rest = topic[len(SHARE_PREFIX) :]
    if resource_ids is not None:
        for resource in resource_ids:
            if rest.endswith("." + resource):
                return rest[: -len(resource) - 1], resource
        raise ValueError(f"no known resource in share topic {topic!r}")
    parts = rest.split(".")
    if len(parts) < 3:
        raise ValueError(f"not a share topic: {topic!r}")
    return ".".join(parts[:-2]), ".".join(parts[-2:])


def encode_header(value: str | int | bytes) -> bytes:
    """Header value as UTF-8 bytes; ints in decimal."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def decode_header(raw: bytes | str | None) -> str | None:
    """Header value back to str (``None`` stays ``None``)."""
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8")
