"""The monitor reads committed offsets safely while a new broker is loading its groups.

librdkafka's admin ``ListConsumerGroupOffsets`` dereferences a missing group handle
when the coordinator answers NOT_COORDINATOR (librdkafka #5040): asked for new groups
in a broker's first seconds, it killed the monitor with SIGSEGV (CI, and one run of
the loop below). The monitor now asks through a consumer of the group. The loop runs
in a child process, so that a crash is a failed assertion, not a lost test worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import LocalKafka

ASKING = textwrap.dedent(
    """
    import json, sys, time, uuid
    from syncbus.connection import Connection
    from syncbus.monitor.kafka_reads import ClusterReader

    bootstrap, topic, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    reader = ClusterReader(Connection.from_env(bootstrap))
    asked, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        fresh = "never-seen-" + uuid.uuid4().hex[:8]
        assert reader.committed(fresh, [(topic, 0)]) == {}, fresh
        reader.forget_groups(())
        asked += 1
    known = reader.committed("committed-once", [(topic, 0), (topic, 1)])
    reader.close()
    print(json.dumps({"asked": asked, "known": [[t, p, o] for (t, p), o in known.items()]}))
    """
)


def test_committed_offsets_of_new_groups_on_a_just_started_broker(bus_kafka: LocalKafka) -> None:
    topic = "monitor.fresh"
    asking = subprocess.Popen(
        [sys.executable, "-c", ASKING, bus_kafka.bootstrap, topic, "12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    admin = AdminClient({"bootstrap.servers": bus_kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    group = Consumer({"bootstrap.servers": bus_kafka.bootstrap, "group.id": "committed-once"})
    group.commit(offsets=[TopicPartition(topic, 1, 7)], asynchronous=False)
    group.close()

    out, err = asking.communicate(timeout=90)
    assert asking.returncode == 0, f"exit {asking.returncode}: {err[-2000:]}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["asked"] > 10
    assert result["known"] == [[topic, 1, 7]]
