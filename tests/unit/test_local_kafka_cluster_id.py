"""The local broker's cluster id never looks like an option to Kafka's storage tool.

A URL-safe base64 id starts with "-" once in 64; ``kafka-storage format -t <id>``
then failed with "argument --cluster-id/-t: expected one argument", and so did one
broker start in 64 (a CI run lost a test module to it). Kafka's own
``Uuid.randomUuid`` draws again in that case; so does ``_cluster_id``.
"""

from __future__ import annotations

import base64

from syncbus.localkafka.broker import _cluster_id


def test_cluster_ids_are_16_random_bytes_and_never_start_with_a_dash() -> None:
    ids = [_cluster_id() for _ in range(5000)]  # one in 64 old ids: about 78 of these
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
    for cluster_id in ids[:100]:
        assert len(cluster_id) == 22
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
