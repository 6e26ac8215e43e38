"""LinkTable, NeighTable, SysctlTable and RouteTable together on real kernels: two node
namespaces joined by a veth, VXLAN between them, packets really crossing."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from pyroute2 import IPRoute

from agent.kernel.link_table import IPIPLink, LinkTable, VXLANLink
from agent.kernel.neigh_table import FDBEntry, Neighbour, NeighTable
from agent.kernel.netlink import RouteSocket
from agent.kernel.netns import in_netns
from agent.kernel.route_table import Route, RouteTable
from agent.kernel.sysctl import SysctlTable, iface_sysctl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NET = ipaddress.ip_network
ADDR = ipaddress.ip_address
IFACE = ipaddress.ip_interface


def ip(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, *args], text=True, check=True,
                          capture_output=True).stdout


@dataclass
class Node:
    ns: str
    ipr: Any
    sock: RouteSocket
    links: LinkTable
    neigh: NeighTable
    routes: RouteTable
    sysctl: SysctlTable


def make_node(ns: str) -> Node:
    with in_netns(ns):
        ipr = IPRoute()
        sock = RouteSocket()
    return Node(ns, ipr, sock, LinkTable(ipr, sock), NeighTable(ipr, sock), RouteTable(sock),
                SysctlTable(netns=ns))


@pytest.fixture
def nodes() -> Iterator[tuple[Node, Node]]:
    tag = os.urandom(3).hex()
    names = [f"wt-lk-{tag}a", f"wt-lk-{tag}b"]
    made: list[Node] = []
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            ip(name, "link", "set", "lo", "up")
        ip(names[0], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", names[1])
        for i, name in enumerate(names, start=1):
            ip(name, "addr", "add", f"192.168.90.{i}/24", "dev", "eth0")
            ip(name, "link", "set", "eth0", "up")
            made.append(make_node(name))
        yield made[0], made[1]
    finally:
        for node in made:
            node.ipr.close()
            node.sock.close()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def vxlan_spec(i: int) -> VXLANLink:
    return VXLANLink(local=ADDR(f"192.168.90.{i}"), parent="eth0", mtu=1450,
                     mac=f"66:00:00:00:00:0{i}", addresses=(IFACE(f"10.244.{i}.0/32"),))


def test_vxlan_device_is_created_to_spec_and_kept_there(nodes: tuple[Node, Node]) -> None:
    node = nodes[0]
    node.links.set_link(vxlan_spec(1))
    result = node.links.apply()
    assert result.ok and result.changes[0].op == "create"
    shown = ip(node.ns, "-d", "addr", "show", "vxlan.calico")
    for expected in ("mtu 1450", "66:00:00:00:00:01", "vxlan id 4096", "local 192.168.90.1",
                     "dev eth0", "dstport 4789", "nolearning", "10.244.1.0/32", "UP"):
        assert expected in shown, expected

    fresh = LinkTable(node.ipr, node.sock)
    fresh.set_link(vxlan_spec(1))
    assert fresh.apply().changes == ()  # a restarted agent changes nothing

    ip(node.ns, "link", "set", "vxlan.calico", "mtu", "1400")
    fresh.queue_resync()
    assert [c.op for c in fresh.apply().changes] == ["set_mtu"]
    assert fresh.counters.drift_repaired == 1

    fresh.set_link(replace(vxlan_spec(1), vni=4097))
    assert [c.op for c in fresh.apply().changes][:2] == ["delete", "create"]
    assert "vxlan id 4097" in ip(node.ns, "-d", "link", "show", "vxlan.calico")
    assert fresh.index_of("vxlan.calico") is not None

    fresh.delete_link("vxlan.calico")
    assert [c.op for c in fresh.apply().changes] == ["delete"]
    assert "vxlan.calico" not in ip(node.ns, "link", "show")


def kernel_has_ipip() -> bool:
    name = f"wt-lk-{os.urandom(3).hex()}p"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        return subprocess.run(["ip", "-n", name, "link", "add", "tunl0", "type", "ipip"],
                              check=False, capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.skipif(kernel_has_ipip(), reason="this kernel has IPIP; see the qemu VM tests")
def test_missing_ipip_support_is_reported_clearly(nodes: tuple[Node, Node]) -> None:
    node = nodes[0]
    node.links.set_link(IPIPLink(mtu=1480, addresses=(IFACE("10.244.1.0/32"),)))
    result = node.links.apply()
    assert not result.ok
    (problem,) = result.unsupported
    assert problem.feature == "ipip"
    assert "kernel has no ipip support" in str(problem) and "tunl0" in str(problem)
    assert "VXLAN" in str(problem)
    again = node.links.apply()  # permanent: reported, not retried in a loop
    assert again.changes == () and len(again.unsupported) == 1


def test_pods_on_two_nodes_reach_each_other_over_vxlan(nodes: tuple[Node, Node]) -> None:
    for i, node in enumerate(nodes, start=1):
        j = 3 - i
        node.sysctl.replace_all({"net.ipv4.ip_forward": 1,
                                 iface_sysctl(4, "vxlan.calico", "rp_filter"): 2})  # loose
        assert node.sysctl.apply().waiting  # vxlan.calico does not exist yet
        node.links.set_link(vxlan_spec(i))
        assert node.links.apply().ok
        assert node.sysctl.apply().written == ("net/ipv4/conf/vxlan.calico/rp_filter",)
        in_ns = subprocess.run(["ip", "netns", "exec", node.ns, "cat",
                                "/proc/sys/net/ipv4/conf/vxlan.calico/rp_filter",
                                "/proc/sys/net/ipv4/ip_forward"],
                               capture_output=True, text=True, check=True).stdout.split()
        assert in_ns == ["2", "1"]  # written inside the node's namespace, not the host's
        ip(node.ns, "addr", "add", f"10.244.{i}.5/32", "dev", "lo")  # a "pod" address
        node.neigh.replace_all([
            Neighbour(iface="vxlan.calico", ip=ADDR(f"10.244.{j}.0"), mac=f"66:00:00:00:00:0{j}"),
            FDBEntry(iface="vxlan.calico", mac=f"66:00:00:00:00:0{j}",
                     remote=ADDR(f"192.168.90.{j}"))])
        assert node.neigh.apply().updated == 2
        node.routes.set_route(Route.via(NET(f"10.244.{j}.0/26"), ADDR(f"10.244.{j}.0"),
                                        iface="vxlan.calico", onlink=True))
        assert node.routes.apply().updated == 1

    ping = subprocess.run(["ip", "netns", "exec", nodes[0].ns, "ping", "-c", "2", "-W", "2",
                           "-I", "10.244.1.5", "10.244.2.5"], check=False, capture_output=True,
                          text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    stats = ip(nodes[1].ns, "-s", "link", "show", "vxlan.calico")
    rx_packets = int(stats.split("RX:")[1].splitlines()[1].split()[1])
    assert rx_packets >= 2
    assert "PERMANENT" in ip(nodes[0].ns, "neigh", "show", "dev", "vxlan.calico")
    fdb = subprocess.run(["bridge", "-n", nodes[0].ns, "fdb", "show", "dev", "vxlan.calico"],
                         capture_output=True, text=True, check=True).stdout
    assert "66:00:00:00:00:02 dst 192.168.90.2 self permanent" in fdb

    # A fresh neighbour table over this state changes nothing; a hand-deleted entry comes back.
    node = nodes[0]
    fresh = NeighTable(node.ipr, node.sock)
    fresh.replace_all([
        Neighbour(iface="vxlan.calico", ip=ADDR("10.244.2.0"), mac="66:00:00:00:00:02"),
        FDBEntry(iface="vxlan.calico", mac="66:00:00:00:00:02", remote=ADDR("192.168.90.2"))])
    assert fresh.apply().updated == 0
    ip(node.ns, "neigh", "del", "10.244.2.0", "dev", "vxlan.calico")
    fresh.queue_resync()
    assert fresh.apply().updated == 1
