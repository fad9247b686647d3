"""`syncbus kafka start | status | stop` as a user runs them, in a process of their own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from syncbus.localkafka import broker
from tests.conftest import LocalKafka

SYNCBUS = [sys.executable, "-m", "syncbus"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SYNCBUS, *args], capture_output=True, text=True, timeout=180,
                          env=env)


def jvm_running_in(directory: Path) -> bool:
    out = subprocess.run(["pgrep", "-af", "kafka.Kafka"], capture_output=True, text=True)
    return str(directory) in out.stdout


def test_start_status_stop(tmp_path: Path) -> None:
    directory = tmp_path / "broker"
    started = run("kafka", "start", "--port", "0", "--dir", str(directory))
    assert started.returncode == 0, started.stderr
    address = started.stdout.strip().splitlines()[-1]
    assert address.startswith("127.0.0.1:")
    try:
        metadata = AdminClient({"bootstrap.servers": address}).list_topics(timeout=10)
        assert list(metadata.brokers) == [1]

        again = run("kafka", "start", "--dir", str(directory))
        assert again.returncode == 0
        assert again.stdout.strip().splitlines()[-1] == address
        assert "already running" in again.stderr

        status = run("kafka", "status", "--dir", str(directory))
        assert status.returncode == 0 and address in status.stdout
    finally:
        stopped = run("kafka", "stop", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    assert not jvm_running_in(directory)
    assert run("kafka", "status", "--dir", str(directory)).returncode == 1


def test_port_in_use_is_refused_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("kafka", "start", "--port", str(port), "--dir", str(tmp_path / "b"))
    assert result.returncode == 1
    assert f"port {port} is in use" in result.stderr and "--port 0" in result.stderr
    assert not jvm_running_in(tmp_path / "b")


def test_missing_java_names_the_debian_package(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python")
    env = {**os.environ, "PATH": str(bin_dir)}
    result = run("kafka", "start", "--port", "0", "--dir", str(tmp_path / "b"), env=env)
    assert result.returncode == 1
    assert "no `java`" in result.stderr and "openjdk-17-jre-headless" in result.stderr


def test_missing_maven_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = Path(broker.check_java())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(java.resolve(), bin_dir / "java")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(broker.BrokerError, match="apt-get install maven"):
        broker.ensure_jars(tmp_path / "empty-cache", echo=lambda _m: None)


def test_restart_keeps_the_address(kafka: LocalKafka) -> None:
    kafka.stop()
    assert not jvm_running_in(kafka.dir)
    kafka.start()
    metadata = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10)
    assert list(metadata.brokers) == [1]


def test_a_killed_owner_does_not_leak_its_broker(tmp_path: Path) -> None:
    """A test session killed with SIGKILL must not leave its broker JVM running."""
    directory = tmp_path / "owned"
    owner = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys, time\n"
         "from pathlib import Path\n"
         "from syncbus.localkafka import broker\n"
         "d = Path(sys.argv[1])\n"
         "broker.start(d, 0)\n"
         "broker.stop_when_gone(os.getpid(), d)\n"
         "print('up', flush=True)\n"
         "time.sleep(600)\n",
         str(directory)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
        assert jvm_running_in(directory)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 60
    while jvm_running_in(directory) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not jvm_running_in(directory)
