"""A subscriber process for the kill -9 test: its handler writes each event id it
handles into the store's own database, in the same transaction as the dedupe record.

    python -m tests.subscriber_helpers_child BOOTSTRAP SUBSCRIBER STORE_PATH DELAY_S
"""

from __future__ import annotations

import sys
import time

from syncbus.subscriber import Event, SqlStore, Subscriber


def main(bootstrap: str, subscriber_id: str, store_path: str, delay: float) -> None:
    store = SqlStore.open(store_path)
    store.begin()
    store.execute("CREATE TABLE IF NOT EXISTS handled (event_id TEXT NOT NULL)")
    store.commit()

    def handler(event: Event, txn: SqlStore) -> None:
        txn.execute("INSERT INTO handled (event_id) VALUES (?)", (event.event_id,))
        time.sleep(delay)  # a slow downstream, so the kill lands mid-stream

    subscriber = Subscriber(
        subscriber_id,
        ["population.resident"],
        bootstrap=bootstrap,
        store=store,
        batch_size=50,
        # the broker's minimum: the restarted child need not wait 45 s for the killed one
        consumer_config={"session.timeout.ms": 6000},
    )
    subscriber.run(handler, transactional=True, idle_timeout=5)
    subscriber.close()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
