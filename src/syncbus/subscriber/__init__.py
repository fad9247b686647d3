"""The Subscriber SDK: how city and district systems take their share of the bus.

``Subscriber`` reads ``share.<subscriber>.<resource>`` topics, resolves writer schemas
through ``syncbus.schemas``, removes duplicates by event id with a persistent store,
reports gaps in the router's delivery sequence, and commits offsets only after the
handler succeeded. It applies only newer versions of a key (issue #17), keeps resync
markers from the handler and tells the application when a resync begins and is
complete (``on_resync_begin`` / ``on_resync_end`` with a ``ResyncInfo``). Everything
here is an adapter: the rules it applies come from ``syncbus.core``.
"""

from syncbus.core.topics import subscriber_dlq_topic as dlq_topic
from syncbus.subscriber.dlq import HandlerFailed, RetryPolicy
from syncbus.subscriber.event import Event, Marker
from syncbus.subscriber.gaps import Gap, GapChecker, ResyncInfo
from syncbus.subscriber.metrics import SubscriberMetrics
from syncbus.subscriber.store import SqlStore
from syncbus.subscriber.subscriber import (
    Handler,
    ResyncCallback,
    Subscriber,
    TransactionalHandler,
)

__all__ = [
    "Event",
    "Gap",
    "GapChecker",
    "Handler",
    "HandlerFailed",
    "Marker",
    "ResyncCallback",
    "ResyncInfo",
    "RetryPolicy",
    "SqlStore",
    "Subscriber",
    "SubscriberMetrics",
    "TransactionalHandler",
    "dlq_topic",
]
