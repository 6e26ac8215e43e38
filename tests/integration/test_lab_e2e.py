"""End to end on the lab's building blocks: four nodes on two subnets, real etcd, real agents,
pods made by the real CNI plugin, packets that really cross. Every scenario asserts on pings."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from lab.cluster import LabCluster, resources_for
from lab.topology import Topology
from tests.integration.agent_support import routes, start_agent, tear_down, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    topo = Topology(prefix=f"wt-e2e{secrets.token_hex(2)}-", node_count=4)
    cluster = LabCluster(topo=topo, mode="vxlan", work=tmp_path_factory.mktemp("e2e") / "lab",
                         pods_per_node=1)
    try:
        topo.create()
        cluster.start_etcd()
        cluster.configure(resources_for("vxlan", topo))
        for node in topo.nodes:
            start_agent(cluster, node)
        for node in topo.nodes:
            cluster.add_pod(node, 1)
        yield cluster
    finally:
        tear_down(cluster)


def converged(lab: LabCluster, timeout: float = 60) -> dict[tuple[str, str], bool]:
    ok, _, result = lab.wait_converged(timeout=timeout)
    assert ok, [k for k, v in result.items() if not v]
    return result


def test_full_matrix_including_the_internet_host(lab: LabCluster) -> None:
    result = converged(lab)
    assert len(result) == 4 * 3 + 4


def test_mode_switch_at_runtime_converges(lab: LabCluster) -> None:
    converged(lab)
    n1 = lab.topo.nodes[0]

    def direct_to_n2() -> bool:
        return any("via 10.0.1.12 dev eth0" in r for r in routes(n1.netns))

    for mode in ("CrossSubnet", "Always"):
        lab.wrenctl("patch", "ippool", "lab-pool", "-p", json.dumps({"spec": {"vxlanMode": mode}}))
        if mode == "CrossSubnet":
            wait_for(direct_to_n2, timeout=20, what="n1 to reach n2 directly")
        else:
            wait_for(lambda: not direct_to_n2(), timeout=20, what="n1 to tunnel to n2")
        converged(lab)


def test_agent_restart_loses_no_packet(lab: LabCluster) -> None:
    converged(lab)
    a, b = lab.pods[0], lab.pods[-1]  # subnet A to subnet B, through VXLAN
    ping = subprocess.Popen(["ip", "netns", "exec", a.netns, "ping", "-i", "0.1", "-c", "80",
                             "-W", "1", b.ip], stdout=subprocess.PIPE, text=True)
    node = lab.topo.nodes[0]
    before = routes(node.netns)
    lab.procs.stop(f"{node.name}-agent")
    start_agent(lab, node)
    out, _ = ping.communicate(timeout=60)
    assert " 0% packet loss" in out, out.splitlines()[-2:]
    assert routes(node.netns) == before


def test_bad_input_is_refused_and_the_network_is_unchanged(lab: LabCluster) -> None:
    converged(lab)
    n1 = lab.topo.nodes[0]
    before = routes(n1.netns)
    bad = [
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "overlap"},
         "spec": {"cidr": "10.65.128.0/17"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "sel"},
         "spec": {"nodeSelector": "has(", "peerIP": "10.0.1.1", "asNumber": 65000}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "extra"},
         "spec": {"cidr": "10.80.0.0/16", "color": "blue"}},
    ]
    for doc in bad:
        with pytest.raises(RuntimeError) as err:
            lab.wrenctl("apply", "-f", "-", stdin=json.dumps(doc))
        assert doc["metadata"]["name"] in str(err.value)  # type: ignore[index]
    pools = lab.wrenctl("get", "ippools", "-o", "json")
    assert "overlap" not in pools and "extra" not in pools
    assert routes(n1.netns) == before
    converged(lab)


def test_etcd_restart_then_later_changes_still_propagate(lab: LabCluster) -> None:
    converged(lab)
    lab.procs.stop("etcd")
    assert lab.ping(lab.pods[0].netns, lab.pods[-1].ip)  # the dataplane keeps its state
    lab.start_etcd_again()
    pod = lab.add_pod(lab.topo.nodes[2], 2)
    wait_for(lambda: lab.ping(lab.pods[0].netns, pod.ip), timeout=60,
             what="a pod created after the etcd restart to be reachable")


def test_node_removed_and_added_back(lab: LabCluster) -> None:
    converged(lab)
    n1, n4 = lab.topo.nodes[0], lab.topo.nodes[-1]
    n4_block = next(r.split()[1] for r in routes(n4.netns) if r.startswith("blackhole"))
    assert any(r.startswith(n4_block) for r in routes(n1.netns))
    lab.procs.stop(f"{n4.name}-agent")
    out = lab.wrenctl("delete", "node", n4.name)
    assert "Released" in out
    wait_for(lambda: not any(r.startswith(n4_block) for r in routes(n1.netns)), timeout=20,
             what="n1 to drop n4's block")
    blocks = lab.wrenctl("get", "ipamblocks", "-o", "json")
    assert f"host:{n4.name}" not in blocks  # its pod's address was released with its block
    # n4 comes back: the agent re-registers it and a new pod is reachable from n1's pod.
    for pod in [p for p in lab.pods if p.node == n4.name]:
        lab.pods.remove(pod)
        subprocess.run(["ip", "netns", "del", pod.netns], check=False)
    start_agent(lab, n4)
    pod = lab.add_pod(n4, 3)
    wait_for(lambda: lab.ping(lab.pods[0].netns, pod.ip), timeout=60,
             what="n4's new pod to be reachable again")

