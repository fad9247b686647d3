"""The processes of the demo, started in order and stopped in the reverse order.

Every child runs in a session of its own, so Ctrl-C reaches the demo alone and the
demo stops each child cleanly (SIGTERM, then SIGKILL after a grace period): the
departments first (their spools flush), then the sinks, the monitor and the
router, and the broker last, and only if the demo started it. Logs go to
``<dir>/logs/``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from syncbus import settings
from syncbus.localkafka import broker

GRACE_S = 20.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Stack:
    """What the demo started, to stop exactly that."""

    dir: Path
    children: list[Child] = field(default_factory=list)
    broker_dir: Path | None = None  # set when the demo started the broker

    @property
    def logs(self) -> Path:
        path = self.dir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def kafka_dir(self) -> Path:
        return self.dir / "kafka"

    def start_broker(self) -> str:
        """The demo's own secure local Kafka (SASL/SCRAM and ACLs) in ``<dir>/kafka``:
        reused when it runs already (and then left running), else started (and
        stopped at the end)."""
        running = broker.status(self.kafka_dir)
        if running is not None and running.pid is not None:
            return running.address
        port = None if (self.kafka_dir / "broker.json").exists() else 0
        info, _ = broker.start(self.kafka_dir, port, Path(settings.get("kafka_cache")),
                               echo=lambda m: print(m, file=sys.stderr), secure_mode=True)
        self.broker_dir = self.kafka_dir
        return info.address

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, *args], stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def stop_child(self, name: str) -> None:
        """Stop one child (SIGTERM, then SIGKILL) and forget it."""
        for child in [c for c in self.children if c.name == name]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)
            try:
                child.proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(10)
            self.children.remove(child)

    def pids(self) -> list[int]:
        return [c.proc.pid for c in self.children]

    def stop(self, echo: bool = True) -> None:
        """Stop the children, newest first, then the broker the demo started."""
        for child in reversed(self.children):
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for child in reversed(self.children):
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(10)
        if self.broker_dir is not None:
            broker.stop(self.broker_dir)
            if echo:
                print(f"stopped the demo's Kafka in {self.broker_dir}", file=sys.stderr)
            self.broker_dir = None
        self.children.clear()
