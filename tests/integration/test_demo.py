"""``syncbus demo --duration``: the whole bus live, then a summary, then nothing left running.

The demo starts a Kafka of its own in its directory, a router, a sink per
subscriber and the departments; partway it approves Wuxi's pending grant. A
bounded run must exit 0 only when every route in force delivered and Wuxi's sink
filled after the approval, and must leave no process of its own behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_a_bounded_demo_delivers_every_route_fills_wuxi_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "syncbus", "demo", "--duration", "30", "--approve-after", "12",
         "--dir", str(directory)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "SYNCBUS_BOOTSTRAP"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo: OK" in done.stdout
    # the demo's broker is secure: a pending grant and another city's share are refused
    refused = {line for line in done.stdout.splitlines() if "refused, as it must be" in line}
    assert any("'city.wuxi'" in line for line in refused), done.stdout[-3000:]
    assert any("'city.nanjing'" in line and "share.city.suzhou." in line for line in refused)
    assert "NOT REFUSED" not in done.stdout
    assert "routes in force: 24, delivered: 24" in done.stdout
    wuxi = next(line for line in done.stdout.splitlines() if line.startswith("Wuxi's resident"))
    assert "0 rows before the approval" in wuxi and not wuxi.endswith(" 0 at the end")
    assert _processes_mentioning(str(directory)) == []
