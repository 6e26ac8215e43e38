"""Liveness and readiness for Kubernetes probes (`/liveness`, `/readiness` on 9099, as Felix).

Each part of the agent reports under its own name; the agent is ready only when every reporter
is, and the readiness body says which one is not and why — "kernel has no ipip support" or "first
datastore sync incomplete" — so `kubectl describe pod` tells the operator what to fix.
"""

from __future__ import annotations

import json
import socketserver
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HealthAggregator", "HealthServer", "Report"]


@dataclass(frozen=True, slots=True)
class Report:
    live: bool
    ready: bool
    detail: str = ""


class HealthAggregator:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[str, Report] = {}

    def report(self, name: str, *, live: bool = True, ready: bool, detail: str = "") -> None:
        with self._lock:
            self._reports[name] = Report(live, ready, detail)

    def snapshot(self) -> dict[str, Report]:
        with self._lock:
            return dict(self._reports)

    @property
    def live(self) -> bool:
        return all(r.live for r in self.snapshot().values())

    @property
    def ready(self) -> bool:
        reports = self.snapshot()
        return bool(reports) and all(r.ready for r in reports.values())

    def as_json(self) -> str:
        reports = self.snapshot()
        return json.dumps(
            {
                "live": self.live,
                "ready": self.ready,
                "reporters": {
                    name: {"live": r.live, "ready": r.ready, "detail": r.detail}
                    for name, r in sorted(reports.items())
                },
            },
            indent=2,
        )


class _QuickBindServer(ThreadingHTTPServer):
    """HTTPServer.server_bind asks the resolver for the host's FQDN (a reverse lookup of the
    health address); with an unreachable resolver that stalled every agent start by 5 s."""

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class HealthServer:
    """A tiny HTTP server on its own thread; it only reads the aggregator."""

    def __init__(self, health: HealthAggregator, *, host: str, port: int) -> None:
        aggregator = health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path in ("/liveness", "/livez"):
                    ok = aggregator.live
                elif path in ("/readiness", "/readyz"):
                    ok = aggregator.ready
                else:
                    self.send_error(404)
                    return
                body = aggregator.as_json().encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = _QuickBindServer((host, port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
