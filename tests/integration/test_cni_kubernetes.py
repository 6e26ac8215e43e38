"""The `wren` plugin with the Kubernetes datastore: IPAM in CRDs, the endpoint in the Pod."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.integration.test_cni_support import Lab, lab_for, links, netconf, ping, run_plugin
from tests.servers import KubeAPIServer
from wren.datastore.backend import Backend
from wren.datastore.connect import backend_from_env
from wren.errors import DatastoreUnavailable
from wren.kinds import kind_by_name

pytestmark = pytest.mark.integration

WEP = kind_by_name("WorkloadEndpoint")
HANDLE = kind_by_name("IPAMHandle")


@pytest.fixture
def kube(kube_apiserver: KubeAPIServer) -> Iterator[tuple[KubeAPIServer, requests.Session]]:
    session = kube_apiserver.session()
    yield kube_apiserver, session
    url = kube_apiserver.url
    session.delete(f"{url}/api/v1/namespaces/default/pods/wcni-web-0",
                   params={"gracePeriodSeconds": "0"}, timeout=10)
    session.delete(f"{url}/api/v1/nodes/wcni-n1", timeout=10)
    for plural in ("ippools", "ipamblocks", "blockaffinities", "ipamhandles"):
        session.delete(f"{url}/apis/crd.projectcalico.org/v1/{plural}", timeout=10)


RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
RBAC_API = "apis/rbac.authorization.k8s.io/v1"


@pytest.fixture
def plugin_kubeconfig(kube: tuple[KubeAPIServer, requests.Session]) -> Iterator[Path]:
    """A kubeconfig for the plugins' service account, bound to its ClusterRole exactly as
    deploy/rbac.yaml writes them: the plugin runs with what a cluster would give it."""
    server, session = kube
    docs = [d for d in yaml.safe_load_all(RBAC.read_text())
            if d and d["metadata"]["name"] == "wren-cni-plugin"
            and d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert len(docs) == 2
    created = []
    try:
        for doc in docs:
            plural = "clusterroles" if doc["kind"] == "ClusterRole" else "clusterrolebindings"
            url = f"{server.url}/{RBAC_API}/{plural}"
            assert session.post(url, json=doc, timeout=10).status_code == 201
            created.append(f"{url}/{doc['metadata']['name']}")
        yield server.kubeconfig_as("wren-system:wren-cni-plugin")
    finally:
        for url in created:
            session.delete(url, timeout=10)


@pytest.fixture
def kbackend(kube_apiserver: KubeAPIServer) -> Iterator[Backend]:
    backend = backend_from_env({"DATASTORE_TYPE": "kubernetes",
                                "KUBECONFIG": str(kube_apiserver.kubeconfig_path)})
    yield backend
    backend.close()


@pytest.fixture
def lab(kube_apiserver: KubeAPIServer) -> Iterator[Lab]:
    # The etcd forwarder is unused here (the plugin talks to the API server only).
    with lab_for(kube_apiserver.etcd.endpoint) as lab:
        yield lab


def test_add_records_the_endpoint_in_the_pod_and_del_removes_it(
    kube: tuple[KubeAPIServer, requests.Session], kbackend: Backend, lab: Lab,
    plugin_kubeconfig: Path,
) -> None:
    server, session = kube
    assert session.post(f"{server.url}/api/v1/nodes", json={
        "metadata": {"name": "wcni-n1", "labels": {"kubernetes.io/hostname": "wcni-n1"}}},
        timeout=10).status_code == 201
    assert session.post(f"{server.url}/api/v1/namespaces/default/pods", json={
        "metadata": {"name": "wcni-web-0", "labels": {"app": "web"}},
        "spec": {"nodeName": "wcni-n1",
                 "containers": [{"name": "c", "image": "busybox"}]}},
        timeout=10).status_code == 201
    kbackend.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                     "metadata": {"name": "wcni-pool"},
                     "spec": {"cidr": "10.90.0.0/24", "blockSize": 26}})
    node_ns = lab.node("n1", extra_ports=(server.port,))
    # As the plugins' own service account (deploy/rbac.yaml), not as the admin.
    conf = netconf(endpoint="", node="wcni-n1", datastore_type="kubernetes",
                   kubernetes={"kubeconfig": str(plugin_kubeconfig)})
    netns = lab.pod()
    res = run_plugin("ADD", node_ns=node_ns, conf=conf, container_id="k8sctr1", netns=netns,
                     pod="wcni-web-0")
    assert res.code == 0, (res.body, res.stderr[-2000:])
    ip = str(ipaddress.ip_interface(res.body["ips"][0]["address"]).ip)
    assert ping(node_ns, ip)

    wep = kbackend.get(WEP, "wcni--n1-k8s-wcni--web--0-eth0", "default")
    assert wep["spec"]["ipNetworks"] == [f"{ip}/32"]
    assert wep["spec"]["containerID"] == "k8sctr1"
    assert wep["metadata"]["labels"]["app"] == "web"  # the pod's own labels
    pod = session.get(f"{server.url}/api/v1/namespaces/default/pods/wcni-web-0",
                      timeout=10).json()
    assert pod["metadata"]["annotations"]["cni.projectcalico.org/podIP"] == f"{ip}/32"
    assert [h["spec"]["handleID"] for h in kbackend.list(HANDLE).items] == [
        "k8s-pod-network.k8sctr1"]

    for _ in range(2):
        res = run_plugin("DEL", node_ns=node_ns, conf=conf, container_id="k8sctr1",
                         netns=netns, pod="wcni-web-0")
        assert res.code == 0, (res.body, res.stderr[-2000:])
    assert links(node_ns) == []
    assert kbackend.list(HANDLE).items == []
    pod = session.get(f"{server.url}/api/v1/namespaces/default/pods/wcni-web-0",
                      timeout=10).json()
    assert "cni.projectcalico.org/podIP" not in (pod["metadata"].get("annotations") or {})


def test_the_plugins_account_may_not_touch_bgp_or_felix_resources(
        plugin_kubeconfig: Path) -> None:
    backend = backend_from_env({"DATASTORE_TYPE": "kubernetes",
                                "KUBECONFIG": str(plugin_kubeconfig)})
    try:
        backend.list(kind_by_name("IPPool"))  # granted
        for kind in ("BGPPeer", "BGPConfiguration", "FelixConfiguration"):
            with pytest.raises(DatastoreUnavailable, match=r"403|[Ff]orbidden"):
                backend.list(kind_by_name(kind))
    finally:
        backend.close()
