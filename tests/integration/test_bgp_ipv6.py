"""IPv6 BGP sessions in real namespaces: a dual-stack Wren cluster, and BIRD 2 as an IPv6 peer.

Two nodes on subnet A, each with an IPv4 and an IPv6 address on eth0, real etcd, agents and
ExaBGP sidecars; an IPv4 and an IPv6 pool; one dual-stack pod per node (the real CNI plugin
with `assign_ipv6`), so each node owns a block of each family:

    <p>router: br-a 10.0.1.1/24 (etcd) ─┬─ <p>n1: eth0 10.0.1.11/24  fd00:10:1::11/64
                                        ├─ <p>n2: eth0 10.0.1.12/24  fd00:10:1::12/64
                                        └─ <p>bird6: eth0 10.0.1.100/24  fd00:10:1::100/64
                                                     BIRD 2, AS 65100, n1's IPv6 BGPPeer

The mesh runs a session per family between the nodes; BIRD peers with n1 over IPv6 only and
announces a prefix outside every pool, which n1 takes through a BGPFilter's importV6 rule.
n2's IPv6 address is added only after its ExaBGP started (as one still in duplicate address
detection would be). n1 finds its own IPv6 address (`IP6=autodetect`, the way calico-node is
usually run); n2's Node has it set by hand, with `IP6` unset. Traffic goes only to addresses
in namespaces this module made. Every namespace, link and process goes on the way out, also
after a failure (`LabCluster.down`, `external_host`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgp.status import read_status
from lab.cluster import BIN, NODE_AS, LabCluster, resources_for
from lab.topology import SUBNETS, LabNode, Topology, netns_exec
from tests.integration.agent_support import ip, start_agent, tear_down, wait_for
from tests.integration.bgp_support import Bird, external_host
from tests.integration.test_bgp_cluster import learned

pytestmark = pytest.mark.integration

POOL6 = "fd00:65::/48"  # blockSize 122, Calico's default for IPv6
NET6 = ipaddress.IPv6Network("fd00:10:1::/64")  # subnet A's IPv6 prefix
BIRD_AS = 65100
BIRD_HOST = 100
BIRD_PREFIX = "2001:db8:77::/64"  # documentation range: in no pool
AUTODETECT6 = {"IP6": "autodetect", "IP6_AUTODETECTION_METHOD": "interface=eth0"}


def v6_of(host: int) -> ipaddress.IPv6Address:
    """The IPv6 twin of 10.0.1.<host>: fd00:10:1::<host>, the same digits."""
    return NET6[int(str(host), 16)]


def node_v6(node: LabNode) -> str:
    return str(v6_of(int(str(node.address.ip).rsplit(".", 1)[1])))


def add_v6(ns: str, address: str) -> None:
    """An IPv6 address usable at once: no duplicate address detection to wait for."""
    netns_exec(ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
    netns_exec(ns, "ip", "-6", "addr", "add", f"{address}/{NET6.prefixlen}", "dev", "eth0",
               "nodad")


def dual_stack_docs(topo: Topology) -> list[dict[str, Any]]:
    """The lab's resources without its router peers, plus the nodes' IPv6 addresses, an IPv6
    pool, and n1's IPv6 BGPPeer to BIRD with a BGPFilter that takes BIRD's outside prefix."""
    docs = [d for d in resources_for("bgp", topo, nat_outgoing=False) if d["kind"] != "BGPPeer"]
    for doc in docs:
        if doc["kind"] == "Node" and doc["metadata"]["name"] != "n1":  # n1: IP6=autodetect
            node = next(n for n in topo.nodes if n.name == doc["metadata"]["name"])
            doc["spec"]["bgp"]["ipv6Address"] = f"{node_v6(node)}/{NET6.prefixlen}"
    return [*docs,
            {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
             "metadata": {"name": "lab-pool-v6"},
             "spec": {"cidr": POOL6, "blockSize": 122, "ipipMode": "Never",
                      "vxlanMode": "Never", "natOutgoing": False, "nodeSelector": "all()"}},
            {"apiVersion": "projectcalico.org/v3", "kind": "BGPFilter",
             "metadata": {"name": "bird6-in"},
             "spec": {"importV6": [{"action": "Accept", "cidr": "2001:db8:77::/48",
                                    "matchOperator": "In"}]}},
            {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
             "metadata": {"name": "bird6"},
             "spec": {"node": "n1", "peerIP": str(v6_of(BIRD_HOST)), "asNumber": BIRD_AS,
                      "filters": ["bird6-in"]}}]


@contextlib.contextmanager
def dual_stack_cluster(tmp: Path) -> Iterator[LabCluster]:
    prefix = f"wt-v6{secrets.token_hex(2)}-"
    subnet = SUBNETS[0]
    topo = Topology(prefix=prefix, node_count=2, nodes=[
        LabNode(name=f"n{i}", netns=f"{prefix}n{i}", subnet_index=0, gateway=subnet[1],
                address=ipaddress.IPv4Interface(f"{subnet[10 + i]}/{subnet.prefixlen}"))
        for i in (1, 2)])
    cluster = LabCluster(topo=topo, mode="bgp", work=tmp / "lab")
    n1, n2 = topo.nodes
    try:
        topo.create()
        add_v6(n1.netns, node_v6(n1))
        cluster.start_etcd()
        cluster.configure(dual_stack_docs(topo))
        for node in topo.nodes:
            start_agent(cluster, node, env=AUTODETECT6 if node is n1 else None)
            cluster.procs.start(f"{node.name}-bgp", node.netns, [str(BIN / "wren-bgp")],
                                env=cluster.node_env(node))
        # n2's IPv6 address comes late, as one in duplicate address detection does: its
        # ExaBGP must start on IPv4 alone, then listen on IPv6 too once the address is there.
        # Its intent must be settled first: n1 autodetects its IPv6 address, and the intent
        # naming it could otherwise reach n2 after n2's address, restarting ExaBGP for the
        # intent before the sidecar's own look for the address does.
        n2_log = cluster.procs.procs["n2-bgp"]
        n2_run = Path(cluster.node_env(n2)["WREN_RUN_DIR"])
        wait_for(lambda: "exabgp started" in n2_log.tail(200)
                 and node_v6(n1) in {p.address for p in getattr(read_status(n2_run), "peers", [])},
                 timeout=30, what="n2's ExaBGP to run with n1's IPv6 session configured")
        add_v6(n2.netns, node_v6(n2))
        wait_for(lambda: "IPv6 address now on this host" in n2_log.tail(500), timeout=30,
                 what="n2's sidecar to see its IPv6 address and restart ExaBGP on it")
        yield cluster
    finally:
        tear_down(cluster)


def blocks6(cluster: LabCluster) -> dict[str, str]:
    """node name → its IPv6 block (blockSize 122), from the pods' addresses."""
    return {pod.node: str(ipaddress.ip_network(f"{pod.ip6}/122", strict=False))
            for pod in cluster.pods if pod.ip6}


def blocks4(cluster: LabCluster) -> dict[str, str]:
    return {pod.node: str(ipaddress.ip_network(f"{pod.ip}/26", strict=False))
            for pod in cluster.pods}


def routes6(ns: str) -> set[str]:
    return {line.strip() for line in ip(ns, "-6", "route", "show", "proto", "80").splitlines()
            if line.strip()}


def route6_for(ns: str, prefix: str) -> str:
    return next((r for r in routes6(ns) if r.startswith(f"{prefix} ")), "")


def each_learned_the_others_blocks(cluster: LabCluster) -> bool:
    v4, v6 = blocks4(cluster), blocks6(cluster)
    for node in cluster.topo.nodes:
        got = learned(cluster, node)
        for owner in cluster.topo.nodes:
            if owner is not node and (v4[owner.name] not in got or v6[owner.name] not in got):
                return False
    return True


@pytest.fixture(scope="module")
def dual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    with dual_stack_cluster(tmp_path_factory.mktemp("ipv6")) as c:
        for node in c.topo.nodes:
            pod = c.add_pod(node, 1, ipv6=True)
            assert pod.ip6 is not None and ipaddress.ip_address(pod.ip6) in \
                ipaddress.ip_network(POOL6), pod
        wait_for(lambda: each_learned_the_others_blocks(c), timeout=60,
                 what="each node to learn the other's IPv4 and IPv6 blocks")
        yield c


@pytest.fixture(scope="module")
def bird6(dual: LabCluster) -> Iterator[Bird]:
    """BIRD 2 on subnet A, an eBGP peer of n1 over IPv6 only; announces BIRD_PREFIX."""
    n1 = dual.topo.nodes[0]
    with external_host(dual, "bird6", host=BIRD_HOST) as host:
        add_v6(host.netns, str(v6_of(BIRD_HOST)))
        bird = Bird(host)
        bird.start("\n".join([
            f"router id {host.ip};",
            "protocol device {}",
            f"protocol static announce6 {{ ipv6; route {BIRD_PREFIX} blackhole; }}",
            "protocol bgp n1 {",
            f"  local {v6_of(BIRD_HOST)} as {BIRD_AS};",
            f"  neighbor {node_v6(n1)} as {NODE_AS};",
            "  direct;",
            "  connect retry time 5;",
            '  ipv6 { import all; export where proto = "announce6"; };',
            "}",
        ]) + "\n")
        yield bird


# -- two Wren nodes --------------------------------------------------------------------------
def test_each_family_is_learned_over_its_own_session_with_that_familys_next_hop(
        dual: LabCluster) -> None:
    v4, v6 = blocks4(dual), blocks6(dual)
    for node in dual.topo.nodes:
        got = learned(dual, node)
        other = next(n for n in dual.topo.nodes if n is not node)
        # IPv6 block: next hop and peer are the other node's IPv6 address (the IPv6 session).
        assert got[v6[other.name]] == (node_v6(other), node_v6(other)), (node.name, got)
        # IPv4 block: over the IPv4 session, as before.
        other4 = str(other.address.ip)
        assert got[v4[other.name]] == (other4, other4), (node.name, got)
        assert v6[node.name] not in got and v4[node.name] not in got  # ours never comes back


def test_agents_program_the_other_nodes_ipv6_block_via_its_ipv6_address(
        dual: LabCluster) -> None:
    v6 = blocks6(dual)
    for node in dual.topo.nodes:
        other = next(n for n in dual.topo.nodes if n is not node)
        wait_for(lambda n=node, o=other: route6_for(n.netns, v6[o.name]) != "", timeout=30,
                 what=f"{node.name} to program {other.name}'s IPv6 block")
        route = route6_for(node.netns, v6[other.name])
        assert f"via {node_v6(other)} dev eth0" in route, route
        assert any(r.startswith(f"blackhole {v6[node.name]} ") for r in routes6(node.netns)), \
            routes6(node.netns)  # our own block: a blackhole, never a route elsewhere


def test_ip6_autodetect_writes_the_interfaces_global_ipv6_address_into_the_node(
        dual: LabCluster) -> None:
    nodes = {d["metadata"]["name"]: d for d in json.loads(
        dual.wrenctl("get", "nodes", "-o", "json"))["items"]}
    n1 = next(n for n in dual.topo.nodes if n.name == "n1")
    # eth0's global address with its prefix (not its fe80:: link-local one), as for IPv4.
    assert nodes["n1"]["spec"]["bgp"]["ipv6Address"] == f"{node_v6(n1)}/{NET6.prefixlen}"


def test_a_late_ipv6_address_is_listened_on_without_exabgp_ever_failing(
        dual: LabCluster) -> None:
    log = dual.procs.procs["n2-bgp"].tail(2000)
    assert "ExaBGP listens on IPv4 only until it is" in log  # started without it
    assert "IPv6 address now on this host" in log  # then restarted to listen on it
    assert "exabgp exited" not in log  # never a failed start (ExaBGP exits on a bad bind)


def test_pods_reach_each_other_over_ipv6_and_ipv4(dual: LabCluster) -> None:
    a, b = dual.pods
    assert a.ip6 is not None and b.ip6 is not None
    wait_for(lambda: dual.ping(a.netns, b.ip6 or ""), timeout=20,
             what=f"{a.name} to reach {b.name} over IPv6")
    assert dual.ping(b.netns, a.ip6)
    assert dual.ping(a.netns, b.ip) and dual.ping(b.netns, a.ip)


def test_node_status_shows_the_ipv6_mesh_session_established(dual: LabCluster) -> None:
    n1, n2 = dual.topo.nodes

    def ipv6_row() -> str:
        out = dual.node_status(n1).split("IPv6 BGP status", 1)
        rows = [line for line in out[1].splitlines() if f"| {node_v6(n2)} " in line] \
            if len(out) == 2 else []
        return rows[0] if rows else ""

    wait_for(lambda: "| up " in ipv6_row(), timeout=30, what="n1's status to show n2's IPv6 up")
    row = ipv6_row()
    assert "node-to-node mesh" in row and "Established" in row
    ipv4_part = dual.node_status(n1).split("IPv6 BGP status", 1)[0]
    assert f"| {n2.address.ip} " in ipv4_part and node_v6(n2) not in ipv4_part


# -- BIRD 2 over IPv6 ----------------------------------------------------------------------------
def test_bird_learns_n1s_ipv6_block_with_n1s_ipv6_next_hop_and_nothing_of_ipv4(
        dual: LabCluster, bird6: Bird) -> None:
    n1 = dual.topo.nodes[0]
    block = blocks6(dual)["n1"]
    wait_for(lambda: bird6.protocols().get("n1", ("", ""))[1] == "Established", timeout=60,
             what="BIRD's IPv6 session with n1")
    wait_for(lambda: block in bird6.routes(), timeout=30, what="BIRD to learn n1's IPv6 block")
    next_hop, proto = bird6.routes()[block]
    assert proto == "n1" and next_hop.split()[0] == node_v6(n1), (next_hop, proto)
    # An IPv6 session carries no IPv4 prefixes; n2's block is not ours to pass on (no RR).
    assert not [p for p in bird6.routes() if ":" not in p]
    assert blocks6(dual)["n2"] not in bird6.routes()


def test_n1_learns_birds_ipv6_prefix_through_its_filter_and_programs_it(
        dual: LabCluster, bird6: Bird) -> None:
    n1, n2 = dual.topo.nodes
    bird_v6 = str(v6_of(BIRD_HOST))
    wait_for(lambda: BIRD_PREFIX in learned(dual, n1), timeout=60,
             what="n1 to learn BIRD's IPv6 prefix")
    assert learned(dual, n1)[BIRD_PREFIX] == (bird_v6, bird_v6)
    wait_for(lambda: route6_for(n1.netns, BIRD_PREFIX) != "", timeout=30,
             what="n1 to program BIRD's IPv6 prefix")
    assert f"via {bird_v6} dev eth0" in route6_for(n1.netns, BIRD_PREFIX)
    assert BIRD_PREFIX not in learned(dual, n2)  # n2 has no session with BIRD

    def bird_row() -> str:
        out = dual.node_status(n1).split("IPv6 BGP status", 1)
        return next((line for line in out[-1].splitlines() if f"| {bird_v6} " in line), "")

    def received_accepted(row: str) -> list[str]:
        return [cell.strip() for cell in row.split("|")[6:8]]

    # The status file follows the session a moment later (its counters every 2 s).
    wait_for(lambda: "| up " in bird_row() and received_accepted(bird_row()) == ["1", "1"],
             timeout=30, what="n1's status to show BIRD up, one prefix received and accepted")
    assert "node specific" in bird_row() and "Established" in bird_row()


def test_ipv6_withdrawals_cross_both_ways(dual: LabCluster, bird6: Bird) -> None:
    """BIRD withdraws its prefix: n1 drops the kernel route. The IPv6 pool stops being
    exported (disableBGPExport): n1 withdraws its block from BIRD and from n2, whose kernel
    drops it. Last in the module: it changes the cluster (the pool is restored afterwards)."""
    n1, n2 = dual.topo.nodes
    wait_for(lambda: route6_for(n1.netns, BIRD_PREFIX) != "", timeout=60,
             what="n1 to program BIRD's IPv6 prefix")
    bird6.birdc("disable", "announce6")
    wait_for(lambda: BIRD_PREFIX not in learned(dual, n1), timeout=30,
             what="n1 to learn the withdrawal of BIRD's IPv6 prefix")
    wait_for(lambda: route6_for(n1.netns, BIRD_PREFIX) == "", timeout=30,
             what="n1 to remove the kernel route to BIRD's IPv6 prefix")

    block = blocks6(dual)["n1"]
    wait_for(lambda: block in bird6.routes(), timeout=30, what="BIRD to hold n1's IPv6 block")
    pool = next(d for d in dual_stack_docs(dual.topo) if d["metadata"]["name"] == "lab-pool-v6")
    dual.configure([{**pool, "spec": {**pool["spec"], "disableBGPExport": True}}])
    try:
        wait_for(lambda: block not in bird6.routes(), timeout=30,
                 what="BIRD to see n1's IPv6 block withdrawn")
        wait_for(lambda: block not in learned(dual, n2), timeout=30,
                 what="n2 to see n1's IPv6 block withdrawn")
        wait_for(lambda: route6_for(n2.netns, block) == "", timeout=30,
                 what="n2 to remove its kernel route to n1's IPv6 block")
        assert blocks4(dual)["n1"] in learned(dual, n2)  # IPv4 untouched
    finally:
        dual.configure([pool])
