"""The monitor's HTTP server: ``/metrics`` for Prometheus, ``/`` the status page for
sites without Grafana, ``/api/routes`` the page's JSON (also read by ``sla report``)."""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from syncbus.monitor.monitor import Monitor
from syncbus.monitor.rows import monitor_summary

PAGE = files("syncbus.monitor").joinpath("static/status.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, monitor: Monitor, registry: CollectorRegistry, *args: Any) -> None:
        self.monitor, self.registry = monitor, registry
        super().__init__(*args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        elif path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", PAGE)
        elif path == "/api/routes":
            body = json.dumps(monitor_summary(self.monitor)).encode("utf-8")
            self._send(200, "application/json", body)
        else:
            self._send(404, "text/plain", b"not found: try /, /metrics or /api/routes\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a scrape every second is not news."""


def serve(
    monitor: Monitor, registry: CollectorRegistry, host: str, port: int
) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; ``server.server_address`` has the bound port."""
    server = ThreadingHTTPServer((host, port), partial(_Handler, monitor, registry))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="monitor-http", daemon=True).start()
    return server
