"""wren-bgp against BGP speakers this project did not write: BIRD 2 and GoBGP.

Cluster: three nodes (n1, n2 on subnet A, n3 on subnet B behind the lab router), one pod each so
each node owns a block, real etcd, agents and ExaBGP sidecars. The peers run in namespaces of
their own on subnet A (see bgp_support.py):

    10.0.1.100  BIRD 2, AS 65100, a global BGPPeer: an external router (eBGP)
    10.0.1.101  GoBGP, AS 65200, a global BGPPeer
    10.0.1.102  BIRD 2, AS 65300, TCP MD5: n1's BGPPeer has BIRD's password, n2's another one
    10.0.1.100  BIRD 2, AS 64512, in a second cluster with the mesh off: the route reflector

What a sidecar hands its agent is read from the channel socket (`learned`), what the agents made
of it from the kernel, what the peers made of us from their own CLIs (birdc, gobgp).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgp.status import SidecarStatus, read_status
from lab.cluster import NODE_AS, POOL_CIDR, LabCluster
from lab.topology import LabNode, netns_exec
from tests.integration.agent_support import agent_cluster, routes, wait_for
from tests.integration.bgp_support import (
    Bird,
    GoBGP,
    external_host,
    kernel_route,
)
from tests.integration.test_bgp_cluster import address, blocks, learned

pytestmark = pytest.mark.integration

BIRD_AS = 65100
GOBGP_AS = 65200
MD5_AS = 65300
MD5_PASSWORD = "wren-md5-s3cret"
WRONG_PASSWORD = "not-the-md5-s3cret"
# etcd datastore: a BGPPeer's secretKeyRef {name, key} is read from WREN_SECRET_<NAME>_<KEY>
# in the agent's environment (wren/datastore/etcd.py).
AGENT_SECRETS = {"WREN_SECRET_BGP_SECRETS_GOOD": MD5_PASSWORD,
                 "WREN_SECRET_BGP_SECRETS_BAD": WRONG_PASSWORD}
OUTSIDE = "192.0.2.0/24"  # TEST-NET-1: in no pool
OUTSIDE_GOBGP = "198.51.100.0/24"  # TEST-NET-2: in no pool


def peer_doc(name: str, peer_ip: str, as_number: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": name},
            "spec": {"peerIP": peer_ip, "asNumber": as_number, **spec}}


def free_prefixes(cluster: LabCluster, count: int) -> list[str]:
    """/24s inside the pool that hold none of the nodes' blocks."""
    taken = [ipaddress.IPv4Network(b) for b in blocks(cluster).values()]
    out: list[str] = []
    for net in reversed(list(ipaddress.IPv4Network(POOL_CIDR).subnets(new_prefix=24))):
        if not any(net.overlaps(b) for b in taken):
            out.append(str(net))
        if len(out) == count:
            return out
    raise AssertionError("no free /24 in the pool")


def status(cluster: LabCluster, node: LabNode) -> SidecarStatus | None:
    return read_status(Path(cluster.node_env(node)["WREN_RUN_DIR"]))


def peer_state(cluster: LabCluster, node: LabNode, peer: str) -> tuple[str, str] | None:
    """(state, info) of one peer in the node's bgp-status.json."""
    st = status(cluster, node)
    for p in st.peers if st else ():
        if p.address == peer:
            return p.state, p.info
    return None


def all_up(cluster: LabCluster, peer: str) -> bool:
    return all(peer_state(cluster, n, peer) == ("up", "Established") for n in cluster.topo.nodes)


def rejected(cluster: LabCluster, node: LabNode, peer: str) -> dict[str, int] | None:
    """Why the node dropped what that peer sent: reason → count (bgp-status.json)."""
    st = status(cluster, node)
    return next((p.rejected for p in st.peers if p.address == peer), None) if st else None


def status_row(cluster: LabCluster, node: LabNode, peer: str) -> str:
    """The peer's row in `wrenctl node status` on that node ("" if absent)."""
    out = cluster.node_status(node)
    return next((line for line in out.splitlines() if f"| {peer} " in line), "")


def bird_neighbors(topo_nodes: list[LabNode], *, local: str) -> list[str]:
    """One BIRD protocol per node: direct on our subnet, multihop across the router."""
    here = ipaddress.ip_interface(f"{local}/24").network
    lines = []
    for node in topo_nodes:
        hop = "direct;" if node.address.ip in here else "multihop;"
        lines.append(f"protocol bgp {node.name} from wren {{ neighbor {node.address.ip} as "
                     f"{NODE_AS}; {hop} }}")
    return lines


def bird_base(local: str) -> list[str]:
    """Router ID, interfaces, and an IGP of two routes so BIRD resolves recursive next hops
    (n3 on the other subnet); none of it is exported (filters below name what is)."""
    return [
        f"router id {local};",
        "protocol device {}",
        'protocol direct { ipv4; interface "eth0"; }',
        "protocol static reach { ipv4; route 10.0.2.0/24 via 10.0.1.1; }",
    ]


def gobgp_config(cluster: LabCluster, local: str) -> str:
    """gobgpd's TOML: one eBGP neighbor per node, multihop for n3 across the router."""
    here = ipaddress.ip_interface(f"{local}/24").network
    lines = [
        "[global.config]",
        f"  as = {GOBGP_AS}",
        f'  router-id = "{local}"',
        f'  local-address-list = ["{local}"]',
    ]
    for node in cluster.topo.nodes:
        lines += [
            "[[neighbors]]",
            "  [neighbors.config]",
            f'    neighbor-address = "{node.address.ip}"',
            f"    peer-as = {NODE_AS}",
            "  [neighbors.transport.config]",
            f'    local-address = "{local}"',
        ]
        if node.address.ip not in here:
            lines += ["  [neighbors.ebgp-multihop.config]", "    enabled = true",
                      "    multihop-ttl = 8"]
    return "\n".join(lines) + "\n"


def tcp_md5_supported() -> bool:
    """Can this kernel sign TCP segments (CONFIG_TCP_MD5SIG)? Set a key on a fresh socket."""
    tcp_md5sig = 14  # linux/tcp.h
    sockaddr = struct.pack("=HH4s", socket.AF_INET, 0, socket.inet_aton("127.0.0.1"))
    key = b"probe"
    value = (sockaddr.ljust(128, b"\0") + struct.pack("=BBHI", 0, 0, len(key), 0)
             + key.ljust(80, b"\0"))
    with socket.socket() as sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, tcp_md5sig, value)
        except OSError:
            return False
    return True


def md5_failures(ns: str) -> int:
    """TcpExt TCPMD5Failure of a namespace: segments dropped for a signature that did not match."""
    text = netns_exec(ns, "cat", "/proc/net/netstat")
    rows = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
    names, values = rows[0], rows[1]
    return int(values[names.index("TCPMD5Failure")]) if "TCPMD5Failure" in names else 0


def md5_bird_config(cluster: LabCluster, local: str, passwords: dict[str, str]) -> str:
    """BIRD with a password per node protocol (n1, n2 only: the BGPPeers name these)."""
    lines = [
        f"router id {local};",
        "protocol device {}",
        "template bgp wren {",
        f"  local {local} as {MD5_AS};",
        "  connect retry time 5;",
        "  ipv4 { import all; export none; };",
        "}",
    ]
    for node in cluster.topo.nodes[:2]:
        lines.append(f"protocol bgp {node.name} from wren {{ neighbor {node.address.ip} as "
                     f'{NODE_AS}; direct; password "{passwords[node.name]}"; }}')
    return "\n".join(lines) + "\n"


# -- fixtures: one cluster for the external peers, each peer in its own namespace ------------
@pytest.fixture(scope="class")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    extra = [
        peer_doc("ext-bird", "10.0.1.100", BIRD_AS),
        peer_doc("ext-gobgp", "10.0.1.101", GOBGP_AS),
        peer_doc("md5-good", "10.0.1.102", MD5_AS, node="n1",
                 password={"secretKeyRef": {"name": "bgp-secrets", "key": "good"}}),
        peer_doc("md5-bad", "10.0.1.102", MD5_AS, node="n2",
                 password={"secretKeyRef": {"name": "bgp-secrets", "key": "bad"}}),
    ]
    with agent_cluster("bgp", tmp_path_factory.mktemp("interop"), nodes=3, bgp=True,
                       extra=extra, agent_env=AGENT_SECRETS) as c:
        for node in c.topo.nodes:
            c.add_pod(node, 1)
        yield c


@pytest.fixture(scope="class")
def ext_bird(cluster: LabCluster) -> Iterator[tuple[Bird, list[str]]]:
    """BIRD as an external router. Announces one in-pool /24, one /24 outside every pool and a
    default route; imports everything from the nodes, exports only its own statics."""
    inside = free_prefixes(cluster, 1)[0]
    with external_host(cluster, "bird", host=100) as host:
        bird = Bird(host)
        bird.start("\n".join([
            *bird_base(host.ip),
            "protocol static announce { ipv4; "
            f"route {inside} blackhole; route {OUTSIDE} blackhole; route 0.0.0.0/0 blackhole; }}",
            "template bgp wren {",
            f"  local {host.ip} as {BIRD_AS};",
            '  ipv4 { import all; export where proto = "announce"; };',
            "}",
            *bird_neighbors(cluster.topo.nodes, local=host.ip),
        ]) + "\n")
        # An address inside the announced prefix, for pods to reach. The lab router is the
        # fabric between the subnets: it must know the prefix too, for n3's traffic (a next hop
        # off n3's subnet is resolved through its gateway, as BIRD's `gateway recursive` does).
        host.exec("ip", "addr", "add", f"{ipaddress.ip_network(inside)[1]}/32", "dev", "lo")
        host.route_from_router(inside)
        yield bird, [inside]


@pytest.fixture(scope="class")
def gobgp(cluster: LabCluster) -> Iterator[tuple[GoBGP, str]]:
    """GoBGP as an eBGP peer of every node; announces one in-pool /24 and one outside."""
    inside = free_prefixes(cluster, 2)[1]  # [0] is BIRD's
    with external_host(cluster, "gobgp", host=101) as host:
        speaker = GoBGP(host)
        speaker.start(gobgp_config(cluster, host.ip))
        speaker.add_route(inside)
        speaker.add_route(OUTSIDE_GOBGP)
        yield speaker, inside


@pytest.fixture(scope="class")
def md5_bird(cluster: LabCluster) -> Iterator[Bird]:
    """BIRD with password MD5_PASSWORD for n1 and n2; n1's BGPPeer has it, n2's another one."""
    if not tcp_md5_supported():
        pytest.fail("this kernel cannot sign TCP segments (TCP_MD5SIG refused: no "
                    "CONFIG_TCP_MD5SIG?): BGP passwords cannot work here, and are untested")
    with external_host(cluster, "md5", host=102) as host:
        bird = Bird(host)
        bird.start(md5_bird_config(cluster, host.ip, {"n1": MD5_PASSWORD, "n2": MD5_PASSWORD}))
        yield bird


class TestExternalPeers:
    """One cluster (node-to-node mesh on) and three external peers: BIRD (eBGP), GoBGP (eBGP),
    BIRD with TCP MD5."""

    def test_bird_external_router_learns_every_node_block(
            self, cluster: LabCluster, ext_bird: tuple[Bird, list[str]]) -> None:
        bird, _ = ext_bird
        owned = blocks(cluster)
        want = {block: (address(cluster, owner), owner) for owner, block in owned.items()}

        def all_learned() -> bool:
            got = bird.routes()
            return all(got.get(block) == hop for block, hop in want.items())

        wait_for(all_learned, timeout=60, what="BIRD to learn every node's block")
        protos = bird.protocols()
        assert all(protos[n.name] == ("up", "Established") for n in cluster.topo.nodes), protos
        # The status file follows the session within a moment (written when it changes).
        wait_for(lambda: all_up(cluster, bird.host.ip), timeout=20, what="the nodes' status")
        for node in cluster.topo.nodes:
            row = status_row(cluster, node, bird.host.ip)
            assert "| global " in row and "| up " in row, row

    def test_bird_routes_outside_the_pools_are_rejected(
            self, cluster: LabCluster, ext_bird: tuple[Bird, list[str]]) -> None:
        bird, _ = ext_bird
        peer = bird.host.ip

        def judged() -> bool:
            # BIRD sent three prefixes; every node has judged all three.
            for node in cluster.topo.nodes:
                st = status(cluster, node)
                p = next((p for p in st.peers if p.address == peer), None) if st else None
                if p is None or p.received != 3:
                    return False
            return True

        wait_for(judged, timeout=30, what="every node to receive BIRD's three prefixes")
        for node in cluster.topo.nodes:
            st = status(cluster, node)
            assert st is not None
            p = next(p for p in st.peers if p.address == peer)
            assert p.accepted == 1, (node.name, p)
            assert p.rejected == {"outside pools": 1, "default route": 1}, (node.name, p)
            got = learned(cluster, node)
            assert OUTSIDE not in got and "0.0.0.0/0" not in got, (node.name, got)
            assert kernel_route(node.netns, OUTSIDE) == ""
            default = kernel_route(node.netns, "0.0.0.0/0")
            assert "proto 80" not in default and f"via {node.gateway}" in default, default

    def test_bird_route_inside_a_pool_is_programmed_and_reachable(
            self, cluster: LabCluster, ext_bird: tuple[Bird, list[str]]) -> None:
        bird, (inside,) = ext_bird
        peer = bird.host.ip
        wait_for(lambda: all(inside in learned(cluster, n) for n in cluster.topo.nodes),
                 timeout=30, what="every node to accept BIRD's in-pool prefix")
        for node in cluster.topo.nodes:
            assert learned(cluster, node)[inside] == (peer, peer)  # next hop: BIRD itself
        n1, n3 = cluster.topo.nodes[0], cluster.topo.nodes[2]
        wait_for(lambda: all(any(r.startswith(inside) for r in routes(n.netns))
                             for n in cluster.topo.nodes),
                 timeout=30, what="every agent to program BIRD's in-pool prefix")
        on_n1 = next(r for r in routes(n1.netns) if r.startswith(inside))
        on_n3 = next(r for r in routes(n3.netns) if r.startswith(inside))
        assert f"via {peer} " in on_n1, on_n1  # BIRD is on n1's link
        assert f"via {n3.gateway} " in on_n3, on_n3  # n3 reaches it through its gateway
        target = str(ipaddress.ip_network(inside)[1])
        assert all(cluster.ping(pod.netns, target) for pod in cluster.pods)

    def test_bird_withdrawing_its_routes_removes_them_from_every_node(
            self, cluster: LabCluster, ext_bird: tuple[Bird, list[str]]) -> None:
        bird, (inside,) = ext_bird

        def everywhere(present: bool) -> bool:
            return all((inside in learned(cluster, n)) == present
                       and any(r.startswith(inside) for r in routes(n.netns)) == present
                       for n in cluster.topo.nodes)

        wait_for(lambda: everywhere(True), timeout=30, what="BIRD's in-pool prefix everywhere")
        assert "disabled" in bird.birdc("disable", "announce")
        try:
            wait_for(lambda: everywhere(False), timeout=30,
                     what="the withdrawn prefix to leave every sidecar and kernel")
        finally:
            bird.birdc("enable", "announce")
        wait_for(lambda: everywhere(True), timeout=30, what="the prefix to come back")

    def test_gobgp_session_established_and_it_learns_every_node_block(
            self, cluster: LabCluster, gobgp: tuple[GoBGP, str]) -> None:
        speaker, _ = gobgp
        owned = blocks(cluster)
        nodes = {str(n.address.ip) for n in cluster.topo.nodes}

        def established() -> bool:
            states = speaker.neighbors()
            return all(states.get(n) == "established" for n in nodes)

        wait_for(established, timeout=60, what=f"GoBGP's sessions ({speaker.neighbors()})")
        want = {block: address(cluster, owner) for owner, block in owned.items()}
        wait_for(lambda: all(speaker.rib().get(b) == hop for b, hop in want.items()), timeout=30,
                 what="GoBGP to learn every node block")
        wait_for(lambda: all_up(cluster, speaker.host.ip), timeout=20, what="the nodes' status")

    def test_gobgp_route_inside_a_pool_reaches_every_node_and_one_outside_does_not(
            self, cluster: LabCluster, gobgp: tuple[GoBGP, str]) -> None:
        speaker, inside = gobgp
        peer = speaker.host.ip
        wait_for(lambda: all(inside in learned(cluster, n) for n in cluster.topo.nodes),
                 timeout=30, what="every node to accept GoBGP's in-pool prefix")
        wait_for(lambda: all(any(r.startswith(inside) for r in routes(n.netns))
                             for n in cluster.topo.nodes),
                 timeout=30, what="every agent to program GoBGP's in-pool prefix")
        n1 = cluster.topo.nodes[0]
        assert f"via {peer} " in next(r for r in routes(n1.netns) if r.startswith(inside))
        for node in cluster.topo.nodes:
            got = learned(cluster, node)
            assert got[inside] == (peer, peer)  # GoBGP sets itself as the next hop (eBGP)
            assert OUTSIDE_GOBGP not in got
            assert kernel_route(node.netns, OUTSIDE_GOBGP) == ""
        # GoBGP does not pass the other nodes' blocks back (sender-side AS loop check): the one
        # rejection is the prefix outside the pools.
        want = {"outside pools": 1}

        def judged() -> bool:
            return all(rejected(cluster, n, peer) == want for n in cluster.topo.nodes)

        wait_for(judged, timeout=30, what=f"rejections {want} on every node "
                 f"(now {[rejected(cluster, n, peer) for n in cluster.topo.nodes]})")

    def test_md5_password_from_a_secret_matches_bird_and_the_session_comes_up(
            self, cluster: LabCluster, md5_bird: Bird) -> None:
        n1 = cluster.topo.nodes[0]
        peer = md5_bird.host.ip
        wait_for(lambda: md5_bird.protocols().get("n1") == ("up", "Established"), timeout=60,
                 what=f"BIRD's MD5 session with n1 ({md5_bird.protocols()})")
        wait_for(lambda: peer_state(cluster, n1, peer) == ("up", "Established"), timeout=20,
                 what="n1's status to show the MD5 peer up")
        row = status_row(cluster, n1, peer)
        assert "| node specific " in row and "| up " in row and "Established" in row, row
        wait_for(lambda: blocks(cluster)["n1"] in md5_bird.routes(), timeout=20,
                 what="BIRD to learn n1's block over the signed session")
        # ExaBGP's configuration holds the password: readable by its owner only.
        conf = Path(cluster.node_env(n1)["WREN_RUN_DIR"]) / "exabgp.conf"
        assert "md5-password" in conf.read_text()
        assert conf.stat().st_mode & 0o077 == 0

    def test_md5_wrong_password_keeps_the_session_down(
            self, cluster: LabCluster, md5_bird: Bird) -> None:
        n2 = cluster.topo.nodes[1]
        peer = md5_bird.host.ip
        wait_for(lambda: md5_bird.protocols().get("n1") == ("up", "Established"), timeout=60,
                 what="the good session first (BIRD works)")
        # Both sides keep trying; the kernels drop each other's SYNs as wrongly signed.
        before = md5_failures(n2.netns) + md5_failures(md5_bird.host.netns)
        wait_for(lambda: md5_failures(n2.netns) + md5_failures(md5_bird.host.netns) > before,
                 timeout=30, what="a signed SYN to be refused for its signature")
        assert md5_bird.protocols()["n2"][0] != "up", md5_bird.protocols()
        state = peer_state(cluster, n2, peer)
        assert state is not None and state[0] != "up", state
        row = status_row(cluster, n2, peer)
        assert row and "| up " not in row and "Established" not in row, row
        assert blocks(cluster)["n2"] not in md5_bird.routes()
        # The password is the only difference: give BIRD n2's password and the session comes up.
        md5_bird.reconfigure(md5_bird_config(cluster, peer,
                                             {"n1": MD5_PASSWORD, "n2": WRONG_PASSWORD}))
        wait_for(lambda: md5_bird.protocols().get("n2") == ("up", "Established"), timeout=60,
                 what=f"n2's session once the passwords agree ({md5_bird.protocols()})")
        wait_for(lambda: peer_state(cluster, n2, peer) == ("up", "Established"), timeout=20,
                 what="n2's status to show the peer up")
        assert md5_bird.protocols()["n1"] == ("up", "Established")  # untouched by the reconfigure


# -- BIRD as the route reflector (the mesh off) ---------------------------------------------------
RR = "10.0.1.100"


@pytest.fixture(scope="class")
def rr_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    """nodeToNodeMeshEnabled false; every node peers (iBGP) with BIRD only."""
    extra = [peer_doc("bird-rr", RR, NODE_AS)]
    with agent_cluster("bgp", tmp_path_factory.mktemp("interop-rr"), nodes=3, bgp=True,
                       mesh=False, extra=extra) as c:
        for node in c.topo.nodes:
            c.add_pod(node, 1)
        yield c


@pytest.fixture(scope="class")
def rr_bird(rr_cluster: LabCluster) -> Iterator[Bird]:
    """BIRD 2 in our AS, every node an `rr client`; reflects BGP routes only (not its IGP)."""
    with external_host(rr_cluster, "rr", host=100) as host:
        bird = Bird(host)
        bird.start("\n".join([
            *bird_base(host.ip),
            "template bgp wren {",
            f"  local {host.ip} as {NODE_AS};",
            "  rr client;",
            f"  rr cluster id {host.ip};",
            "  ipv4 { import all; export where source = RTS_BGP; };",
            "}",
            *bird_neighbors(rr_cluster.topo.nodes, local=host.ip),
        ]) + "\n")
        yield bird


def everyone_learned_from(cluster: LabCluster, reflector: str) -> bool:
    owned = blocks(cluster)
    for node in cluster.topo.nodes:
        got = learned(cluster, node)
        for owner, block in owned.items():
            if owner != node.name and got.get(block) != (address(cluster, owner), reflector):
                return False
    return True


class TestBirdRouteReflector:
    """A second cluster, the mesh off: BIRD reflects every node's block to the others."""

    def test_every_node_learns_every_block_with_the_owner_as_next_hop(
            self, rr_cluster: LabCluster, rr_bird: Bird) -> None:
        wait_for(lambda: everyone_learned_from(rr_cluster, RR), timeout=60,
                 what="every node to learn every other block through BIRD")
        owned = blocks(rr_cluster)
        for node in rr_cluster.topo.nodes:
            got = learned(rr_cluster, node)
            assert owned[node.name] not in got  # our own block never comes back
            for owner, block in owned.items():
                if owner != node.name:
                    # Reflected with the next hop unchanged: the owner, not the reflector.
                    assert got[block] == (address(rr_cluster, owner), RR), (node.name, got)
        # BIRD holds each block from its owner, every client session Established.
        protos = rr_bird.protocols()
        assert all(protos[n.name] == ("up", "Established") for n in rr_cluster.topo.nodes)
        have = rr_bird.routes()
        for owner, block in owned.items():
            assert have[block] == (address(rr_cluster, owner), owner), have

    def test_no_mesh_sessions_only_the_reflector(
            self, rr_cluster: LabCluster, rr_bird: Bird) -> None:
        routers = {str(r) for r in rr_cluster.topo.router_ips}  # the lab's eBGP router

        def only_the_reflector() -> bool:
            for node in rr_cluster.topo.nodes:
                st = status(rr_cluster, node)
                peers = {p.address: p for p in st.peers if p.address not in routers} if st \
                    else {}
                if set(peers) != {RR} or peers[RR].state != "up":
                    return False
            return True

        wait_for(only_the_reflector, timeout=30, what="each node's peers to be BIRD alone")
        for node in rr_cluster.topo.nodes:
            row = status_row(rr_cluster, node, RR)
            assert "| global " in row and "| up " in row, row
            assert "node-to-node mesh" not in rr_cluster.node_status(node)

    def test_agents_program_the_reflected_blocks_and_pods_reach_each_other(
            self, rr_cluster: LabCluster, rr_bird: Bird) -> None:
        owned = blocks(rr_cluster)
        n1, n3 = rr_cluster.topo.nodes[0], rr_cluster.topo.nodes[2]

        def programmed() -> bool:
            return all(any(r.startswith(block) for r in routes(n.netns))
                       for n in rr_cluster.topo.nodes
                       for owner, block in owned.items() if owner != n.name)

        wait_for(programmed, timeout=30, what="every agent to program the other blocks")
        table = routes(n1.netns)
        assert f"via {address(rr_cluster, 'n2')} " in next(
            r for r in table if r.startswith(owned["n2"]))  # same subnet: straight to n2
        assert f"via {n1.gateway} " in next(r for r in table if r.startswith(owned["n3"]))
        assert f"via {n3.gateway} " in next(
            r for r in routes(n3.netns) if r.startswith(owned["n2"]))
        assert all(rr_cluster.ping(a.netns, b.ip) for a in rr_cluster.pods
                   for b in rr_cluster.pods if a != b)
