"""IPIP between nodes on different subnets, the way Calico's IPIP mode wires it (runs in the VM).

Each test builds its own fabric (tests/vm/guest/topology.py): node A on 192.168.100.0/24, node B
on 192.168.101.0/24, a router between them that knows no pod address. Node blocks: A owns
10.244.0.0/26, B owns 10.244.0.64/26; tunl0 gets the first address of the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.guest.topology import (
    Fabric,
    Node,
    Pod,
    RouteView,
    ipip_link,
    link_counters,
    ping,
    route_direct,
    route_to,
    route_via_tunnel,
    tunnel_up,
    wait_until,
)

pytestmark = [pytest.mark.vm, pytest.mark.integration]

BLOCK_A, TUNNEL_A, POD_A = "10.244.0.0/26", "10.244.0.1", "10.244.0.2"
BLOCK_B, TUNNEL_B, POD_B = "10.244.0.64/26", "10.244.0.65", "10.244.0.66"
BLOCK_C, TUNNEL_C, POD_C = "10.244.0.128/26", "10.244.0.129", "10.244.0.130"


@pytest.fixture
def fabric() -> Iterator[Fabric]:
    with Fabric.create() as fabric:
        yield fabric


@pytest.fixture
def two_subnets(fabric: Fabric) -> tuple[Node, Pod, Node, Pod]:
    """Node and pod on subnet 0, node and pod on subnet 1; no tunnel, no pod routes yet."""
    a = fabric.add_node(subnet=0)
    b = fabric.add_node(subnet=1)
    return a, fabric.add_pod(a, address=POD_A), b, fabric.add_pod(b, address=POD_B)


def test_pods_on_different_subnets_cannot_reach_each_other_without_a_tunnel(
    two_subnets: tuple[Node, Pod, Node, Pod],
) -> None:
    a, pod_a, b, pod_b = two_subnets
    assert ping(a.ns, b.ip), "the underlay itself must work, or the next check proves nothing"
    assert not ping(pod_a.ns, pod_b.address, count=1, wait_s=2)


def test_pod_to_pod_traffic_crosses_subnets_through_tunl0_and_its_counters_rise(
    two_subnets: tuple[Node, Pod, Node, Pod],
) -> None:
    a, pod_a, b, pod_b = two_subnets
    tunnel_up(a, address=TUNNEL_A)
    tunnel_up(b, address=TUNNEL_B)
    route_via_tunnel(a, prefix=BLOCK_B, gateway=b.ip)
    route_via_tunnel(b, prefix=BLOCK_A, gateway=a.ip)
    before_a, before_b = link_counters(a.ns, "tunl0"), link_counters(b.ns, "tunl0")

    assert ping(pod_a.ns, POD_B)
    assert ping(pod_b.ns, POD_A)

    after_a, after_b = link_counters(a.ns, "tunl0"), link_counters(b.ns, "tunl0")
    # Both directions were encapsulated on one node and decapsulated on the other.
    assert after_a.tx_packets > before_a.tx_packets
    assert after_a.rx_packets > before_a.rx_packets
    assert after_b.tx_packets > before_b.tx_packets
    assert after_b.rx_packets > before_b.rx_packets


def test_node_reaches_a_remote_pod_from_its_tunnel_address(
    two_subnets: tuple[Node, Pod, Node, Pod],
) -> None:
    """Why tunl0 gets an address at all: traffic the node itself sends into the tunnel (health
    checks, host-network pods) needs a source the remote side routes back through the tunnel."""
    a, _, b, pod_b = two_subnets
    tunnel_up(a, address=TUNNEL_A)
    tunnel_up(b, address=TUNNEL_B)
    route_via_tunnel(a, prefix=BLOCK_B, gateway=b.ip)
    route_via_tunnel(b, prefix=BLOCK_A, gateway=a.ip)
    route = a.ns.ipr.route("get", dst=POD_B)[0]
    assert route.get_attr("RTA_PREFSRC") == TUNNEL_A
    assert ping(a.ns, pod_b.address)


def test_crosssubnet_layout_sends_same_subnet_pods_direct_and_others_through_tunl0(
    fabric: Fabric,
) -> None:
    """What IPIP CrossSubnet programs: node C shares node A's subnet (direct, no overhead),
    node B does not (tunnel). Only the tunnelled pod's traffic moves tunl0's counters."""
    a, c, b = fabric.add_node(subnet=0), fabric.add_node(subnet=0), fabric.add_node(subnet=1)
    pod_a = fabric.add_pod(a, address=POD_A)
    fabric.add_pod(b, address=POD_B)
    fabric.add_pod(c, address=POD_C)
    for node, address in ((a, TUNNEL_A), (b, TUNNEL_B), (c, TUNNEL_C)):
        tunnel_up(node, address=address)
    route_direct(a, prefix=BLOCK_C, gateway=c.ip)
    route_direct(c, prefix=BLOCK_A, gateway=a.ip)
    route_via_tunnel(a, prefix=BLOCK_B, gateway=b.ip)
    route_via_tunnel(b, prefix=BLOCK_A, gateway=a.ip)
    wait_until(lambda: route_to(a, POD_B).dev == "tunl0", timeout_s=5, what="route A->B")

    assert route_to(a, POD_C) == RouteView(dev="eth0", gateway=c.ip, onlink=False,
                                           source=a.ip)
    assert route_to(a, POD_B) == RouteView(dev="tunl0", gateway=b.ip, onlink=True,
                                           source=TUNNEL_A)
    before = link_counters(a.ns, "tunl0")
    assert ping(pod_a.ns, POD_C)
    assert link_counters(a.ns, "tunl0") == before
    assert ping(pod_a.ns, POD_B)
    assert link_counters(a.ns, "tunl0").tx_packets > before.tx_packets


def test_pyroute2_point_to_point_ipip_link_carries_pod_traffic(
    two_subnets: tuple[Node, Pod, Node, Pod],
) -> None:
    """The library path: `link('add', kind='ipip', ipip_local=..., ipip_remote=...)`."""
    a, pod_a, b, _ = two_subnets
    ipip_link(a, ifname="wvip", local=a.ip, remote=b.ip)
    ipip_link(b, ifname="wvip", local=b.ip, remote=a.ip)
    link = a.ns.ipr.link("get", index=a.ns.index("wvip"))[0]
    assert link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "ipip"
    for node, block in ((a, BLOCK_B), (b, BLOCK_A)):
        node.ns.ipr.route("add", dst=block, oif=node.ns.index("wvip"))
    before = link_counters(b.ns, "wvip")

    assert ping(pod_a.ns, POD_B)
    assert link_counters(b.ns, "wvip").rx_packets > before.rx_packets


@pytest.fixture
def no_fallback_tunnels() -> Iterator[None]:
    """New namespaces get no tunl0 (`fb_tunnels_only_for_init_net=2`), as on hardened hosts."""
    knob = Path("/proc/sys/net/core/fb_tunnels_only_for_init_net")
    old = knob.read_text().strip()
    knob.write_text("2\n")
    try:
        yield
    finally:
        knob.write_text(f"{old}\n")


def test_tunl0_made_through_pyroute2_decapsulates_where_the_kernel_made_none(
    no_fallback_tunnels: None, two_subnets: tuple[Node, Pod, Node, Pod],
) -> None:
    a, pod_a, b, _ = two_subnets
    assert not a.ns.ipr.link_lookup(ifname="tunl0"), "the sysctl should have suppressed tunl0"
    tunnel_up(a, address=TUNNEL_A)  # ensure_tunl0 adds it: kind ipip, no local, no remote
    tunnel_up(b, address=TUNNEL_B)
    route_via_tunnel(a, prefix=BLOCK_B, gateway=b.ip)
    route_via_tunnel(b, prefix=BLOCK_A, gateway=a.ip)

    assert ping(pod_a.ns, POD_B)
    assert link_counters(b.ns, "tunl0").rx_packets > 0
