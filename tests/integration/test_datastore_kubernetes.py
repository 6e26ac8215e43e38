"""Kubernetes-only mappings, against the real API server: Node ⇄ Kubernetes Node, WorkloadEndpoint
⇄ Pod annotations, Secrets; and etcd's secrets from the environment."""

from __future__ import annotations

import base64
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.servers import EtcdServer, KubeAPIServer
from wren.datastore.backend import Backend, Body, WatchEvent
from wren.datastore.connect import backend_from_env
from wren.datastore.kubernetes import KubernetesNodeMissing
from wren.datastore.watcher import InSync, Update, Watcher, WatcherMessage
from wren.errors import AlreadyExists, Conflict, NotFound, ValidationError
from wren.kinds import kind_by_name

pytestmark = pytest.mark.integration

NODE = kind_by_name("Node")
WEP = kind_by_name("WorkloadEndpoint")


@pytest.fixture
def kube(kube_apiserver: KubeAPIServer) -> Iterator[tuple[KubeAPIServer, requests.Session]]:
    session = kube_apiserver.session()
    yield kube_apiserver, session
    url = kube_apiserver.url
    session.delete(f"{url}/api/v1/namespaces/default/pods", params={"gracePeriodSeconds": "0"},
                   timeout=10)
    session.delete(f"{url}/api/v1/nodes", timeout=10)
    session.delete(f"{url}/api/v1/namespaces/kube-system/secrets",
                   params={"labelSelector": "wren-test=true"}, timeout=10)


@pytest.fixture
def kbackend(kube_apiserver: KubeAPIServer) -> Iterator[Backend]:
    backend = backend_from_env({"DATASTORE_TYPE": "kubernetes",
                                "KUBECONFIG": str(kube_apiserver.kubeconfig_path)})
    yield backend
    backend.close()


def make_node(kube: tuple[KubeAPIServer, requests.Session], name: str) -> None:
    server, session = kube
    resp = session.post(f"{server.url}/api/v1/nodes", json={
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": "a"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]},
    }, timeout=10)
    assert resp.status_code == 201, resp.text


def make_pod(kube: tuple[KubeAPIServer, requests.Session], name: str, node: str,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    server, session = kube
    resp = session.post(f"{server.url}/api/v1/namespaces/default/pods", json={
        "metadata": {"name": name, "labels": {"app": "web"}, "annotations": annotations or {}},
        "spec": {"nodeName": node, "serviceAccountName": "web-sa",
                 "containers": [{"name": "c", "image": "busybox",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    }, timeout=10)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def k8s_node(kube: tuple[KubeAPIServer, requests.Session], name: str) -> dict[str, Any]:
    server, session = kube
    node: dict[str, Any] = session.get(f"{server.url}/api/v1/nodes/{name}", timeout=10).json()
    return node


def test_node_labels_are_the_kubernetes_node_labels_and_bgp_fields_its_annotations(
    kube: tuple[KubeAPIServer, requests.Session], kbackend: Backend
) -> None:
    make_node(kube, "n-map")
    plain = kbackend.get(NODE, "n-map")
    assert plain["metadata"]["labels"]["zone"] == "a"
    assert "bgp" not in plain["spec"]
    assert plain["spec"]["addresses"] == [{"address": "192.0.2.10", "type": "InternalIP"}]
    body: Body = {"apiVersion": "projectcalico.org/v3", "kind": "Node",
                  "metadata": {"name": "n-map"},
            "spec": {"bgp": {"ipv4Address": "192.0.2.10/24", "asNumber": 64600,
                             "routeReflectorClusterID": "224.0.0.1"},
                     "ipv4VXLANTunnelAddr": "10.244.0.1",
                     "vxlanTunnelMACAddr": "66:00:00:00:00:01"}}
    created = kbackend.create(body)
    assert created["spec"]["bgp"] == body["spec"]["bgp"]
    annotations = k8s_node(kube, "n-map")["metadata"]["annotations"]
    assert annotations["projectcalico.org/IPv4Address"] == "192.0.2.10/24"
    assert annotations["projectcalico.org/ASNumber"] == "64600"
    assert annotations["projectcalico.org/IPv4VXLANTunnelAddr"] == "10.244.0.1"
    assert annotations["projectcalico.org/VXLANTunnelMACAddr"] == "66:00:00:00:00:01"
    with pytest.raises(AlreadyExists):
        kbackend.create(body)

    # Update: labels set to exactly the body's, one BGP field removed, others untouched.
    current = kbackend.get(NODE, "n-map")
    current["metadata"]["labels"] = {"kubernetes.io/hostname": "n-map",
                                     "route-reflector": "true"}
    del current["spec"]["bgp"]["routeReflectorClusterID"]
    updated = kbackend.update(current)
    assert updated["metadata"]["labels"] == {"kubernetes.io/hostname": "n-map",
                                             "route-reflector": "true"}
    node = k8s_node(kube, "n-map")
    assert node["metadata"]["labels"] == updated["metadata"]["labels"]
    annotations = node["metadata"]["annotations"]
    assert "projectcalico.org/RouteReflectorClusterID" not in annotations
    assert annotations["projectcalico.org/IPv4Address"] == "192.0.2.10/24"
    assert node["status"]["addresses"]  # status untouched

    with pytest.raises(Conflict):
        kbackend.update(current)  # its resourceVersion is now stale

    # Delete removes Wren's annotations; the Kubernetes Node stays.
    kbackend.delete(NODE, "n-map")
    node = k8s_node(kube, "n-map")
    annotations = node["metadata"].get("annotations") or {}
    assert not any(a.startswith("projectcalico.org/") for a in annotations)
    assert "bgp" not in kbackend.get(NODE, "n-map")["spec"]


def test_creating_a_node_that_kubernetes_does_not_have_says_so(kbackend: Backend) -> None:
    body = {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "ghost"},
            "spec": {"bgp": {"ipv4Address": "192.0.2.99/24"}}}
    with pytest.raises(KubernetesNodeMissing, match="no Kubernetes Node of that name"):
        kbackend.create(body)
    with pytest.raises(NotFound):
        kbackend.get(NODE, "ghost")


def test_workload_endpoint_is_recorded_in_and_derived_from_pod_annotations(
    kube: tuple[KubeAPIServer, requests.Session], kbackend: Backend
) -> None:
    make_node(kube, "n-wep")
    make_pod(kube, "web-1", "n-wep")
    assert kbackend.list(WEP).items == [], "a pod without CNI annotations is no endpoint"
    start = kbackend.list(WEP, "default").revision
    name = "n--wep-k8s-web--1-eth0"
    body: Body = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"node": "n-wep", "pod": "web-1", "endpoint": "eth0",
                     "containerID": "abc123", "ipNetworks": ["10.244.1.5/32", "fd00::5/128"],
                     "interfaceName": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"}}
    created = kbackend.create(body)
    assert created["metadata"]["name"] == name
    assert created["metadata"]["labels"]["app"] == "web"
    assert created["metadata"]["labels"]["projectcalico.org/namespace"] == "default"
    assert created["spec"]["profiles"] == ["kns.default", "ksa.default.web-sa"]
    assert created["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    server, session = kube
    pod = session.get(f"{server.url}/api/v1/namespaces/default/pods/web-1", timeout=10).json()
    ann = pod["metadata"]["annotations"]
    assert ann["cni.projectcalico.org/podIP"] == "10.244.1.5/32"
    assert ann["cni.projectcalico.org/podIPs"] == "10.244.1.5/32,fd00::5/128"
    assert ann["cni.projectcalico.org/containerID"] == "abc123"
    assert ann["cni.wren.io/interfaceName"] == "cali0123456789a"
    assert kbackend.get(WEP, name, "default")["spec"]["ipNetworks"] == body["spec"]["ipNetworks"]
    with pytest.raises(AlreadyExists):
        kbackend.create(body)

    events: list[WatchEvent] = []
    stop = threading.Event()

    def watch() -> None:
        for e in kbackend.watch(WEP, revision=start, stop=stop):
            events.append(e)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    deleted = kbackend.delete(WEP, name, "default")
    assert deleted["spec"]["containerID"] == "abc123"
    with pytest.raises(NotFound):
        kbackend.get(WEP, name, "default")
    deadline = time.monotonic() + 20
    while not any(e.type == "DELETED" for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    # The pod already existed, so the endpoint appears as a MODIFIED pod; consumers treat
    # ADDED and MODIFIED alike.
    assert events[0].type == "MODIFIED" and events[0].body["metadata"]["name"] == name
    assert events[0].body["spec"]["containerID"] == "abc123"
    assert events[-1].type == "DELETED" and events[-1].body["metadata"]["name"] == name


def test_workload_endpoint_for_a_pod_on_another_node_is_refused(
    kube: tuple[KubeAPIServer, requests.Session], kbackend: Backend
) -> None:
    make_node(kube, "n-x")
    make_pod(kube, "web-2", "n-x")
    body: Body = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"namespace": "default", "name": "n--y-k8s-web--2-eth0"},
            "spec": {"node": "n-y", "pod": "web-2", "ipNetworks": ["10.244.1.6/32"]}}
    with pytest.raises(ValidationError, match=r"spec\.node"):
        kbackend.create(body)


def test_secret_value_is_read_from_the_wren_namespace(
    kube: tuple[KubeAPIServer, requests.Session], kbackend: Backend
) -> None:
    server, session = kube
    resp = session.post(f"{server.url}/api/v1/namespaces/kube-system/secrets", json={
        "metadata": {"name": "bgp-secrets", "labels": {"wren-test": "true"}},
        "data": {"peer-a": base64.b64encode(b"s3cret").decode()},
    }, timeout=10)
    assert resp.status_code == 201, resp.text
    assert kbackend.read_secret("bgp-secrets", "peer-a") == "s3cret"
    assert kbackend.read_secret("bgp-secrets", "peer-b") is None


def test_etcd_secrets_come_from_wren_secret_environment_variables(
    shared_etcd_server: EtcdServer,
) -> None:
    backend = backend_from_env({"DATASTORE_TYPE": "etcdv3",
                                "ETCD_ENDPOINTS": shared_etcd_server.endpoint,
                                "WREN_SECRET_BGP_SECRETS_PEER_A": "s3cret"})
    try:
        assert backend.read_secret("bgp-secrets", "peer-a") == "s3cret"
        assert backend.read_secret("bgp-secrets", "peer-b") is None
    finally:
        backend.close()


def test_watcher_on_endpoints_follows_pods_becoming_and_ceasing_to_be_endpoints(
    kube: tuple[KubeAPIServer, requests.Session], kbackend: Backend
) -> None:
    make_node(kube, "n-watch")
    make_pod(kube, "plain", "n-watch")
    make_pod(kube, "ready", "n-watch", {"cni.projectcalico.org/podIPs": "10.244.2.1/32"})
    out: queue.Queue[WatcherMessage] = queue.Queue()
    stop = threading.Event()
    watcher = Watcher(kbackend, WEP, out, stop=stop)
    watcher.start()
    seen: list[WatcherMessage] = []

    def until(pred: Callable[[list[WatcherMessage]], bool]) -> None:
        deadline = time.monotonic() + 20
        while not pred(seen):
            assert time.monotonic() < deadline, f"not delivered: {seen}"
            with contextlib.suppress(queue.Empty):
                seen.append(out.get(timeout=0.2))

    def updates() -> dict[str, Body | None]:
        return {m.key[1]: m.body for m in seen if isinstance(m, Update)}

    try:
        until(lambda m: any(isinstance(x, InSync) for x in m))
        assert set(updates()) == {"n--watch-k8s-ready-eth0"}
        server, session = kube
        patch = {"metadata": {"annotations": {"cni.projectcalico.org/podIPs": "10.244.2.2/32"}}}
        resp = session.patch(f"{server.url}/api/v1/namespaces/default/pods/plain", json=patch,
                             headers={"Content-Type": "application/merge-patch+json"},
                             timeout=10)
        assert resp.status_code == 200, resp.text
        kbackend.delete(WEP, "n--watch-k8s-ready-eth0", "default")
        until(lambda m: len(updates()) == 2 and updates()["n--watch-k8s-ready-eth0"] is None)
        added = updates()["n--watch-k8s-plain-eth0"]
        assert added is not None and added["spec"]["ipNetworks"] == ["10.244.2.2/32"]
    finally:
        stop.set()
        watcher.join(10)
    assert not watcher.is_alive()
