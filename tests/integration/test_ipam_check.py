"""`wrenctl ipam check` against real etcd finds a leak made by hand, and release clears it."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.test_cni_support import WRENCTL_EXE, Lab, lab_for, netconf, run_plugin
from tests.servers import EtcdServer
from wren.datastore.etcd import EtcdBackend
from wren.kinds import kind_by_name

pytestmark = pytest.mark.integration


@pytest.fixture
def lab(etcd_server: EtcdServer) -> Iterator[Lab]:
    with lab_for(etcd_server.endpoint) as lab:
        yield lab


def wrenctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DATASTORE_TYPE": "etcdv3",
           "ETCD_ENDPOINTS": endpoint}
    return subprocess.run([str(WRENCTL_EXE), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_check_finds_a_pod_address_leaked_by_a_missing_del(
    etcd_server: EtcdServer, lab: Lab
) -> None:
    db = EtcdBackend([etcd_server.endpoint])
    try:
        db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                   "metadata": {"name": "pool1"},
                   "spec": {"cidr": "10.84.0.0/24", "blockSize": 26}})
        db.create({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                   "metadata": {"name": "n1"}, "spec": {}})
        node_ns = lab.node("n1")
        res = run_plugin("ADD", node_ns=node_ns,
                         conf=netconf(endpoint=etcd_server.endpoint, node="n1"),
                         container_id=f"c{lab.tag}", netns=lab.pod(), pod="web-0")
        assert res.code == 0, res.body
        ip = str(ipaddress.ip_interface(res.body["ips"][0]["address"]).ip)
        assert wrenctl(etcd_server.endpoint, "ipam", "check").returncode == 0

        # The pod disappears without a CNI DEL: its endpoint goes, its address stays.
        (wep,) = db.list(kind_by_name("WorkloadEndpoint")).items
        db.delete(kind_by_name("WorkloadEndpoint"), wep["metadata"]["name"], "default")
        out = wrenctl(etcd_server.endpoint, "ipam", "check")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "leaked" in out.stdout and ip in out.stdout and "default/web-0" in out.stdout

        show = wrenctl(etcd_server.endpoint, "ipam", "show", "--show-blocks")
        assert show.returncode == 0 and "10.84.0.0/24" in show.stdout and "n1" in show.stdout

        assert wrenctl(etcd_server.endpoint, "ipam", "release", "--ip", ip).returncode == 0
        out = wrenctl(etcd_server.endpoint, "ipam", "check")
        assert out.returncode == 0, out.stdout
    finally:
        db.close()
