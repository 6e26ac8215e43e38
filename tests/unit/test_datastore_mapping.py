"""Pure parts of the datastores: Calico's etcd key layout, the Kubernetes mappings (Node ⇄ Node
annotations, WorkloadEndpoint ⇄ Pod annotations, CRD apiVersion) and backend_from_env's errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from wren.datastore.connect import backend_from_env
from wren.datastore.etcd import EtcdBackend, key_for, secret_env_name
from wren.datastore.kubernetes import (
    crd_to_v3,
    node_patch,
    node_to_v3,
    parse_wep_name,
    pod_to_wep,
    v3_to_crd,
    wep_name,
    wep_patch,
)
from wren.kinds import kind_by_name


# -- etcd -------------------------------------------------------------------------------------
def test_etcd_bodies_share_their_key_and_repeated_value_strings() -> None:
    def kv(name: str, rev: int) -> dict[str, Any]:
        body = {"kind": "WorkloadEndpoint", "metadata": {"name": name, "namespace": "ns"},
                "spec": {"node": "n1", "interfaceName": f"cali{name}"}}
        raw = json.dumps(body).encode()
        return {"value": base64.b64encode(raw).decode(), "mod_revision": str(rev)}

    a, b = EtcdBackend._decode(kv("a", 5)), EtcdBackend._decode(kv("b", 6))
    assert a == {"kind": "WorkloadEndpoint",
                 "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "5"},
                 "spec": {"node": "n1", "interfaceName": "calia"}}
    key_a = next(k for k in a["spec"] if k == "interfaceName")
    key_b = next(k for k in b["spec"] if k == "interfaceName")
    assert key_a is key_b
    assert a["spec"]["node"] is b["spec"]["node"]
    assert a["metadata"]["namespace"] is b["metadata"]["namespace"]


def test_etcd_keys_follow_calicos_layout() -> None:
    assert (key_for(kind_by_name("IPPool"), "p1")
            == "/calico/resources/v3/projectcalico.org/ippools/p1")
    assert (key_for(kind_by_name("wep"), "n-k8s-p-eth0", "ns1")
            == "/calico/resources/v3/projectcalico.org/workloadendpoints/ns1/n-k8s-p-eth0")
    with pytest.raises(ValueError, match="namespace is required"):
        key_for(kind_by_name("wep"), "x")


def test_etcd_secret_variable_names_are_upper_case_with_underscores() -> None:
    assert secret_env_name("bgp-secrets", "peer.a") == "WREN_SECRET_BGP_SECRETS_PEER_A"


# -- Kubernetes: WorkloadEndpoint names -------------------------------------------------------
def test_wep_names_double_dashes_and_parse_back() -> None:
    name = wep_name("node-1", "web-abc-123", "eth0")
    assert name == "node--1-k8s-web--abc--123-eth0"
    assert parse_wep_name(name) == ("node-1", "web-abc-123", "eth0")


@pytest.mark.parametrize("name", ["plain", "a-b-c-d", "n-k8s-p", "n-k8s--p-eth0"])
def test_names_that_are_not_wep_names_do_not_parse(name: str) -> None:
    assert parse_wep_name(name) is None


# -- Kubernetes: pods -------------------------------------------------------------------------
def pod(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "web-1", "namespace": "prod", "resourceVersion": "77",
                     "labels": {"app": "web"},
                     "annotations": {"cni.projectcalico.org/podIPs": "10.0.0.5/32,fd00::5/128",
                                     "cni.projectcalico.org/podIP": "10.0.0.5/32",
                                     "cni.projectcalico.org/containerID": "c0ffee",
                                     "cni.wren.io/interfaceName": "cali12345",
                                     "cni.wren.io/mac": "ee:ee:ee:ee:ee:ee"}},
        "spec": {"nodeName": "n1", "serviceAccountName": "sa1",
                 "containers": [{"name": "c", "ports": [
                     {"name": "http", "containerPort": 80, "protocol": "TCP"},
                     {"containerPort": 81}]}]},
        "status": {"phase": "Running"},
    }
    for path, value in over.items():
        section, key = path.split("__")
        body[section][key] = value
    return body


def test_a_pod_with_cni_annotations_is_a_workload_endpoint() -> None:
    wep = pod_to_wep(pod())
    assert wep == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": "n1-k8s-web--1-eth0", "namespace": "prod", "resourceVersion": "77",
            "labels": {"app": "web", "projectcalico.org/namespace": "prod",
                       "projectcalico.org/orchestrator": "k8s",
                       "projectcalico.org/serviceaccount": "sa1"},
        },
        "spec": {
            "orchestrator": "k8s", "node": "n1", "pod": "web-1", "endpoint": "eth0",
            "ipNetworks": ["10.0.0.5/32", "fd00::5/128"],
            "profiles": ["kns.prod", "ksa.prod.sa1"],
            "containerID": "c0ffee", "interfaceName": "cali12345", "mac": "ee:ee:ee:ee:ee:ee",
            "serviceAccountName": "sa1",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
        },
    }


@pytest.mark.parametrize("over", [
    {"spec__nodeName": ""},
    {"spec__hostNetwork": True},
    {"status__phase": "Succeeded"},
    {"status__phase": "Failed"},
    {"metadata__annotations": {}},
])
def test_pods_that_are_not_endpoints(over: dict[str, Any]) -> None:
    assert pod_to_wep(pod(**over)) is None


def test_wep_patch_writes_the_cni_annotations_and_removing_nulls_them() -> None:
    wep = pod_to_wep(pod())
    assert wep is not None
    patch = wep_patch(wep, resource_version="77")
    assert patch["metadata"]["resourceVersion"] == "77"
    assert patch["metadata"]["annotations"]["cni.projectcalico.org/podIP"] == "10.0.0.5/32"
    assert (patch["metadata"]["annotations"]["cni.projectcalico.org/podIPs"]
            == "10.0.0.5/32,fd00::5/128")
    removal = wep_patch(None)
    assert set(removal["metadata"]["annotations"].values()) == {None}
    assert "resourceVersion" not in removal["metadata"]


# -- Kubernetes: nodes ------------------------------------------------------------------------
K8S_NODE = {
    "metadata": {"name": "n1", "resourceVersion": "9", "labels": {"zone": "a", "rr": "true"},
                 "annotations": {"projectcalico.org/IPv4Address": "192.0.2.1/24",
                                 "projectcalico.org/ASNumber": "64601",
                                 "projectcalico.org/IPv4VXLANTunnelAddr": "10.0.0.1",
                                 "node.alpha.kubernetes.io/ttl": "0"},
                 "managedFields": [{"manager": "kubelet"}]},
    "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"},
                             {"type": "Hostname", "address": "n1"}]},
}


def test_kubernetes_node_annotations_become_the_v3_node_spec() -> None:
    assert node_to_v3(K8S_NODE) == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": "n1", "resourceVersion": "9", "labels": {"zone": "a", "rr": "true"}},
        "spec": {"bgp": {"ipv4Address": "192.0.2.1/24", "asNumber": 64601},
                 "ipv4VXLANTunnelAddr": "10.0.0.1",
                 "addresses": [{"address": "192.0.2.1", "type": "InternalIP"}],
                 "orchRefs": [{"nodeName": "n1", "orchestrator": "k8s"}]},
    }


def test_node_patch_sets_labels_exactly_and_touches_only_calico_annotations() -> None:
    body = node_to_v3(K8S_NODE)
    body["metadata"]["labels"] = {"zone": "b"}
    del body["spec"]["ipv4VXLANTunnelAddr"]
    patch = node_patch(body, K8S_NODE)
    assert patch["metadata"]["labels"] == {"zone": "b", "rr": None}
    annotations = patch["metadata"]["annotations"]
    assert annotations["projectcalico.org/IPv4Address"] == "192.0.2.1/24"
    assert annotations["projectcalico.org/ASNumber"] == "64601"
    assert annotations["projectcalico.org/IPv4VXLANTunnelAddr"] is None
    assert "node.alpha.kubernetes.io/ttl" not in annotations
    assert patch["metadata"]["resourceVersion"] == "9"


def test_node_patch_without_labels_leaves_labels_alone_and_remove_clears_annotations() -> None:
    body = {"kind": "Node", "metadata": {"name": "n1"}, "spec": {"bgp": {"asNumber": 1}}}
    assert "labels" not in node_patch(body, K8S_NODE)["metadata"]
    removal = node_patch(body, K8S_NODE, remove=True)
    assert set(removal["metadata"]["annotations"].values()) == {None}


# -- Kubernetes: CRDs -------------------------------------------------------------------------
def test_crd_objects_convert_to_v3_and_back_keeping_only_useful_metadata() -> None:
    obj = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
           "metadata": {"name": "p", "resourceVersion": "5", "generation": 1,
                        "managedFields": [{}], "uid": "u1"},
           "spec": {"cidr": "10.0.0.0/16"}}
    v3 = crd_to_v3(obj)
    assert v3 == {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                  "metadata": {"name": "p", "resourceVersion": "5", "uid": "u1"},
                  "spec": {"cidr": "10.0.0.0/16"}}
    back = v3_to_crd(v3)
    assert back["apiVersion"] == "crd.projectcalico.org/v1"
    assert back["spec"] == obj["spec"]


# -- backend_from_env -------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "variable"), [
    ({"DATASTORE_TYPE": "consul"}, "DATASTORE_TYPE"),
    ({"DATASTORE_TYPE": "etcdv3"}, "ETCD_ENDPOINTS"),
    ({"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "127.0.0.1:2379"}, "ETCD_ENDPOINTS"),
    ({"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://127.0.0.1:2379",
      "ETCD_CA_CERT_FILE": "/nonexistent/ca.pem"}, "ETCD_CA_CERT_FILE"),
    ({"DATASTORE_TYPE": "kubernetes", "KUBECONFIG": "/nonexistent/kubeconfig"}, "KUBECONFIG"),
])
def test_a_bad_setting_is_a_value_error_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        backend_from_env(env)


def test_etcd_cert_without_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ValueError, match="ETCD_KEY_FILE"):
        backend_from_env({"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "https://127.0.0.1:1",
                          "ETCD_CERT_FILE": str(cert)})


def test_etcdv3_with_endpoints_builds_an_etcd_backend_without_connecting() -> None:
    backend = backend_from_env({"DATASTORE_TYPE": "etcdv3",
                                "ETCD_ENDPOINTS": "http://127.0.0.1:1, http://127.0.0.1:2"})
    assert isinstance(backend, EtcdBackend)
    backend.close()


def test_kubernetes_outside_a_cluster_without_kubeconfig_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="in-cluster"):
        backend_from_env({})
