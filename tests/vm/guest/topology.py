"""Hosts made of network namespaces for the IPIP tests inside the VM, through pyroute2.

Why a router: with two /24 subnets joined by a router, nodes on different subnets are not
L2-adjacent, so CrossSubnet (tunnel only across subnets) means something, and the router knows
no pod address, so pod traffic between subnets only gets through encapsulated.

    subnet 0: 192.168.100.0/24                         subnet 1: 192.168.101.0/24
    node ns "eth0" .10 ──┐                          ┌── node ns "eth0" .10
    node ns "eth0" .11 ──┤ br0 .1 ─ router ns ─ br1 .1 ├── ...
                         (forwarding on, no pod routes)
    each node: tunl0 (when `tunnel_up`), pods behind `cali<..>` veths (/32 route, proxy_arp),
               pod side: eth0 with a /32, default via 169.254.1.1 onlink (Calico's layout)

Typical use (everything is removed by `Fabric.close`, also when a test fails)::

    with Fabric.create() as fabric:
        a = fabric.add_node(subnet=0)
        b = fabric.add_node(subnet=1)
        pod_a = fabric.add_pod(a, address="10.244.0.2")
        pod_b = fabric.add_pod(b, address="10.244.1.2")
        tunnel_up(a, address="10.244.0.1")
        ...

Agent-driven tests can stop after `add_node`/`add_pod` and let the agent program tunl0 and
routes; `route_via_tunnel`, `link_counters` and `ping` then check its work.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute, netns

__all__ = [
    "POD_GATEWAY",
    "Fabric",
    "LinkCounters",
    "Namespace",
    "Node",
    "Pod",
    "RouteView",
    "ensure_tunl0",
    "ipip_link",
    "link_counters",
    "ping",
    "route_direct",
    "route_to",
    "route_via_tunnel",
    "tunnel_up",
    "wait_until",
]

TAG = "wv"
POD_GATEWAY = "169.254.1.1"  # Calico's fake next hop, answered by proxy ARP on the cali veth
RTNH_F_ONLINK = 4
RTM_F_FIB_MATCH = 0x2000  # route get: return the matching FIB entry, not the resolved route
IPIP_MTU = 1480  # 1500 minus the 20-byte outer IPv4 header


@dataclass
class Namespace:
    """A named network namespace with a pyroute2 socket opened inside it."""

    name: str
    ipr: Any  # pyroute2.IPRoute bound to the namespace (pyroute2 ships no type hints)

    def index(self, ifname: str) -> int:
        found = self.ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"netns {self.name}: no link {ifname!r}")
        return int(found[0])

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside the namespace (sysctl, ping): iproute2's `ip netns exec`."""
        proc = subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, check=False, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"netns {self.name}: {' '.join(argv)} exited {proc.returncode}: "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")


@dataclass
class Node:
    """A host on one subnet: `eth0` with `address`, default route via the subnet's router."""

    ns: Namespace
    subnet: int
    address: ipaddress.IPv4Interface
    pods: list[Pod] = field(default_factory=list)

    @property
    def ip(self) -> str:
        return str(self.address.ip)


@dataclass
class Pod:
    """A pod namespace: `eth0` with a /32 `address`; `host_ifname` is its cali veth on the node."""

    ns: Namespace
    node: Node
    address: str
    host_ifname: str


@dataclass(frozen=True)
class LinkCounters:
    rx_packets: int
    tx_packets: int


@dataclass(frozen=True)
class RouteView:
    """The kernel's answer to "how would this node send to dst": what a test asserts about
    routes someone else (the agent) programmed."""

    dev: str
    gateway: str | None
    onlink: bool
    source: str | None


def _subnet(index: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"192.168.{100 + index}.0/24")


def _netns_fd(name: str) -> int:
    return os.open(f"/var/run/netns/{name}", os.O_RDONLY)


class Fabric:
    """Router namespace with one bridge per subnet; owns every namespace it makes."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.namespaces: list[Namespace] = []
        self.nodes: list[Node] = []
        self._subnets: set[int] = set()
        self._counter = 0
        self.host = IPRoute()  # the VM's root namespace: veth pairs are born here, then moved
        self.router = self._namespace("r")
        self.router.ipr.link("set", index=self.router.index("lo"), state="up")
        self.router.sysctl("net.ipv4.ip_forward", "1")

    @classmethod
    @contextmanager
    def create(cls) -> Iterator[Fabric]:
        """A fabric that is torn down on exit, also when the body raises."""
        fabric = cls(tag=f"{TAG}{secrets.token_hex(2)}")
        try:
            yield fabric
        finally:
            fabric.close()

    def _name(self, role: str) -> str:
        self._counter += 1
        return f"{self.tag}{role}{self._counter}"

    def _namespace(self, role: str) -> Namespace:
        name = f"{self.tag}-{role}{len(self.namespaces)}"
        netns.create(name)
        ns = Namespace(name=name, ipr=None)
        self.namespaces.append(ns)  # registered before anything can fail, so close() finds it
        ns.ipr = IPRoute(netns=name, flags=0)
        return ns

    def _veth(self, *, left: Namespace, left_name: str, right: Namespace,
              right_name: str) -> tuple[int, int]:
        """A veth pair with one end in each namespace; returns (left index, right index)."""
        tmp_left, tmp_right = self._name("v"), self._name("v")
        self.host.link("add", ifname=tmp_left, kind="veth", peer=tmp_right)
        for tmp, ns, final in ((tmp_left, left, left_name), (tmp_right, right, right_name)):
            fd = _netns_fd(ns.name)
            try:
                self.host.link("set", index=self.host.link_lookup(ifname=tmp)[0], net_ns_fd=fd)
            finally:
                os.close(fd)
            ns.ipr.link("set", index=ns.index(tmp), ifname=final)
        return left.index(left_name), right.index(right_name)

    def _ensure_subnet(self, index: int) -> None:
        if index in self._subnets:
            return
        bridge = f"br{index}"
        self.router.ipr.link("add", ifname=bridge, kind="bridge")
        br = self.router.index(bridge)
        gateway = _subnet(index)[1]
        self.router.ipr.addr("add", index=br, address=str(gateway), prefixlen=24)
        self.router.ipr.link("set", index=br, state="up")
        self._subnets.add(index)

    def add_node(self, *, subnet: int) -> Node:
        """A node namespace plugged into `subnet` (0, 1, ...), forwarding on, lo and eth0 up."""
        self._ensure_subnet(subnet)
        ns = self._namespace("n")
        host_index = 10 + sum(1 for n in self.nodes if n.subnet == subnet)
        address = ipaddress.IPv4Interface(f"{_subnet(subnet)[host_index]}/24")
        port = f"p{len(self.nodes)}"
        router_side, node_side = self._veth(left=self.router, left_name=port, right=ns,
                                            right_name="eth0")
        self.router.ipr.link("set", index=router_side,
                             master=self.router.index(f"br{subnet}"), state="up")
        ns.ipr.link("set", index=ns.index("lo"), state="up")
        ns.ipr.addr("add", index=node_side, address=str(address.ip), prefixlen=24)
        ns.ipr.link("set", index=node_side, state="up")
        ns.ipr.route("add", dst="0.0.0.0/0", gateway=str(_subnet(subnet)[1]))
        ns.sysctl("net.ipv4.ip_forward", "1")
        node = Node(ns=ns, subnet=subnet, address=address)
        self.nodes.append(node)
        return node

    def add_pod(self, node: Node, *, address: str) -> Pod:
        """A pod behind `node` wired the way Calico's CNI plugin does it."""
        ns = self._namespace("p")
        host_ifname = f"cali{self.tag}{len(node.pods)}"[:15]
        node_side, pod_side = self._veth(left=node.ns, left_name=host_ifname, right=ns,
                                         right_name="eth0")
        ns.ipr.link("set", index=ns.index("lo"), state="up")
        ns.ipr.addr("add", index=pod_side, address=address, prefixlen=32)
        ns.ipr.link("set", index=pod_side, state="up")
        ns.ipr.route("add", dst=f"{POD_GATEWAY}/32", oif=pod_side, scope=253)  # scope link
        ns.ipr.route("add", dst="0.0.0.0/0", gateway=POD_GATEWAY, oif=pod_side,
                     flags=RTNH_F_ONLINK)
        node.ns.ipr.link("set", index=node_side, state="up")
        node.ns.sysctl(f"net.ipv4.conf.{host_ifname}.proxy_arp", "1")
        node.ns.ipr.route("add", dst=f"{address}/32", oif=node_side, scope=253)
        pod = Pod(ns=ns, node=node, address=address, host_ifname=host_ifname)
        node.pods.append(pod)
        return pod

    def close(self) -> None:
        """Remove every namespace this fabric made (their veths go with them)."""
        errors = []
        for ns in reversed(self.namespaces):
            try:
                if ns.ipr is not None:
                    ns.ipr.close()
                netns.remove(ns.name)
            except OSError as exc:
                errors.append(f"{ns.name}: {exc}")
        self.namespaces.clear()
        self.host.close()
        if errors:
            raise RuntimeError(f"fabric {self.tag}: cleanup failed: {'; '.join(errors)}")


def ensure_tunl0(node: Node) -> int:
    """tunl0's index; created through pyroute2 if the namespace has none (ipip not yet loaded
    when the namespace was made, or fallback tunnels disabled), like Felix does."""
    found = node.ns.ipr.link_lookup(ifname="tunl0")
    if found:
        return int(found[0])
    node.ns.ipr.link("add", ifname="tunl0", kind="ipip")
    return node.ns.index("tunl0")


def tunnel_up(node: Node, *, address: str) -> int:
    """Calico's IPIP device on a node: tunl0 up, MTU 1480, a /32 from the node's block."""
    index = ensure_tunl0(node)
    node.ns.ipr.link("set", index=index, mtu=IPIP_MTU, state="up")
    node.ns.ipr.addr("add", index=index, address=address, prefixlen=32)
    return index


def route_via_tunnel(node: Node, *, prefix: str, gateway: str) -> None:
    """`ip route add <prefix> via <remote node> dev tunl0 onlink`: the remote node's address
    is not on tunl0's subnet (it has none), hence onlink."""
    node.ns.ipr.route("add", dst=prefix, gateway=gateway, oif=node.ns.index("tunl0"),
                      flags=RTNH_F_ONLINK)


def route_direct(node: Node, *, prefix: str, gateway: str) -> None:
    """`ip route add <prefix> via <remote node> dev eth0`: no tunnel (same-subnet peers)."""
    node.ns.ipr.route("add", dst=prefix, gateway=gateway, oif=node.ns.index("eth0"))


def ipip_link(node: Node, *, ifname: str, local: str, remote: str) -> int:
    """A point-to-point ipip link made through pyroute2 (the library path the agent uses)."""
    node.ns.ipr.link("add", ifname=ifname, kind="ipip", ipip_local=local, ipip_remote=remote,
                     ipip_ttl=64)
    index = node.ns.index(ifname)
    node.ns.ipr.link("set", index=index, mtu=IPIP_MTU, state="up")
    return index


def link_counters(ns: Namespace, ifname: str) -> LinkCounters:
    """Packet counters of one link, from its IFLA_STATS64."""
    link = ns.ipr.link("get", index=ns.index(ifname))[0]
    stats = link.get_attr("IFLA_STATS64")
    return LinkCounters(rx_packets=int(stats["rx_packets"]), tx_packets=int(stats["tx_packets"]))


def ping(src: Namespace, dst: str, *, count: int = 3, wait_s: int = 5) -> bool:
    """True if any echo reply came back (first packets may be spent on ARP under TCG)."""
    proc = src.run("ping", "-n", "-c", str(count), "-W", str(wait_s), "-i", "0.5", dst,
                   check=False)
    return proc.returncode == 0


def route_to(node: Node, dst: str) -> RouteView:
    """`ip route get <dst>` in the node: device, next hop and source address; the onlink flag
    only shows on the FIB entry itself (`ip route get fibmatch`), so that is asked as well."""
    route = node.ns.ipr.route("get", dst=dst)[0]
    entry = node.ns.ipr.route("get", dst=dst, flags=RTM_F_FIB_MATCH)[0]
    link = node.ns.ipr.link("get", index=route.get_attr("RTA_OIF"))[0]
    return RouteView(dev=link.get_attr("IFLA_IFNAME"), gateway=route.get_attr("RTA_GATEWAY"),
                     onlink=bool(entry["flags"] & RTNH_F_ONLINK),
                     source=route.get_attr("RTA_PREFSRC"))


def wait_until(check: Callable[[], bool], *, timeout_s: float = 60.0, what: str) -> None:
    """Poll until `check()` holds. For state another process programs (the agent): under TCG
    everything is 10-50x slower than on the host, so waits are generous and never asserted on."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout_s:.0f}s still not true: {what}")
        time.sleep(0.2)
