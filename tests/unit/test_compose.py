"""``compose/``: what can be checked without a Docker engine.

The file parses; every file it mounts or builds from exists in the repository;
its principals, ports and replication agree with the Python side (``core.access``,
the CLI defaults, the local cluster's settings); Prometheus scrapes what the
services expose and loads rule files that exist. ``docker compose config`` runs
where the Docker compose plugin is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncbus.core.access import ADMIN, ROUTER
from syncbus.localkafka import broker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _mounts(service: dict[str, Any]) -> list[str]:
    return [v.split(":")[0] for v in service.get("volumes", []) if v.startswith(".")]


def test_every_mounted_and_built_file_exists(compose: dict[str, Any]) -> None:
    mounted = [m for s in compose["services"].values() for m in _mounts(s)]
    assert len(mounted) >= 8
    for path in mounted:
        assert (COMPOSE / path).exists(), f"compose mounts {path}, which the repository lacks"
    builds = {s["build"]["dockerfile"] for s in compose["services"].values() if "build" in s}
    assert builds == {"compose/Dockerfile"} and (ROOT / "compose/Dockerfile").exists()


def test_three_kafka_nodes_in_one_quorum_with_the_local_clusters_settings(
    compose: dict[str, Any],
) -> None:
    nodes = {n: s for n, s in compose["services"].items() if n.startswith("kafka-")}
    assert sorted(nodes) == ["kafka-1", "kafka-2", "kafka-3"]
    image = "apache/kafka:" + broker.KAFKA_VERSION
    assert all(s["image"] == image for s in nodes.values())
    assert sorted(s["environment"]["NODE_ID"] for s in nodes.values()) == ["1", "2", "3"]
    script = (COMPOSE / "kafka/start-node.sh").read_text()
    local = broker._server_properties(Path("/x"), broker.DEFAULT_PORT, 9093, node_id=1,
                                      voters="1@a:9093", replicas=3)
    for key in ("default.replication.factor", "min.insync.replicas",
                "offsets.topic.replication.factor", "transaction.state.log.min.isr",
                "auto.create.topics.enable", "group.initial.rebalance.delay.ms"):
        line = next(line for line in local.splitlines() if line.startswith(key + "="))
        assert re.search(rf"^{re.escape(line)}$", script, re.M), f"{key}: not as locally"
    assert f"CLIENT://0.0.0.0:{broker.DEFAULT_PORT}" in script
    assert "allow.everyone.if.no.acl.found=false" in script
    assert f"ADMIN={ADMIN}" in script and "super.users=User:$ADMIN" in script
    voters = re.search(r"controller.quorum.voters=(\S+)", script)
    assert voters and voters.group(1) == ",".join(f"{n}@kafka-{n}:9093" for n in (1, 2, 3))


def test_clients_log_in_as_the_principals_apply_makes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bootstrap = services["router"]["environment"]["SYNCBUS_BOOTSTRAP"]
    assert bootstrap == ",".join(f"kafka-{n}:{broker.DEFAULT_PORT}" for n in (1, 2, 3))
    assert services["router"]["environment"]["SYNCBUS_USER"] == ROUTER
    assert services["apply"]["environment"]["SYNCBUS_USER"] == ADMIN
    router_id = services["router"]["command"][services["router"]["command"].index("--id") + 1]
    assert router_id.startswith(ROUTER)  # its ACLs open the groups under that prefix
    assert services["router"]["environment"]["SYNCBUS_CA_FILE"] == "/tls/ca.pem"


def test_prometheus_scrapes_what_the_services_expose(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = yaml.safe_load((COMPOSE / "prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job.get("static_configs", [])
               for t in c["targets"]}
    router = services["router"]["command"]
    monitor = services["monitor"]["command"]
    assert f"router:{router[router.index('--metrics-port') + 1]}" in targets
    assert f"monitor:{monitor[monitor.index('--port') + 1]}" in targets
    for rule_file in config["rule_files"]:
        assert (COMPOSE / "prometheus" / rule_file).exists(), rule_file


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: `docker compose config` "
                    "is checked where it is")
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True, text=True,
        env={"SYNCBUS_ADMIN_PASSWORD": "x" * 24, "SYNCBUS_TOKEN_SECRETS": "{}",
             "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert done.returncode == 0, done.stderr
