"""The Grafana files under compose/grafana agree with each other (Grafana itself is not
run here; every panel's query runs against a real Prometheus in test_sla_monitor)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "compose" / "grafana"


def test_every_panel_queries_the_provisioned_data_source() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    dashboard = json.loads((GRAFANA / "dashboards/syncbus-sla.json").read_text())
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles)) >= 8
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/syncbus.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
