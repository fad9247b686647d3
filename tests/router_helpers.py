"""Helpers for router tests: raw events on the wire contract, reading share topics,
and a real router process to start and kill.

Raw events are produced directly (not through the Publisher SDK) so tests can also
write what a good SDK never would: random bytes, truncated Avro, unknown
fingerprints, invalid citizen IDs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from syncbus.admin.names import TopicNames
from syncbus.core import topics as t
from syncbus.core.codec import Codec
from syncbus.core.model import Bus

REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    s: f"secret-of-{s}"
    for s in ("province.jiangsu", "city.nanjing", "city.suzhou", "city.wuxi",
              "district.gusu", "district.xuanwu")
}


class RawWriter:
    """Change events of the shipped bus as a publisher puts them on raw.<resource>."""

    def __init__(self, bus: Bus, bootstrap: str, names: TopicNames | None = None) -> None:
        self.bus = bus
        self.names = names or TopicNames()
        self.codec = Codec()
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self._fps: dict[str, bytes] = {}
        self._seq = 0

    def fp(self, resource_id: str) -> bytes:
        if resource_id not in self._fps:
            schema = self.bus.schemas.event_schema(self.bus.resource(resource_id).schema)
            self._fps[resource_id] = self.codec.register(schema)
        return self._fps[resource_id]

    def encode(self, resource_id: str, op: str, after: dict[str, Any] | None,
               before: dict[str, Any] | None = None) -> tuple[bytes, bytes, list, str]:
        """(key, value, headers, event_id) of one event."""
        resource = self.bus.resource(resource_id)
        domain = self.bus.schemas.latest(resource.schema)
        full = [r if r is None else {f["name"]: r.get(f["name"]) for f in domain["fields"]}
                for r in (before, after)]
        before, after = full
        record = after if after is not None else before
        assert record is not None
        key = str(record[resource.key_field])
        region = str(record[resource.region_field])
        self._seq += 1
        now = int(time.time() * 1_000_000)
        event_id = str(uuid.uuid4())
        event = {"event_id": event_id, "source": resource.owner, "resource": resource_id,
                 "op": op, "key": key, "region": region, "sequence": self._seq,
                 "occurred_at": now, "published_at": now, "before": before, "after": after,
                 "subscriber": None, "delivery_sequence": None, "routed_at": None}
        fp = self.fp(resource_id)
        value = self.codec.encode(fp, event)
        headers = [(t.H_EVENT_ID, event_id), (t.H_SOURCE, resource.owner),
                   (t.H_RESOURCE, resource_id), (t.H_OP, op), (t.H_REGION, region),
                   (t.H_SEQUENCE, str(self._seq)), (t.H_OCCURRED_AT, str(now)),
                   (t.H_PUBLISHED_AT, str(now)), (t.H_FINGERPRINT, fp.hex())]
        if before is not None and after is not None:
            old = str(before[resource.region_field])
            if old != region:
                headers.append((t.H_OLD_REGION, old))
        return key.encode(), value, [(k, v.encode()) for k, v in headers], event_id

    def send(self, resource_id: str, op: str, after: dict[str, Any] | None,
             before: dict[str, Any] | None = None) -> str:
        key, value, headers, event_id = self.encode(resource_id, op, after, before)
        self.send_raw(resource_id, key, value, headers)
        return event_id

    def send_raw(self, resource_id: str, key: bytes | None, value: bytes,
                 headers: list | None = None) -> None:
        while True:
            try:
                self.producer.produce(self.names.raw(resource_id), value, key, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.1)

    def flush(self) -> None:
        assert self.producer.flush(60) == 0


def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """Every message of a topic from the beginning, until ``timeout`` s without news."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        out, idle_since = [], time.monotonic()
        while time.monotonic() - idle_since < timeout:
            for message in consumer.consume(1000, timeout=0.2):
                if message.error() is None:
                    out.append(message)
                    idle_since = time.monotonic()
        return out
    finally:
        consumer.close()


class ShareReader:
    """Decodes share-topic messages with writer schemas found in syncbus.schemas."""

    def __init__(self, bootstrap: str, names: TopicNames | None = None) -> None:
        self.bootstrap = bootstrap
        self.names = names or TopicNames()
        self.codec = Codec()

    def _learn(self) -> None:
        for message in read_topic(self.bootstrap, self.names.schemas, timeout=0.5):
            self.codec.register(json.loads(message.value()))

    def decode(self, value: bytes) -> dict[str, Any]:
        from syncbus.core.codec import UnknownFingerprint

        try:
            return self.codec.decode(value)[0]
        except UnknownFingerprint:
            self._learn()
            return self.codec.decode(value)[0]

    def events(self, subscriber: str, resource: str, timeout: float = 2.0) -> list[dict]:
        """The events of a share topic, decoded; markers (issue #17) are left out."""
        topic = self.names.share(subscriber, resource)
        return [self.decode(m.value()) | {"_headers": dict(m.headers() or []),
                                          "_key": m.key()}
                for m in read_topic(self.bootstrap, topic, timeout)
                if m.value() is not None]  # resync begin/end markers carry no event


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class RouterProcess:
    """A real ``syncbus router`` worker; only this object's own pid is ever signalled."""

    def __init__(self, bootstrap: str, workdir: Path, app_id: str | None = None,
                 prefix: str = "", extra: Iterable[str] = ()) -> None:
        self.bootstrap, self.workdir = bootstrap, workdir
        self.app_id = app_id or f"router-{uuid.uuid4().hex[:8]}"
        self.prefix = prefix
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.secrets = workdir / "secrets.json"
        self.secrets.write_text(json.dumps(SECRETS))

    def start(self) -> RouterProcess:
        log = open(self.workdir / f"router-{time.time():.0f}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncbus", "router", "--bootstrap", self.bootstrap,
             "--workdir", str(self.workdir), "--id", self.app_id, "--secrets",
             str(self.secrets), "--topic-prefix", self.prefix, *self.extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ),
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


def resident(region: str, seed: int) -> dict[str, Any]:
    from syncbus.core.fake import make_record

    return make_record("population.resident", region=region, seed=seed)


def micros(value: dt.datetime) -> int:
    return int(value.timestamp() * 1_000_000)
