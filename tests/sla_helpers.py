"""Helpers for the SLA tests: a real ``syncbus monitor`` and a real Prometheus server,
each its own process on a free port, stopped by its own pid."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from syncbus.localkafka.broker import free_port

REPO = Path(__file__).resolve().parents[1]


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def get_text(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode("utf-8"))


class Process:
    """A child process whose output goes to a log file; only its own pid is signalled."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ)
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class MonitorProcess(Process):
    def __init__(self, bootstrap: str, prefix: str, router_group: str, workdir: Path) -> None:
        super().__init__(
            [
                sys.executable,
                "-X",
                "faulthandler",  # a crash in librdkafka leaves its stack in the log
                "-m",
                "syncbus",
                "monitor",
                "--bootstrap",
                bootstrap,
                "--port",
                "0",  # a port of its own choosing, printed: no race for a free one
                "--topic-prefix",
                prefix,
                "--router-group",
                router_group,
                "--interval",
                "0.5",
            ],
            workdir / "monitor.log",
        )
        try:
            self.port = int(wait_until(self._printed_port, 60, "the monitor to serve"))
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{self.port}"

    def _printed_port(self) -> str | None:
        self.check_alive()
        found = re.search(r"status page http://127\.0\.0\.1:(\d+)/", self.log.read_text())
        return found.group(1) if found else None

    def check_alive(self) -> None:
        """Fail with the monitor's own words when it is gone."""
        if not self.alive():
            raise AssertionError(
                f"monitor exited {self.proc.returncode}: {self.log.read_text()[-3000:]}"
            )

    def routes(self) -> list[dict[str, Any]]:
        self.check_alive()
        rows: list[dict[str, Any]] = get_json(self.url + "/api/routes")["routes"]
        return rows

    def summary(self) -> dict[str, Any]:
        self.check_alive()
        data: dict[str, Any] = get_json(self.url + "/api/routes")
        return data


class PrometheusServer(Process):
    """Debian's ``prometheus``: 1 s scrapes and evaluations, the given rule files."""

    def __init__(self, workdir: Path, targets: dict[str, str], rule_files: list[Path]) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: apt-get install prometheus (.ci/run does)"
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        super().__init__(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            workdir / "prometheus.log",
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return "Ready" in get_text(self.url + "/-/ready", timeout=2)
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = get_json(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def firing(self) -> list[dict[str, str]]:
        alerts = get_json(self.url + "/api/v1/alerts")["data"]["alerts"]
        return [a["labels"] for a in alerts if a["state"] == "firing"]


def wait_until(check: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:  # not serving yet
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def dom_rows(html: str) -> dict[str, str]:
    """route -> state of the status page's rows, from Chromium's dumped DOM."""
    body = html.split('<tbody id="routes">', 1)[1].split("</tbody>", 1)[0]
    return dict(re.findall(r'<tr data-route="([^"]+)" data-state="([^"]+)"', body))
