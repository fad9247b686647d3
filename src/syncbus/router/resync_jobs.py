"""Resync jobs as records of the compacted ``syncbus.resync`` topic, the router's memory.

A job is one (subscriber, resource) to bring in line with its grant (contract §3-§5:
docs/resync-contract.md). Keys of the topic:

- ``job/<id>``: the job (JSON of ``ResyncJob``); rewritten with its watermarks when it
  begins, so a router restarted after kill -9 reads up to the same end offsets;
- ``progress/<id>/<raw partition>``: the next raw offset to read and the counts so
  far, written only after the broker confirmed everything before it;
- ``done/<id>``: the job finished (its audit record is written); the job and progress
  keys are tombstoned then. ``done`` keys stay, so a late duplicate of a job (another
  worker that noticed the same change) is never run again.

Ids of jobs caused by a policy change or an expiry are derived from the change
(``job_id``), so every worker that notices it submits the same job; a job is run by
the worker that owns partition 0 of the resource's raw topic (``ResyncRunner``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from syncbus.admin.compacted import watermarks
from syncbus.connection import Connection
from syncbus.core.model import Grant
from syncbus.core.policy import grant_from_dict, grant_to_dict

Kind = Literal["delta", "full"]
Cause = Literal["policy", "expiry", "request"]
JOB, PROGRESS, DONE = "job/", "progress/", "done/"


def job_id(*parts: Any) -> str:
    """32 hex characters, the same on every worker for the same change."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def request_id() -> str:
    """A fresh id for a resync asked for on the command line."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ResyncJob:
    """What to resync: ``old``/``new`` are the grants in force before and after (dicts of
    ``grant_to_dict``), ``old_at``/``new_at`` the times their routing is asked at."""

    id: str
    subscriber: str
    resource: str
    kind: Kind
    cause: Cause
    change: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    old_at: str
    new_at: str
    resend: bool
    created_at: str
    watermarks: dict[str, int] | None = None  # raw partition -> end offset, once begun
    started_at: str | None = None

    @staticmethod
    def of(id_: str, subscriber: str, resource: str, kind: Kind, cause: Cause, change: str,
           old: Grant | None, new: Grant | None, old_at: datetime, new_at: datetime,
           resend: bool, created_at: datetime) -> ResyncJob:
        return ResyncJob(id_, subscriber, resource, kind, cause, change,
                         None if old is None else grant_to_dict(old),
                         None if new is None else grant_to_dict(new),
                         old_at.isoformat(), new_at.isoformat(), resend,
                         created_at.isoformat())

    def grants(self) -> tuple[Grant | None, Grant | None]:
        return (None if self.old is None else grant_from_dict(self.old),
                None if self.new is None else grant_from_dict(self.new))

    def times(self) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(self.old_at), datetime.fromisoformat(self.new_at)

    def begun(self, watermarks: dict[int, int], started_at: datetime) -> ResyncJob:
        return replace(self, watermarks={str(p): o for p, o in watermarks.items()},
                       started_at=started_at.isoformat())

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True).encode()

    @staticmethod
    def from_bytes(raw: bytes) -> ResyncJob:
        return ResyncJob(**json.loads(raw))


@dataclass
class Progress:
    """One raw partition of a job: the next offset to read and what was sent so far."""

    next: int = 0
    snapshots: int = 0
    deletes: int = 0
    dead_letters: int = 0

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass
class JobStore:
    """The resync topic as this worker knows it; ``poll`` is cheap and non-blocking."""

    connection: Connection
    topic: str
    producer: Producer
    records: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # the event loop submits, the resync thread progresses
        self._consumer = Consumer(self.connection.confluent(**{
            "group.id": self.connection.own_group("resync-jobs"),
            "enable.auto.commit": False, "enable.partition.eof": False}))
        self._ends: dict[int, int] | None = None  # the topic's end offsets when first read
        self.ready = False  # read up to those ends: what it holds is known

    def catch_up(self) -> bool:
        """Read on without blocking; True once everything written before this worker
        started is read (jobs are neither run nor submitted before: a finished job's
        ``done`` record must be known first). Raises when the topic does not exist."""
        if self.ready:
            self.poll()
            return True
        if self._ends is None:
            meta = self._consumer.list_topics(self.topic, timeout=5.0).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise RuntimeError(f"topic {self.topic} does not exist: run `syncbus apply` "
                                   "(resyncs wait for it; routing goes on)")
            self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                                   for p in meta.partitions])
            self._ends = {tp.partition: watermarks(self._consumer, tp, 5.0)[1]
                          for tp in self._consumer.assignment()}
        self.poll()
        positions = self._consumer.position(self._consumer.assignment())
        self.ready = all(max(tp.offset, 0) >= self._ends.get(tp.partition, 0)
                         for tp in positions)
        return self.ready

    def _keep(self, key: str, value: bytes | None) -> None:
        with self._lock:
            if value is None:
                self.records.pop(key, None)
            else:
                self.records[key] = value

    def poll(self) -> None:
        for message in self._consumer.consume(1000, timeout=0):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {self.topic}: {error}")
                continue
            key = message.key()
            self._keep(key.decode() if key else "", message.value())

    def done(self, id_: str) -> bool:
        return DONE + id_ in self.records

    def pending(self) -> list[ResyncJob]:
        """Jobs written and not finished, oldest first."""
        with self._lock:
            found = [(k, v) for k, v in self.records.items() if k.startswith(JOB)]
        jobs = [ResyncJob.from_bytes(v) for k, v in found if not self.done(k[len(JOB):])]
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    def progress(self, id_: str, partition: int) -> Progress:
        raw = self.records.get(f"{PROGRESS}{id_}/{partition}")
        return Progress() if raw is None else Progress(**json.loads(raw))

    def write(self, key: str, value: bytes | None) -> None:
        """Produce one record (remembered at once: this worker reads its own writes)."""
        self.producer.produce(self.topic, key=key.encode(), value=value)
        self._keep(key, value)

    def submit(self, job: ResyncJob) -> bool:
        """Record a job unless it is known; True when written."""
        if self.done(job.id) or JOB + job.id in self.records:
            return False
        self.write(JOB + job.id, job.to_bytes())
        return True

    def close(self) -> None:
        self._consumer.close()
