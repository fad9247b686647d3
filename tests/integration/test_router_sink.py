"""The router's sink on a real broker: a record the broker refused is written again as
it was first written, headers included, and its batch is confirmed only then.

confluent-kafka hands delivery reports over without the record's headers, so a
retry built from the report alone would deliver an event without its routing
metadata (event id, delivery sequence, source partition).
"""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from syncbus.connection import Connection
from syncbus.router.engine import BatchOutput
from syncbus.router.sink import BatchSink
from tests.router_helpers import read_topic


def test_a_refused_record_is_written_again_with_its_headers(kafka) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    missing, audit = f"sink.{run}.share", f"sink.{run}.audit"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.create_topics([NewTopic(audit, 1, 1)]).values():
        future.result(timeout=30)
    output = BatchOutput(
        deliveries=[(missing, f"k{i}".encode(), f"v{i}".encode(),
                     [("syncbus-delivery-sequence", str(i + 1).encode()), ("n", b"%d" % i)])
                    for i in range(3)],
        audit=[(audit, b"a", b"{}", [("only", b"audit")])],
    )
    # the topic does not exist yet (auto-creation is off): every delivery is refused
    sink = BatchSink(Connection(kafka.bootstrap), f"sink.{run}.schemas",
                     **{"topic.metadata.propagation.max.ms": 300})
    delivery = sink.write(output)
    confirmed = threading.Event()
    confirming = threading.Thread(
        target=lambda: (delivery.confirmed_blocking(60), confirmed.set()), daemon=True)
    confirming.start()
    deadline = time.monotonic() + 30
    while not read_topic(kafka.bootstrap, audit, 0.2):  # until the audit record is written
        assert confirming.is_alive(), "confirming the batch failed"
        assert time.monotonic() < deadline, "the audit record was not written"
    time.sleep(1.5)  # several rounds of refusals and retries
    assert confirming.is_alive(), "a refusal stopped the confirmation instead of a retry"
    assert not confirmed.is_set()  # not confirmed while refused
    assert len(delivery.refused) + len(sink.producer) >= 3  # all three wait for their topic
    for future in admin.create_topics([NewTopic(missing, 1, 1)]).values():
        future.result(timeout=30)
    assert confirmed.wait(60), "the refused records were not written again"
    got = {m.key(): (m.value(), m.headers()) for m in read_topic(kafka.bootstrap, missing, 2.0)}
    assert got == {key: (value, headers) for _, key, value, headers in output.deliveries}
    assert len(read_topic(kafka.bootstrap, missing, 0.5)) == 3  # each once
