"""etcd-only behaviour: TLS with client certificates, several endpoints, Calico's key layout."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.servers import EtcdServer, free_port
from wren.datastore import etcd
from wren.datastore.backend import Body
from wren.datastore.connect import backend_from_env
from wren.errors import DatastoreUnavailable, NotFound
from wren.kinds import kind_by_name

pytestmark = pytest.mark.integration

POOL = kind_by_name("IPPool")


def pool(name: str) -> Body:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": "10.50.0.0/16"}}


@pytest.fixture
def tls_etcd() -> Iterator[EtcdServer]:
    with EtcdServer(tls=True) as server:
        yield server


def test_tls_with_client_certificate_from_etcd_variables(tls_etcd: EtcdServer) -> None:
    env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": tls_etcd.endpoint,
           "ETCD_CA_CERT_FILE": str(tls_etcd.ca_cert),
           "ETCD_CERT_FILE": str(tls_etcd.client_cert),
           "ETCD_KEY_FILE": str(tls_etcd.client_key)}
    backend = backend_from_env(env)
    try:
        backend.create(pool("tls-pool"))
        assert backend.get(POOL, "tls-pool")["spec"]["cidr"] == "10.50.0.0/16"
    finally:
        backend.close()
    without_cert = backend_from_env({k: v for k, v in env.items()
                                     if k not in ("ETCD_CERT_FILE", "ETCD_KEY_FILE")})
    try:
        with pytest.raises(DatastoreUnavailable):
            without_cert.get(POOL, "tls-pool")
    finally:
        without_cert.close()


def test_a_dead_endpoint_in_the_list_is_skipped(shared_etcd_server: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    backend = backend_from_env({"DATASTORE_TYPE": "etcdv3",
                                "ETCD_ENDPOINTS": f"{dead},{shared_etcd_server.endpoint}"})
    try:
        created = backend.create(pool("failover-pool"))
        assert backend.get(POOL, "failover-pool") == created
        backend.delete(POOL, "failover-pool")
    finally:
        backend.close()


def test_resources_are_stored_under_calicos_keys_without_resource_version(
    shared_etcd_server: EtcdServer,
) -> None:
    backend = backend_from_env({"DATASTORE_TYPE": "etcdv3",
                                "ETCD_ENDPOINTS": shared_etcd_server.endpoint})
    try:
        created = backend.create(pool("layout-pool"))
        key = "/calico/resources/v3/projectcalico.org/ippools/layout-pool"
        resp = requests.post(f"{shared_etcd_server.endpoint}/v3/kv/range",
                             json={"key": base64.b64encode(key.encode()).decode()}, timeout=5)
        kv = resp.json()["kvs"][0]
        stored = json.loads(base64.b64decode(kv["value"]))
        assert stored["spec"] == {"cidr": "10.50.0.0/16"}
        assert "resourceVersion" not in stored["metadata"]
        assert created["metadata"]["resourceVersion"] == kv["mod_revision"]
        backend.delete(POOL, "layout-pool")
    finally:
        backend.close()


def test_a_list_in_pages_is_one_snapshot(shared_etcd_server: EtcdServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd, "LIST_PAGE", 3)
    backend = backend_from_env({"DATASTORE_TYPE": "etcdv3",
                                "ETCD_ENDPOINTS": shared_etcd_server.endpoint})
    assert isinstance(backend, etcd.EtcdBackend)
    names = [f"page-pool-{i}" for i in range(8)]
    try:
        for name in names:
            backend.create(pool(name))
        pages: list[dict[str, Any]] = []
        post = backend._post

        def post_then_write(what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
            if path != "/kv/range":
                return post(what, path, payload)
            pages.append(dict(payload))
            result = post(what, path, payload)
            if len(pages) == 1:
                backend.create(pool("page-pool-late"))  # written between two pages
            return result

        monkeypatch.setattr(backend, "_post", post_then_write)
        listing = backend.list(POOL)
        assert [b["metadata"]["name"] for b in listing.items] == names
        assert len(pages) == 3 and all(p["limit"] == 3 for p in pages)
        assert {p.get("revision") for p in pages[1:]} == {listing.revision}
        monkeypatch.undo()
        stop = threading.Event()
        events = backend.watch(POOL, revision=listing.revision, stop=stop)
        first = next(events)  # the late write, after the snapshot
        stop.set()
        assert first.body["metadata"]["name"] == "page-pool-late"
    finally:
        for name in [*names, "page-pool-late"]:
            with contextlib.suppress(NotFound):
                backend.delete(POOL, name)
        backend.close()
