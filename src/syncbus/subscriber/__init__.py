"""The Subscriber SDK: how city and district systems take their share of the bus.

``Subscriber`` reads ``share.<subscriber>.<resource>`` topics, resolves writer schemas
through ``syncbus.schemas``, removes duplicates by event id with a persistent store,
reports gaps in the router's delivery sequence, and commits offsets only after the
handler succeeded. Everything here is an adapter: the rules it applies come from
``syncbus.core``.
"""

from syncbus.core.topics import subscriber_dlq_topic as dlq_topic
from syncbus.subscriber.dlq import HandlerFailed, RetryPolicy
from syncbus.subscriber.event import Event
from syncbus.subscriber.gaps import Gap, GapChecker
from syncbus.subscriber.metrics import SubscriberMetrics
from syncbus.subscriber.store import SqlStore
from syncbus.subscriber.subscriber import Handler, Subscriber, TransactionalHandler

__all__ = [
    "Event",
    "Gap",
    "GapChecker",
    "Handler",
    "HandlerFailed",
    "RetryPolicy",
    "SqlStore",
    "Subscriber",
    "SubscriberMetrics",
    "TransactionalHandler",
    "dlq_topic",
]
