"""The agent on the Kubernetes datastore (the real kube-apiserver): it registers its address in
the Kubernetes Node's annotations and programs a pod the CNI plugin recorded in the Pod."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.test_cni_support import Lab, lab_for, netconf, run_plugin
from tests.servers import KubeAPIServer
from wren.datastore.backend import Backend
from wren.datastore.connect import backend_from_env

pytestmark = pytest.mark.integration
NODE = "wagent-k8s-n1"
POD = "wagent-web-0"


@pytest.fixture
def kube(kube_apiserver: KubeAPIServer) -> Iterator[tuple[KubeAPIServer, requests.Session]]:
    session = kube_apiserver.session()
    yield kube_apiserver, session
    url = kube_apiserver.url
    session.delete(f"{url}/api/v1/namespaces/default/pods/{POD}",
                   params={"gracePeriodSeconds": "0"}, timeout=10)
    session.delete(f"{url}/api/v1/nodes/{NODE}", timeout=10)
    for plural in ("ippools", "ipamblocks", "blockaffinities", "ipamhandles"):
        session.delete(f"{url}/apis/crd.projectcalico.org/v1/{plural}", timeout=10)


@pytest.fixture
def kbackend(kube_apiserver: KubeAPIServer) -> Iterator[Backend]:
    backend = backend_from_env({"DATASTORE_TYPE": "kubernetes",
                                "KUBECONFIG": str(kube_apiserver.kubeconfig_path)})
    yield backend
    backend.close()


@pytest.fixture
def lab(kube_apiserver: KubeAPIServer) -> Iterator[Lab]:
    with lab_for(kube_apiserver.etcd.endpoint) as lab:
        yield lab


def test_agent_on_kubernetes_registers_its_address_and_programs_the_pod(
    kube: tuple[KubeAPIServer, requests.Session], kbackend: Backend, lab: Lab, tmp_path: Path
) -> None:
    server, session = kube
    assert session.post(f"{server.url}/api/v1/nodes", json={"metadata": {"name": NODE}},
                        timeout=10).status_code == 201
    assert session.post(f"{server.url}/api/v1/namespaces/default/pods", json={
        "metadata": {"name": POD}, "spec": {"nodeName": NODE, "containers": [
            {"name": "c", "image": "busybox"}]}}, timeout=10).status_code == 201
    kbackend.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                     "metadata": {"name": "wagent-pool"},
                     "spec": {"cidr": "10.91.0.0/24", "blockSize": 26}})
    node_ns = lab.node("n1", extra_ports=(server.port,))
    env = {**os.environ, "NODENAME": NODE, "DATASTORE_TYPE": "kubernetes",
           "KUBECONFIG": str(server.kubeconfig_path), "IP": "autodetect",
           "IP_AUTODETECTION_METHOD": "interface=up0", "WREN_RUN_DIR": str(tmp_path / "run"),
           "WREN_STATE_DIR": str(tmp_path / "state"), "FELIX_PROMETHEUSMETRICSENABLED": "false"}
    agent = subprocess.Popen(["ip", "netns", "exec", node_ns,
                              str(Path(sys.executable).parent / "wren-agent")], env=env,
                             stdout=(tmp_path / "agent.log").open("w"), stderr=subprocess.STDOUT)
    try:
        conf = netconf(endpoint="", node=NODE, datastore_type="kubernetes",
                       kubernetes={"kubeconfig": str(server.kubeconfig_path)})
        res = run_plugin("ADD", node_ns=node_ns, conf=conf, container_id="agentk8s1",
                         netns=lab.pod(), pod=POD)
        assert res.code == 0, (res.body, res.stderr[-2000:])
        ip = str(ipaddress.ip_interface(res.body["ips"][0]["address"]).ip)

        def annotations() -> dict[str, str]:
            node = session.get(f"{server.url}/api/v1/nodes/{NODE}", timeout=10).json()
            return node["metadata"].get("annotations") or {}

        def agent_routes() -> str:
            return subprocess.run(["ip", "-n", node_ns, "route", "show", "proto", "80"],
                                  capture_output=True, text=True, check=False).stdout

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            annotations().get("projectcalico.org/IPv4Address") == "192.168.250.1/24"
            and "blackhole 10.91.0." in agent_routes()
        ):
            time.sleep(0.5)
        assert annotations().get("projectcalico.org/IPv4Address") == "192.168.250.1/24", \
            (tmp_path / "agent.log").read_text()[-3000:]
        routes = agent_routes()
        block = ipaddress.ip_network(f"{ip}/26", strict=False)
        assert f"{ip} dev cali" in routes and f"blackhole {block}" in routes, routes
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
