"""Topic names of one bus deployment, with an optional prefix.

The prefix lets benchmarks and tests run a whole bus (raw, share and side topics)
beside another on the same cluster; production uses none, so names are the
plain ones of ``syncbus.core.topics``.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncbus.core import topics


@dataclass(frozen=True)
class TopicNames:
    prefix: str = ""

    def raw(self, resource_id: str) -> str:
        return self.prefix + topics.raw_topic(resource_id)

    def share(self, subscriber_id: str, resource_id: str) -> str:
        return self.prefix + topics.share_topic(subscriber_id, resource_id)

    def subscriber_dlq(self, subscriber_id: str) -> str:
        return self.prefix + topics.subscriber_dlq_topic(subscriber_id)

    def resource_of_raw(self, topic: str) -> str:
        """The resource id a raw topic carries; ValueError when it is not a raw topic."""
        head = self.prefix + topics.RAW_PREFIX
        if not topic.startswith(head):
            raise ValueError(f"{topic!r} is not a raw topic (expected {head}<resource>)")
        return topic[len(head) :]

    @property
    def dlq(self) -> str:
        return self.prefix + topics.DLQ_TOPIC

    @property
    def quarantine(self) -> str:
        return self.prefix + topics.QUARANTINE_TOPIC

    @property
    def audit(self) -> str:
        return self.prefix + topics.AUDIT_TOPIC

    @property
    def policy(self) -> str:
        return self.prefix + topics.POLICY_TOPIC

    @property
    def schemas(self) -> str:
        return self.prefix + topics.SCHEMAS_TOPIC

    @property
    def resync(self) -> str:
        return self.prefix + topics.RESYNC_TOPIC
