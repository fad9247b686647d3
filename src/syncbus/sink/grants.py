"""Which resources a subscriber is entitled to now, from the live policy topic."""

from __future__ import annotations

from syncbus.admin.compacted import read_compacted
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.policy import bus_from_records


def granted_resources(
    connection: Connection, subscriber_id: str, topic_prefix: str = ""
) -> list[str]:
    """Resources with an effective grant for the subscriber in ``syncbus.policy``.

    Raises ValueError naming the subscriber when it has none, so ``syncbus sink``
    without ``--resource`` never silently syncs nothing.
    """
    bus = bus_from_records(read_compacted(connection, TopicNames(topic_prefix).policy))
    bus.subscriber(subscriber_id)  # UnknownId names it when the bus does not declare it
    found = [
        grant.resource
        for grant in bus.grants
        if grant.subscriber == subscriber_id and grant.effective(bus.resource(grant.resource))
    ]
    if not found:
        raise ValueError(
            f"subscriber {subscriber_id!r} holds no effective grant in the policy; "
            "name resources with --resource or get a grant approved"
        )
    return sorted(set(found))
