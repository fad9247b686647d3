"""A department process for the crash test: publish N events, say so, then hang.

Run as ``python -m tests.helpers_publish_child BOOTSTRAP SPOOL N IDS_FILE``. It
writes the accepted event ids to IDS_FILE, prints ``published`` once ``publish``
has returned for all of them, and sleeps until killed. librdkafka lingers 30 s,
so at the kill the events are accepted but not yet sent: only the spool has them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from syncbus.publisher import Publisher
from tests.helpers_publish import records, shipped_bus


def main(bootstrap: str, spool: str, n: int, ids_file: str) -> None:
    recs = records("legal.company", 200, seed=7)
    publisher = Publisher(
        "js-scjgj", shipped_bus(), bootstrap, spool_path=spool, registry=CollectorRegistry(),
        producer_config={"linger.ms": 30_000},
    )
    ids = [
        publisher.publish("legal.company", "SNAPSHOT", after=recs[i % len(recs)])
        for i in range(n)
    ]
    Path(ids_file).write_text(json.dumps(ids))
    print("published", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
