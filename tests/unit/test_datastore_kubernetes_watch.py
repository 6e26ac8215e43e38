"""The Kubernetes watch stream's bookmarks and in-stream errors, against a canned HTTP server.

The test kube-apiserver runs without a watch cache (so compaction gives a real 410), and without
one it never sends bookmarks; this loopback server plays the stream instead, for that case only.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s

from wren.datastore.kubernetes import KubernetesBackend
from wren.errors import Compacted, DatastoreUnavailable
from wren.kinds import kind_by_name

POOL = kind_by_name("IPPool")


def obj(name: str, rv: str) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
            "metadata": {"name": name, "resourceVersion": rv}, "spec": {"cidr": "10.0.0.0/16"}}


class Script:
    """Per watch request (in order): the lines to stream; records each request's resourceVersion."""

    def __init__(self, streams: list[list[dict[str, Any]]]) -> None:
        self.streams = streams
        self.asked: list[str] = []


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(script: Script) -> KubernetesBackend:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                script.asked.append(query.get("resourceVersion", [""])[0])
                lines = script.streams.pop(0) if script.streams else []
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in lines:
                    data = (json.dumps(line) + "\n").encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args: Any) -> None:
                return None

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        config = k8s.Configuration()
        config.host = f"http://127.0.0.1:{server.server_address[1]}"
        config.retries = 0
        return KubernetesBackend(k8s.ApiClient(config))

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_bookmark_moves_the_point_the_watch_resumes_from(serve: Any) -> None:
    script = Script([
        [{"type": "ADDED", "object": obj("a", "11")},
         {"type": "BOOKMARK", "object": {"kind": "IPPool", "metadata": {"resourceVersion": "50"}}}],
        [{"type": "MODIFIED", "object": obj("a", "51")}],
    ])
    backend = serve(script)
    stop = threading.Event()
    events = []
    for event in backend.watch(POOL, revision="10", stop=stop):
        events.append(event)
        if len(events) == 2:
            stop.set()
    assert [(e.type, e.revision) for e in events] == [("ADDED", "11"), ("MODIFIED", "51")]
    assert script.asked == ["10", "50"], "the second watch starts from the bookmark"
    assert events[0].body["apiVersion"] == "projectcalico.org/v3"


def test_an_in_stream_410_is_compacted_and_other_errors_are_unavailable(serve: Any) -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                        "message": "too old resource version: 10 (60)"}}
    backend = serve(Script([[gone]]))
    with pytest.raises(Compacted, match="too old"):
        list(backend.watch(POOL, revision="10", stop=threading.Event()))
    broken = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd down"}}
    backend = serve(Script([[broken]]))
    with pytest.raises(DatastoreUnavailable, match="etcd down"):
        list(backend.watch(POOL, revision="10", stop=threading.Event()))


def test_a_stream_that_closes_at_once_is_unavailable_not_a_busy_loop(serve: Any) -> None:
    script = Script([])
    backend = serve(script)
    with pytest.raises(DatastoreUnavailable, match="closed at once"):
        list(backend.watch(POOL, revision="10", stop=threading.Event()))
    assert script.asked == ["10"]
