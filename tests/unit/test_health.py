import json
import urllib.error
import urllib.request

import pytest

from agent.health import HealthAggregator, HealthServer


def test_ready_only_when_every_reporter_is_ready_and_body_says_why() -> None:
    health = HealthAggregator()
    assert not health.ready  # nobody reported yet: not ready
    health.report("datastore", ready=True)
    health.report("ipip", ready=False, detail="kernel has no ipip support")
    assert health.live and not health.ready
    body = json.loads(health.as_json())
    assert body["reporters"]["ipip"]["detail"] == "kernel has no ipip support"
    health.report("ipip", ready=True)
    assert health.ready


def test_probe_endpoints_answer_200_or_503() -> None:
    health = HealthAggregator()
    server = HealthServer(health, host="127.0.0.1", port=0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        health.report("sync", ready=False, detail="first sync incomplete")
        with urllib.request.urlopen(f"{base}/liveness") as resp:
            assert resp.status == 200
        try:
            urllib.request.urlopen(f"{base}/readiness")
            raise AssertionError("readiness must fail while not ready")
        except urllib.error.HTTPError as err:
            assert err.code == 503
            assert b"first sync incomplete" in err.read()
        health.report("sync", ready=True)
        with urllib.request.urlopen(f"{base}/readiness") as resp:
            assert resp.status == 200
    finally:
        server.stop()


def test_binding_the_health_server_asks_no_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    # http.server's server_bind does a reverse lookup (getfqdn): 5 s per agent start when the
    # node's resolver does not answer.
    import socket

    def no_dns(*_args: object) -> str:
        raise AssertionError("the health server asked the resolver")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    server = HealthServer(HealthAggregator(), host="127.0.0.1", port=0)
    server.start()
    assert server.port > 0
    server.stop()
