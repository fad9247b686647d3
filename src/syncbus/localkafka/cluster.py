"""A replicated local Apache Kafka: three KRaft nodes as three JVMs on this machine.

Each node is broker and controller, lives in ``<dir>/node-<n>/`` exactly as a single
broker lives in its directory (so ``broker.status`` and ``broker.stop`` work on it),
and listens on ports of its own; the three form the controller quorum. Topics keep
three replicas and a write needs two in sync (``min.insync.replicas=2``, with the
producers' ``acks=all``), as the reference deployments run it: one node may die
without losing an acknowledged write or stopping a writer. ``<dir>/cluster.json``
records the nodes' ports and the cluster id, so a restart keeps the addresses.

A quorum needs a majority: with two nodes, losing one stops the cluster, which is
no better than one node and twice the cost, so an even count is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncbus.credentials import write_private
from syncbus.localkafka import broker
from syncbus.localkafka import secure as security
from syncbus.localkafka.broker import BrokerError, BrokerInfo

CLUSTER_FILE = "cluster.json"
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ClusterInfo:
    dir: Path
    nodes: tuple[BrokerInfo, ...]
    secure: bool = False
    tls: bool = False

    @property
    def bootstrap(self) -> str:
        """Every node's address: a client reaches the cluster through any that lives."""
        return ",".join(n.address for n in self.nodes)

    @property
    def running(self) -> list[int]:
        """The node ids whose JVM runs."""
        return [i for i, n in enumerate(self.nodes, start=1) if n.pid is not None]

    def admin_client_config(self) -> dict[str, str]:
        """The admin's client settings, reaching the cluster through any node."""
        return {**self.nodes[0].admin_client_config(), "bootstrap.servers": self.bootstrap}


def node_dir(dir: Path, node: int) -> Path:
    return dir / f"node-{node}"


def is_cluster(dir: Path) -> bool:
    return (dir / CLUSTER_FILE).exists()


def check_node_count(nodes: int) -> None:
    if nodes < 1 or nodes % 2 == 0:
        raise BrokerError(
            f"--nodes {nodes}: a KRaft controller quorum needs a majority to work, so use an "
            "odd number of nodes: 1 (no replication) or 3 (survives one node lost)"
        )


def status(dir: Path) -> ClusterInfo | None:
    """The cluster recorded in ``dir`` (nodes with pid None are down), or None."""
    path = dir / CLUSTER_FILE
    if not path.exists():
        return None
    recorded = json.loads(path.read_text())
    nodes = []
    for n in range(1, int(recorded["nodes"]) + 1):
        info = broker.status(node_dir(dir, n))
        if info is None:
            return None
        nodes.append(info)
    return ClusterInfo(dir, tuple(nodes), bool(recorded.get("secure")), bool(recorded.get("tls")))


def recorded_bootstrap(dir: Path) -> str | None:
    """The bootstrap of the cluster in ``dir`` while any node of it runs."""
    info = status(dir)
    return info.bootstrap if info is not None and info.running else None


def _plan(dir: Path, nodes: int) -> dict[str, object]:
    """Ports and cluster id: those recorded, else fresh ones (each checked free)."""
    path = dir / CLUSTER_FILE
    if path.exists():
        recorded: dict[str, object] = json.loads(path.read_text())
        if recorded["nodes"] != nodes:
            raise BrokerError(
                f"the cluster in {dir} has {recorded['nodes']} nodes, not {nodes}: use its "
                "count, another --dir, or delete this one"
            )
        return recorded
    ports: list[int] = []
    while len(ports) < 2 * nodes:
        port = broker.free_port()
        if port not in ports:
            ports.append(port)
    return {"nodes": nodes, "ports": ports[:nodes], "controller_ports": ports[nodes:],
            "cluster_id": broker._cluster_id()}


def start(
    dir: Path,
    nodes: int = 3,
    cache_dir: Path | None = None,
    timeout: float = READY_TIMEOUT_S,
    echo: Callable[[str], None] = print,
    secure_mode: bool = False,
    tls: bool = False,
) -> tuple[ClusterInfo, bool]:
    """Start every node of the cluster in ``dir`` that is not running; returns (its
    info, whether all were running already)."""
    from syncbus import settings

    check_node_count(nodes)
    dir = dir.resolve()
    current = status(dir)
    if current is not None and len(current.running) == nodes:
        return current, True
    secure_mode = secure_mode or tls or bool(current and current.secure)
    tls = tls or bool(current and current.tls)
    java = broker.check_java()
    jars = broker.ensure_jars(Path(cache_dir or settings.get("kafka_cache")), echo)
    plan = _plan(dir, nodes)
    ports = [int(p) for p in plan["ports"]]  # type: ignore[attr-defined]
    controllers = [int(p) for p in plan["controller_ports"]]  # type: ignore[attr-defined]
    voters = ",".join(f"{n}@127.0.0.1:{c}" for n, c in enumerate(controllers, start=1))
    dir.mkdir(parents=True, exist_ok=True)
    (dir / CLUSTER_FILE).write_text(json.dumps({**plan, "secure": secure_mode, "tls": tls}))
    launched: list[tuple[BrokerInfo, subprocess.Popen[bytes]]] = []
    for n in range(1, nodes + 1):
        node = node_dir(dir, n)
        running = broker.status(node)
        if running is not None and running.pid is not None:
            continue
        for port in (ports[n - 1], controllers[n - 1]):
            if broker.port_in_use(port):
                raise BrokerError(
                    f"port {port} of node {n} is in use on 127.0.0.1: stop what listens "
                    f"there, or start the cluster in a new --dir (it picks free ports)"
                )
        _prepare_node(dir, n, ports[n - 1], controllers[n - 1], voters, nodes, secure_mode, tls)
        broker._format_storage(java, jars, node, secure_mode, str(plan["cluster_id"]))
        proc = broker.launch(java, jars, node)
        launched.append((BrokerInfo(node, ports[n - 1], controllers[n - 1], proc.pid,
                                    secure_mode, tls), proc))
    for info, proc in launched:
        broker._wait_ready(info, proc, info.dir, timeout)
    if secure_mode:
        _publish_logins(dir, tls)
    started = status(dir)
    assert started is not None
    _wait_for_members(started, timeout)
    return started, False


def _publish_logins(dir: Path, tls: bool) -> None:
    """The cluster's admin password, and its CA with ``--tls``, where the single broker
    keeps them (``<dir>/admin.password``, ``<dir>/tls/ca.pem``): what a user is told to
    log in with does not depend on the node count."""
    first = node_dir(dir, 1)
    _same_admin(first, dir)
    if tls:
        security.ca_file(dir).parent.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(security.ca_file(first), security.ca_file(dir))


def _same_admin(first: Path, target: Path) -> None:
    """One admin for the whole cluster: ``target`` (a node's or the cluster's directory)
    holds the password node 1 generated."""
    write_private(security.admin_password_file(target), security.admin_password(first) + "\n")


def _prepare_node(dir: Path, n: int, port: int, controller_port: int, voters: str,
                  nodes: int, secure_mode: bool, tls: bool) -> None:
    node = node_dir(dir, n)
    paths = broker._paths(node)
    for key in ("data", "logs"):
        paths[key].mkdir(parents=True, exist_ok=True)
    if secure_mode and n > 1:
        _same_admin(node_dir(dir, 1), node)
    if tls and n > 1:  # one CA, so a client that trusts it reaches every node
        shutil.copytree(security.ca_file(node_dir(dir, 1)).parent,
                        security.ca_file(node).parent, dirs_exist_ok=True)
    try:
        props = broker._server_properties(node, port, controller_port, secure_mode, tls,
                                          node_id=n, voters=voters, replicas=min(nodes, 3))
    except security.SecureSetupError as exc:
        raise BrokerError(str(exc)) from exc
    write_private(paths["props"], props)
    paths["info"].write_text(json.dumps({"port": port, "controller_port": controller_port,
                                         "secure": secure_mode, "tls": tls}))


def _wait_for_members(info: ClusterInfo, timeout: float) -> None:
    """Until the metadata lists every running node as a broker: topics created before
    that would get fewer replicas than the cluster has."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(dict[str, str | int | float | bool](info.admin_client_config()))
    want = len(info.running)
    deadline = time.monotonic() + timeout
    seen = "no answer yet"  # what the cluster said last, for the error
    while time.monotonic() < deadline:
        try:
            brokers = len(admin.list_topics(timeout=5).brokers)
        except Exception as exc:  # not answering yet: asked again until the deadline
            seen = f"{type(exc).__name__}: {exc}"
        else:
            if brokers >= want:
                return
            seen = f"{brokers} listed"
        time.sleep(0.3)
    raise BrokerError(f"the cluster in {info.dir} did not list {want} brokers in "
                      f"{timeout:.0f} s (last: {seen}); see each node's log in {info.dir}")


def start_node(dir: Path, n: int, timeout: float = READY_TIMEOUT_S) -> BrokerInfo:
    """Start one stopped (or killed) node again with its recorded settings."""
    from syncbus import settings

    node = node_dir(dir.resolve(), n)
    info = broker.status(node)
    if info is None:
        raise BrokerError(f"no node {n} in the cluster of {dir}")
    if info.pid is not None:
        return info
    jars = broker.ensure_jars(Path(settings.get("kafka_cache")))
    proc = broker.launch(broker.check_java(), jars, node)
    started = BrokerInfo(node, info.port, info.controller_port, proc.pid, info.secure, info.tls)
    broker._wait_ready(started, proc, node, timeout)
    return started


def stop(dir: Path) -> bool:
    """Stop every node; returns False when none was running."""
    info = status(dir.resolve())
    if info is None:
        return False
    for node in info.nodes:  # all at once: one by one, the last would wait for a quorum
        if node.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGTERM)
    stopped = [broker.stop(n.dir) for n in info.nodes]
    return any(stopped)
