"""A real single-node Apache Kafka (KRaft, broker and controller in one JVM) for a
developer machine and CI.

The jars come from Maven Central through ``mvn dependency:copy-dependencies`` on the
``pom.xml`` beside this module, once, into a cache directory. A broker lives in one
directory (``--dir``): ``server.properties``, ``data/``, ``logs/``, ``broker.pid`` and
``broker.json`` (its ports). Restarting on the same directory keeps its data and its
address, so clients reconnect to the same place.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from syncbus.core.access import ADMIN
from syncbus.credentials import write_private
from syncbus.localkafka import secure as security

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
DEFAULT_PORT = 9092
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


class BrokerError(RuntimeError):
    """A local broker could not be started or stopped; the message says how to fix it."""


@dataclass(frozen=True)
class BrokerInfo:
    """What a running (or last run) broker in a directory looks like."""

    dir: Path
    port: int
    controller_port: int
    pid: int | None
    secure: bool = False
    tls: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def admin_client_config(self) -> dict[str, str]:
        """librdkafka settings for this broker's admin (the super user when secure)."""
        config = {"bootstrap.servers": self.address}
        if self.secure:
            config.update({
                "security.protocol": "SASL_SSL" if self.tls else "SASL_PLAINTEXT",
                "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": ADMIN,
                "sasl.password": security.admin_password(self.dir),
            })
            if self.tls:
                config["ssl.ca.location"] = str(security.ca_file(self.dir))
        return config


# --------------------------------------------------------------------------- paths


def _paths(dir: Path) -> dict[str, Path]:
    return {
        "props": dir / "server.properties",
        "data": dir / "data",
        "logs": dir / "logs",
        "pid": dir / "broker.pid",
        "info": dir / "broker.json",
        "log": dir / "logs" / "server.log",
        "stdout": dir / "logs" / "stdout.log",
    }


def recorded_address(dir: Path) -> str | None:
    """The address of the broker last started in ``dir``, if it is running."""
    info = status(dir)
    return info.address if info and info.pid else None


# --------------------------------------------------------------------------- prerequisites


def check_java() -> str:
    """The java executable, or a BrokerError naming the Debian package to install."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            f"no `java` on PATH: Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer. "
            "Install it with: apt-get install openjdk-17-jre-headless"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(
            f"`{java}` is Java {major or 'of unknown version'}; Kafka {KAFKA_VERSION} needs "
            f"Java {MIN_JAVA} or newer. Install it with: apt-get install openjdk-17-jre-headless "
            "and put it first on PATH"
        )
    return java


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(cache_dir: Path, echo: Callable[[str], None] = print) -> Path:
    """The directory holding the Kafka jars, resolving them from Maven Central once."""
    jars = cache_dir / f"kafka-{KAFKA_VERSION}"
    done = jars / ".complete"
    if done.exists():
        return jars
    with _locked(cache_dir / ".lock"):
        if done.exists():
            return jars
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "no `mvn` on PATH: the Kafka jars come from Maven Central through Maven. "
                "Install it with: apt-get install maven"
            )
        echo(f"resolving Apache Kafka {KAFKA_VERSION} from Maven Central into {jars} ...")
        staging = cache_dir / f".staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        pom = resources.files("syncbus.localkafka").joinpath("pom.xml")
        with resources.as_file(pom) as pom_path:
            proc = subprocess.run(
                [mvn, "-B", "-q", "-f", str(pom_path), "dependency:copy-dependencies",
                 f"-DoutputDirectory={staging}", f"-Dkafka.version={KAFKA_VERSION}"],
                capture_output=True, text=True,
            )
        if proc.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise BrokerError(
                f"mvn could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION} "
                f"(exit {proc.returncode}); check access to Maven Central:\n{tail}"
            )
        shutil.rmtree(jars, ignore_errors=True)
        staging.rename(jars)
        done.touch()
    return jars


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# --------------------------------------------------------------------------- state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # a recycled pid is not our broker
        text = cmdline.read_bytes().replace(b"\0", b" ")
        if b"kafka.Kafka" not in text:
            return False
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def status(dir: Path) -> BrokerInfo | None:
    """The broker recorded in ``dir`` (pid None when it is not running), or None."""
    paths = _paths(dir)
    if not paths["info"].exists():
        return None
    recorded = json.loads(paths["info"].read_text())
    pid: int | None = None
    if paths["pid"].exists():
        candidate = int(paths["pid"].read_text().strip() or 0)
        pid = candidate if candidate and _pid_alive(candidate) else None
    return BrokerInfo(dir, int(recorded["port"]), int(recorded["controller_port"]), pid,
                      bool(recorded.get("secure")), bool(recorded.get("tls")))


def _plaintext_listeners(port: int, controller_port: int) -> str:
    return f"""listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
"""


def _server_properties(dir: Path, port: int, controller_port: int, secure_mode: bool = False,
                       tls: bool = False, node_id: int = 1, voters: str | None = None,
                       replicas: int = 1) -> str:
    """A node's settings: alone (``voters`` None: itself), or one of a cluster whose
    controller quorum is ``voters`` and whose topics keep ``replicas`` copies, of which
    a write needs all but one in sync (``min.insync.replicas``) once there are three."""
    data = _paths(dir)["data"]
    listeners = (security.secure_properties(dir, port, controller_port, tls) if secure_mode
                 else _plaintext_listeners(port, controller_port))
    min_isr = replicas - 1 if replicas >= 3 else 1
    return f"""# written by `syncbus kafka start`; edits are replaced on the next start
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters or f"{node_id}@127.0.0.1:{controller_port}"}
{listeners}log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
default.replication.factor={replicas}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=67108864
"""


def _cluster_id() -> str:
    """A random cluster id as Kafka makes one (``Uuid.randomUuid``): 16 bytes in
    URL-safe base64, never starting with "-", which the storage tool would take for
    an option (one start in 64 failed with "--cluster-id/-t: expected one argument")."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _java_cmd(java: str, jars: Path, dir: Path) -> list[str]:
    log_config = resources.files("syncbus.localkafka").joinpath("log4j2.properties")
    return [
        java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log_config}",
        f"-Dkafka.logs.dir={_paths(dir)['logs']}",
        "-cp", f"{jars}/*",
    ]


def _format_storage(java: str, jars: Path, dir: Path, secure_mode: bool,
                    cluster_id: str | None = None) -> None:
    """Format ``dir``'s storage once; the nodes of one cluster share ``cluster_id``."""
    paths = _paths(dir)
    if (paths["data"] / "meta.properties").exists():
        return
    scram = security.format_arguments(dir) if secure_mode else []
    proc = subprocess.run(
        [*_java_cmd(java, jars, dir), "kafka.tools.StorageTool", "format",
         "-t", cluster_id or _cluster_id(), "-c", str(paths["props"]), *scram],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise BrokerError(
            f"formatting the storage in {paths['data']} failed (exit {proc.returncode}):\n"
            + (proc.stdout + proc.stderr)[-2000:]
        )


def log_tail(dir: Path, lines: int = 30) -> str:
    paths = _paths(dir)
    chunks = []
    for path in (paths["log"], paths["stdout"]):
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(chunks) or f"(no log in {paths['logs']})"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_ready(info: BrokerInfo, proc: subprocess.Popen[bytes], dir: Path, timeout: float) -> None:
    """Wait until the port accepts connections and a client (the admin) can list topics."""
    import logging

    from confluent_kafka.admin import AdminClient

    address, port = info.address, info.port
    quiet = logging.getLogger("syncbus.localkafka.probe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    deadline = time.monotonic() + timeout
    admin = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # our child: its exit status, not /proc, tells
            raise BrokerError(
                f"the broker exited during start-up (exit {proc.returncode}):\n{log_tail(dir)}"
            )
        if not _port_open(port):
            time.sleep(0.2)
            continue
        admin = admin or AdminClient(
            {**info.admin_client_config(), "logger": quiet}  # type: ignore[dict-item]
        )
        try:
            admin.list_topics(timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    raise BrokerError(
        f"the broker at {address} did not answer within {timeout:.0f} s "
        f"(it is still running as pid {proc.pid}; `syncbus kafka stop --dir {dir}` ends it):\n"
        f"{log_tail(dir)}"
    )


# --------------------------------------------------------------------------- start / stop


def start(
    dir: Path,
    port: int | None = None,
    cache_dir: Path | None = None,
    timeout: float = READY_TIMEOUT_S,
    echo: Callable[[str], None] = print,
    secure_mode: bool | None = None,
    tls: bool | None = None,
) -> tuple[BrokerInfo, bool]:
    """Start the broker of ``dir``; returns (its info, whether it was already running).

    ``port`` None reuses the port this directory had before, else 9092; ``0`` picks a
    free one. The controller listener always gets a port of its own. ``secure_mode``
    and ``tls`` None keep what the directory had (a secure broker stays secure).
    """
    from syncbus import settings

    dir = dir.resolve()
    paths = _paths(dir)
    current = status(dir)
    if current is not None and current.pid is not None:
        return current, True
    java = check_java()
    jars = ensure_jars(Path(cache_dir or settings.get("kafka_cache")), echo)

    if port is None:
        port = current.port if current else DEFAULT_PORT
    elif port == 0:
        port = free_port()
    if port_in_use(port):
        raise BrokerError(
            f"port {port} is in use on 127.0.0.1: stop what listens there, or choose "
            "another with --port N (--port 0 picks a free one)"
        )
    controller_port = current.controller_port if current else free_port()
    if controller_port == port or port_in_use(controller_port):
        controller_port = free_port()
    was_secure = bool(current and current.secure)
    secure_mode = was_secure if secure_mode is None else secure_mode
    tls = bool(current and current.tls) if tls is None else tls
    secure_mode = secure_mode or tls
    formatted = (paths["data"] / "meta.properties").exists()
    if current is not None and secure_mode != was_secure and formatted:
        raise BrokerError(
            f"the broker in {dir} was made {'secure' if was_secure else 'open'}; its data cannot "
            "change sides: use another --dir, or delete this one"
        )

    for key in ("data", "logs"):
        paths[key].mkdir(parents=True, exist_ok=True)
    try:
        props = _server_properties(dir, port, controller_port, secure_mode, tls)
    except security.SecureSetupError as exc:
        raise BrokerError(str(exc)) from exc
    write_private(paths["props"], props)  # holds the admin's password when secure
    paths["info"].write_text(json.dumps({"port": port, "controller_port": controller_port,
                                         "secure": secure_mode, "tls": tls}))
    _format_storage(java, jars, dir, secure_mode)
    proc = launch(java, jars, dir)
    info = BrokerInfo(dir, port, controller_port, proc.pid, secure_mode, tls)
    _wait_ready(info, proc, dir, timeout)
    return info, False


def launch(java: str, jars: Path, dir: Path) -> subprocess.Popen[bytes]:
    """Start the JVM of the formatted broker (or cluster node) in ``dir`` and record
    its pid; ``start`` waits for it to answer."""
    paths = _paths(dir)
    with paths["stdout"].open("ab") as out:
        proc = subprocess.Popen(
            [*_java_cmd(java, jars, dir), "kafka.Kafka", str(paths["props"])],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=dir,
        )
    paths["pid"].write_text(str(proc.pid))
    return proc


def stop_when_gone(owner_pid: int, dir: Path) -> subprocess.Popen[bytes]:
    """A detached watcher that stops the broker of ``dir`` once ``owner_pid`` is gone.

    A test session killed with SIGKILL never runs its teardown; without this its
    broker JVM would outlive it. The watcher exits by itself when the broker stops.
    """
    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from syncbus.localkafka import broker\n"
        "owner, d = int(sys.argv[1]), Path(sys.argv[2])\n"
        "def alive(pid):\n"
        "    try:\n"
        "        os.kill(pid, 0)\n"
        "        return True\n"
        "    except ProcessLookupError:\n"
        "        return False\n"
        "while True:\n"
        "    info = broker.status(d)\n"
        "    if info is None or info.pid is None:\n"
        "        break\n"
        "    if not alive(owner):\n"
        "        broker.stop(d)\n"
        "        break\n"
        "    time.sleep(1)\n"
    )
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", code, str(owner_pid), str(dir)],
        start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop(dir: Path, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the broker of ``dir``; returns False when none was running there."""
    dir = dir.resolve()
    info = status(dir)
    if info is None or info.pid is None:
        _paths(dir)["pid"].unlink(missing_ok=True)
        return False
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(info.pid):
        time.sleep(0.1)
    if _pid_alive(info.pid):
        os.kill(info.pid, signal.SIGKILL)
        while _pid_alive(info.pid):
            time.sleep(0.05)
    _reap(info.pid)
    _paths(dir)["pid"].unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the broker is our own child (the test fixture)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
