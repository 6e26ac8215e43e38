"""IPIP programmed by the real agent, inside Debian's kernel (the host kernel has no IPIP).

Three nodes (n1, n2 on subnet A; n3 on subnet B, behind the lab's router namespace), a real etcd,
a real `wren-agent` per node and pods made by the real CNI plugin. The test itself plays each
node's BGP sidecar on its channel socket: it hands every agent the other nodes' blocks with the
owners' addresses as next hops, exactly what a full mesh teaches (tests/integration/
test_bgp_cluster.py pins that the real sidecar does so). That keeps ExaBGP and BIRD, six more
Python processes, out of an emulated CPU where each start costs 10-20 s; what is tested here is
the kernel side: tunl0, the tunnel address from IPAM, the routes per ipipMode and packets
crossing.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bgp.channel import Conn, Listener
from lab.cluster import LabCluster
from tests.integration.agent_support import agent_cluster, ip, routes, wait_for

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1500)]


class MeshStandIn:
    """One channel socket per node, answering each agent with the routes a full mesh learns."""

    def __init__(self, cluster: LabCluster) -> None:
        self.listeners: list[Listener] = []
        blocks = {p.node: str(ipaddress.ip_network(f"{p.ip}/26", strict=False))
                  for p in cluster.pods}
        for node in cluster.topo.nodes:
            learned = [[blocks[peer.name], str(peer.address.ip), str(peer.address.ip)]
                       for peer in cluster.topo.nodes if peer.name != node.name]
            path = Path(cluster.node_env(node)["WREN_RUN_DIR"]) / "bgp.sock"
            listener = Listener(path, self._serve(learned), name=f"mesh-{node.name}")
            listener.start()
            self.listeners.append(listener)

    @staticmethod
    def _serve(learned: list[list[str]]) -> Callable[[Conn], None]:
        def on_conn(conn: Conn) -> None:
            conn.send({"type": "routes", "routes": learned, "complete": True})
            for _ in conn.lines():  # the agent's intent: read and dropped, like a quiet mesh
                pass
            conn.close()
        return on_conn

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    with agent_cluster("ipip", tmp_path_factory.mktemp("ipip"), nodes=3) as c:
        pods = [threading.Thread(target=c.add_pod, args=(node, 1)) for node in c.topo.nodes]
        for t in pods:
            t.start()
        for t in pods:
            t.join()
        assert len(c.pods) == 3, "a CNI ADD failed (see the output above)"
        c.pods.sort(key=lambda p: p.node)
        mesh = MeshStandIn(c)
        try:
            yield c
        finally:
            mesh.close()


def all_pods_talk(c: LabCluster) -> bool:
    return all(c.ping(a.netns, b.ip) for a in c.pods for b in c.pods if a != b)


def block_route(c: LabCluster, src: str, owner: str) -> str:
    node = next(n for n in c.topo.nodes if n.name == src)
    pod = next(p for p in c.pods if p.node == owner)
    block = str(ipaddress.ip_network(f"{pod.ip}/26", strict=False))
    return next((r for r in routes(node.netns) if r.split()[0] == block), "")


def tunl0_rx_packets(c: LabCluster, name: str) -> int:
    node = next(n for n in c.topo.nodes if n.name == name)
    out = ip(node.netns, "-s", "link", "show", "tunl0")
    match = re.search(r"RX:.*\n\s+(\d+)\s+(\d+)", out)
    assert match, f"no tunl0 counters on {name}: {out!r}"
    return int(match.group(2))


def test_ipip_always_tunnels_every_remote_block(cluster: LabCluster) -> None:
    wait_for(lambda: all("dev tunl0" in block_route(cluster, "n1", o) for o in ("n2", "n3")),
             timeout=300, what="n1's routes to n2's and n3's blocks over tunl0")
    for owner in ("n2", "n3"):
        route = block_route(cluster, "n1", owner)
        node_ip = str(next(n for n in cluster.topo.nodes if n.name == owner).address.ip)
        assert f"via {node_ip} dev tunl0" in route and "onlink" in route, route
    # Its address comes from IPAM through the Node (node upkeep, on its own thread): it may
    # land after the routes.
    wait_for(lambda: bool(re.search(r"inet 10\.65\.\d+\.\d+/32",
                                    ip(cluster.topo.nodes[0].netns, "addr", "show", "tunl0"))),
             timeout=300, what="n1's tunl0 to get its tunnel address from IPAM")
    wait_for(lambda: all_pods_talk(cluster), timeout=300, what="all pods to talk over IPIP")
    before = tunl0_rx_packets(cluster, "n3")
    assert cluster.ping(cluster.pods[0].netns, cluster.pods[2].ip)
    assert tunl0_rx_packets(cluster, "n3") > before  # decapsulated on the far node


def test_crosssubnet_goes_direct_inside_a_subnet_and_tunnels_across(cluster: LabCluster) -> None:
    cluster.wrenctl("patch", "ippool", "lab-pool", "-p",
                    json.dumps({"spec": {"ipipMode": "CrossSubnet"}}))
    wait_for(lambda: "dev eth0" in block_route(cluster, "n1", "n2"), timeout=300,
             what="n1's route to n2's block to go direct")
    assert "dev tunl0" in block_route(cluster, "n1", "n3")
    wait_for(lambda: all_pods_talk(cluster), timeout=120, what="all pods to talk")
    before_n2, before_n3 = tunl0_rx_packets(cluster, "n2"), tunl0_rx_packets(cluster, "n3")
    assert cluster.ping(cluster.pods[0].netns, cluster.pods[1].ip)
    assert cluster.ping(cluster.pods[0].netns, cluster.pods[2].ip)
    assert tunl0_rx_packets(cluster, "n2") == before_n2  # same subnet: not through the tunnel
    assert tunl0_rx_packets(cluster, "n3") > before_n3  # across subnets: through it


def test_never_takes_every_route_off_the_tunnel(cluster: LabCluster) -> None:
    cluster.wrenctl("patch", "ippool", "lab-pool", "-p",
                    json.dumps({"spec": {"ipipMode": "Never"}}))
    wait_for(lambda: "dev tunl0" not in block_route(cluster, "n1", "n3"), timeout=300,
             what="n1's route to n3's block to leave the tunnel")
    # n3 is not on n1's link: its block goes where n1 sends traffic for n3 (BIRD's "gateway
    # recursive"), the router of subnet A.
    assert f"via {cluster.topo.router_ips[0]} dev eth0" in block_route(cluster, "n1", "n3")
    assert "dev eth0" in block_route(cluster, "n1", "n2")
    # Inside a subnet pods still talk; across subnets plain routing needs the router to learn
    # the blocks (BGP with it), which this stand-in does not provide.
    wait_for(lambda: cluster.ping(cluster.pods[0].netns, cluster.pods[1].ip), timeout=120,
             what="n1's pod to reach n2's pod directly")
