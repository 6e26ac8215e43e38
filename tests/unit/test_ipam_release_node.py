"""Deleting a node releases what it held, as `calicoctl delete node` does."""

from click.testing import CliRunner

from wren.cli.context import CliContext
from wren.cli.main import cli
from wren.client import Client
from wren.datastore.memory import MemoryBackend
from wren.ipam.allocator import Ipam
from wren.model import parse


def setup() -> tuple[MemoryBackend, Ipam]:
    backend = MemoryBackend()
    client = Client(backend)
    client.create(parse({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                         "metadata": {"name": "p"},
                         "spec": {"cidr": "10.65.0.0/16", "vxlanMode": "Always"}}))
    for node in ("n1", "n2"):
        client.create(parse({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                             "metadata": {"name": node}, "spec": {}}))
    ipam = Ipam(backend, sleep=lambda _s: None)
    return backend, ipam


def test_release_node_frees_addresses_tunnels_endpoints_and_empty_blocks() -> None:
    backend, ipam = setup()
    (pod_ip,) = ipam.auto_assign(handle_id="net.c1", node="n1", attrs={"node": "n1"})
    ipam.tunnel_address(node="n1", kind="vxlan")
    (other,) = ipam.auto_assign(handle_id="net.c2", node="n2", attrs={"node": "n2"})
    backend.create({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                    "metadata": {"name": "n1-k8s-a-eth0", "namespace": "default"},
                    "spec": {"node": "n1", "ipNetworks": [f"{pod_ip}/32"]}})
    freed = ipam.release_node("n1")
    assert pod_ip in freed.ips and len(freed.ips) == 2
    assert freed.endpoints == 1 and freed.blocks == 1
    assert ipam.ips_by_handle("net.c1") == []
    assert [b.affinity for b in ipam.blocks()] == ["host:n2"]
    assert ipam.ips_by_handle("net.c2") == [other]  # the other node keeps its address
    report = ipam.check()
    assert report.ok, report.problems


def test_wrenctl_delete_node_releases_its_ipam() -> None:
    backend, ipam = setup()
    ipam.auto_assign(handle_id="net.c1", node="n1", attrs={"node": "n1"})
    result = CliRunner().invoke(cli, ["delete", "node", "n1"],
                                obj=CliContext(backend_factory=lambda: backend))
    assert result.exit_code == 0, result.output
    assert "Released 1 address(es)" in result.output
    assert ipam.blocks() == []
