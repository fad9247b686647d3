"""The router's resync side: jobs submitted on policy changes and expiries, run in a thread.

Every worker follows the policy and the clock, so every worker notices a change; each
submits the job with an id derived from the change (``resync_jobs.job_id``: the
policy topic offset that brought it, or the grant and its expiry time), so they
all write the same job and ``done/<id>`` keeps a late copy from running again. A job
is run by the worker that owns partition 0 of the resource's raw topic (Faust's
assignment): one runner per resource. When a rebalance moves that partition
mid-resync, the new owner continues from the recorded progress while the old one
may finish its chunk: records sent twice, harmless with versions (contract §2).
A job is never lost: it stays in ``syncbus.resync`` until its end markers and audit
record are confirmed, and whichever worker owns the partition runs it then. A change
made while every router was down is not lost either: the grants and subscribers the
workers last worked resyncs out for are kept (``clock/policy``) and compared with the
policy when a worker starts, as the expiry clock (``clock/expiry``) is for expiries.

Jobs run one at a time in one thread, not on the Faust event loop: the
confluent-kafka calls of a resync block, and a chunk's routing holds the GIL for a
few milliseconds at most, after which the thread rests (``Pacing``), so the live
path's batches keep their latency. A separate process would need the policy and
token secrets again for no gain; an executor would give no bound on how many run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timedelta

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from syncbus.admin.compacted import watermarks
from syncbus.admin.names import TopicNames
from syncbus.connection import Connection
from syncbus.core.entitlement import EntitlementChange, entitlement_changes, expiries_between
from syncbus.core.model import Bus, Subscriber
from syncbus.core.policy import UnroutableEvent, grant_from_dict, grant_to_dict
from syncbus.router.resync import Pacing, Refusals, ResyncRun
from syncbus.router.resync_jobs import DONE, JOB, Cause, JobStore, ResyncJob, job_id
from syncbus.router.secrets import MissingSecret, TokenSecrets

log = logging.getLogger("syncbus.router.resync")
CLOCK = "clock/expiry"  # the time up to which expiries were looked for (survives restarts)
SEEN = "clock/policy"  # the grants and subscribers resyncs were last worked out for


def seen_record(bus: Bus) -> bytes:
    """What of a bus decides entitlements besides resources: its grants and subscribers."""
    return json.dumps({"grants": sorted((grant_to_dict(g) for g in bus.grants),
                                        key=lambda g: (g["subscriber"], g["resource"])),
                       "subscribers": {k: asdict(v) for k, v in sorted(bus.subscribers.items())}},
                      sort_keys=True, ensure_ascii=False).encode()


def bus_as_seen(bus: Bus, seen: bytes) -> Bus:
    """``bus`` with the grants and subscribers of a ``seen_record``."""
    data = json.loads(seen)
    return replace(bus, grants=tuple(grant_from_dict(g) for g in data["grants"]),
                   subscribers={k: Subscriber(**v) for k, v in data["subscribers"].items()})
RETRY_S = 5.0


class ResyncRunner:
    def __init__(
        self,
        connection: Connection,
        names: TopicNames,
        secrets: TokenSecrets,
        bus_of: Callable[[], Bus],
        owns: Callable[[str], bool],
        pacing: Pacing | None = None,
    ) -> None:
        self.connection, self.names, self.secrets = connection, names, secrets
        self.bus_of, self.owns, self.pacing = bus_of, owns, pacing or Pacing()
        self.refusals = Refusals()  # what the broker refused, checked at each chunk's flush
        self.producer = Producer(connection.confluent(**{
            "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "delivery.report.only.error": True, "on_delivery": self.refusals}))
        self.store = JobStore(connection, names.resync, self.producer)  # read in ``tick``
        self.expiry_since: datetime | None = None  # from the stored clock, once read
        self._clock_written = 0.0
        self._unready_until = 0.0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._failed_at: dict[str, float] = {}
        self._offsets: Consumer | None = None  # reads raw end offsets for new jobs

    def policy_changed(self, old: Bus, new: Bus, version: int, now: datetime) -> list[str]:
        """Submit a delta job per changed (subscriber, resource); their ids. Before the
        job topic is read (a worker just started) a change is still submitted: the same
        id as another worker's, and ``done`` keeps a finished one from running again."""
        changes = entitlement_changes(old, new, now, now)
        ids = [self._submit(c, "policy", now, now, ("policy", version), now, old, new)
               for c in changes]
        self.store.write(SEEN, seen_record(new))
        return ids

    def _catch_up_policy(self, now: datetime) -> None:
        """Once, when the job topic is read: the policy as the workers last saw it against
        the policy now, so a grant changed while every router was down is resynced too."""
        bus = self.bus_of()
        seen = self.store.records.get(SEEN)
        if seen is not None and seen != seen_record(bus):
            before = bus_as_seen(bus, seen)
            self.policy_changed(before, bus, int(job_id(seen.decode())[:12], 16), now)
        elif seen is None:
            self.store.write(SEEN, seen_record(bus))

    def tick(self, now: datetime) -> None:
        """Read others' job records, submit the jobs of expiries passed, start a job."""
        if time.monotonic() < self._unready_until:
            return
        try:
            if not self.store.catch_up():
                return
        except RuntimeError as exc:  # no resync topic yet: say so once a minute, route on
            self._unready_until = time.monotonic() + 60
            log.error("%s", exc)
            return
        if self.expiry_since is None:
            clock = self.store.records.get(CLOCK)
            self.expiry_since = datetime.fromisoformat(clock.decode()) if clock else now
            self._catch_up_policy(now)
        if now > self.expiry_since:
            bus = self.bus_of()
            since = self.expiry_since
            if any(g.expires is not None and since < g.expires <= now for g in bus.grants):
                for change in expiries_between(bus, since, now):
                    assert change.old is not None and change.old.expires is not None
                    expires = change.old.expires
                    self._submit(change, "expiry", expires - timedelta(microseconds=1),
                                 expires, ("expiry", expires.isoformat()), now, bus, bus)
            self.expiry_since = now
            if time.monotonic() - self._clock_written > 30:
                self.store.write(CLOCK, now.isoformat().encode())
                self._clock_written = time.monotonic()
        if self._thread is not None and self._thread.is_alive():
            return
        for job in self.store.pending():
            if self.owns(job.resource) and time.monotonic() - self._failed_at.get(
                    job.id, -RETRY_S) >= RETRY_S:
                self._start(job)
                return

    def _submit(self, change: EntitlementChange, cause: Cause, old_at: datetime,
                new_at: datetime, why: tuple[str, object], now: datetime, old_bus: Bus,
                new_bus: Bus) -> str:
        """Write the job; its grants carry their scopes as explicit regions, so it routes
        as it did then even if the subscriber's region, or the subscriber, is gone."""
        old = None if change.old is None else grant_to_dict(change.old)
        new = None if change.new is None else grant_to_dict(change.new)
        id_ = job_id(*why, change.subscriber, change.resource, old, new)
        old_grant = change.old and replace(change.old, regions=old_bus.scopes(change.old))
        new_grant = change.new and replace(change.new, regions=new_bus.scopes(change.new))
        job = ResyncJob.of(id_, change.subscriber, change.resource, "delta", cause,
                           change.change, old_grant, new_grant, old_at, new_at,
                           change.resends_view, now)
        if JOB + id_ not in self.store.records and not self.store.done(id_):
            try:
                job = replace(job, watermarks=self._ends(change.resource))
            except (KafkaException, KeyError) as exc:  # the job takes them when it starts
                log.warning("end offsets of %s not read for resync %s: %s",
                            change.resource, id_, exc)
        if self.store.submit(job):
            log.warning("resync %s submitted: %s of %s for %s", id_, change.change,
                        change.resource, change.subscriber)
        return id_

    def _ends(self, resource: str) -> dict[str, int]:
        """The raw topic's end offsets now, just after live routing switched grants: the
        job's watermarks. Taken when the job starts instead, they would leave out the
        records routed meanwhile under the new grant, among them a key's move out of a
        region the subscriber loses, which nobody would then retract (seen in the
        property test when jobs queued behind each other)."""
        if self._offsets is None:
            self._offsets = Consumer(self.connection.confluent(**{
                "group.id": self.connection.own_group("resync-offsets"),
                "enable.auto.commit": False}))
        raw = self.names.raw(resource)
        meta = self._offsets.list_topics(raw, timeout=10).topics[raw]
        return {str(p): watermarks(self._offsets, TopicPartition(raw, p), 10)[1]
                for p in sorted(meta.partitions)}

    def _start(self, job: ResyncJob) -> None:
        self._thread = threading.Thread(target=self._run, args=(job,), daemon=True,
                                        name=f"resync-{job.id[:8]}")
        self._thread.start()

    def _run(self, job: ResyncJob) -> None:
        try:
            ResyncRun(job, self.bus_of(), self.connection, self.names, self.secrets,
                      self.producer, self.store, self.pacing, self._stopping.is_set,
                      refusals=self.refusals).run()
        except (MissingSecret, UnroutableEvent) as exc:  # will not get better by retrying
            log.error("resync %s cannot run: %s", job.id, exc)
            self.store.write(DONE + job.id, json.dumps({
                "kind": "resync", "resync": job.id, "subscriber": job.subscriber,
                "resource": job.resource, "cause": job.cause, "change": job.change,
                "error": str(exc)}).encode())
            self.store.write(JOB + job.id, None)
        except Exception:  # the job stays pending: retried, from its progress, shortly
            self._failed_at[job.id] = time.monotonic()
            log.error("resync %s failed; it will continue from its progress", job.id,
                      exc_info=True)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the current chunk (its progress recorded), then flush."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.producer.flush(30)
        self.store.close()
