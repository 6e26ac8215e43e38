"""Facts about the host the calc needs, read from the kernel at calculation time: the interface
holding the node address, the host MTU, and how the kernel reaches off-subnet next hops.

Read on every recalculation, so it must not cost in proportion to the pods. It used to dump
every link through pyroute2 to find one interface's name and MTU: with 10,000 `cali*` veths
that was two thirds of the agent's CPU during a sync (seconds per endpoint event) and most of
its peak RSS (pyroute2 builds a deep object tree per link). Now:

    node address ──get_addr(AF_INET)──► index of the interface holding it ──get_links(index)──►
                   (host addresses only: pods' veths have no IPv4 address)     name, MTU

and only when the address is on no interface (the Node is not written yet) the host MTU comes
from the interfaces matching Calico's `mtuIfacePattern`: their names from the lean raw-socket
link dump (`names`), their MTUs from one pyroute2 request each.

A burst of BGP updates recalculates every few milliseconds, and these requests (2-5 ms through
pyroute2) were a tenth of the agent's time learning 10,000 prefixes: the facts are kept for
`max_age` seconds (1 s) while the node address and the off-subnet next hops stay the same. The
agent also recalculates on every periodic resync, so a host change shows within that interval.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.calc.cluster_state import ClusterState
from agent.calc.dataplane_calc import HostFacts
from agent.calc.desired import IPAddress
from agent.kernel.netlink import LinkInfo
from agent.startup.mtu import DEFAULT_MTU_IFACE_PATTERN, detect_host_mtu
from wren.log import get_logger
from wren.model import Node

__all__ = ["HostReader"]

_log = get_logger(__name__)


class HostReader:
    """`ipr` is a pyroute2 IPRoute in the node's namespace; `links` lists the namespace's links
    cheaply (the route socket's `dump_links`)."""

    def __init__(self, ipr: Any, links: Callable[[], Iterable[LinkInfo]], *,
                 mtu_iface_pattern: str = DEFAULT_MTU_IFACE_PATTERN, max_age: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ipr = ipr
        self._links = links
        self._mtu_pattern = re.compile(mtu_iface_pattern)
        self._max_age = max_age
        self._clock = clock
        self._kept: tuple[float, object, HostFacts] | None = None  # (read at, inputs, facts)

    def __call__(self, state: ClusterState) -> HostFacts:
        me = state.of("Node").get(state.node_name)
        address = me.spec.bgp.ipv4_address if isinstance(me, Node) and me.spec.bgp else None
        address6 = me.spec.bgp.ipv6_address if isinstance(me, Node) and me.spec.bgp else None
        # Next hops off our subnets, per family: the calc routes them recursively.
        hops = frozenset() if address is None else frozenset(
            hop for hop in state.learned_next_hops
            if (hop.version == 4 and hop not in address.network)
            or (hop.version == 6 and address6 is not None and hop not in address6.network))
        now = self._clock()
        kept = self._kept
        if kept is not None and kept[1] == (address, hops) and now - kept[0] < self._max_age:
            return kept[2]
        facts = self._read(address, hops)
        self._kept = (now, (address, hops), facts)
        return facts

    def _read(self, address: ipaddress.IPv4Interface | None,
              hops: frozenset[IPAddress]) -> HostFacts:
        parent: tuple[str, int] | None = None
        if address is not None:
            parent = self._link_holding(str(address.ip))
        gateways: dict[IPAddress, IPAddress] = {}
        for hop in hops:
            gateway = self._gateway_for(hop)
            if gateway is not None:
                gateways[hop] = gateway
        if parent is not None:
            return HostFacts(parent_iface=parent[0], host_mtu=parent[1], gateways=gateways)
        return HostFacts(parent_iface=None, host_mtu=detect_host_mtu(self._pattern_mtus()),
                         gateways=gateways)

    def _link_holding(self, ip: str) -> tuple[str, int] | None:
        """(name, MTU) of the interface holding `ip`, or None."""
        for msg in self._ipr.get_addr(family=socket.AF_INET):
            if msg.get_attr("IFA_ADDRESS") == ip:
                return self._name_mtu(msg["index"])
        return None

    def _name_mtu(self, index: int) -> tuple[str, int] | None:
        try:
            links = self._ipr.get_links(index)
        except Exception as exc:  # NetlinkError ENODEV: it went away since the address dump
            _log.info("interface vanished while reading it", index=index, error=str(exc))
            return None
        for link in links:
            return str(link.get_attr("IFLA_IFNAME")), int(link.get_attr("IFLA_MTU"))
        return None

    def _pattern_mtus(self) -> dict[str, int]:
        mtus: dict[str, int] = {}
        for link in self._links():
            if self._mtu_pattern.search(link.name):
                found = self._name_mtu(link.index)
                if found is not None:
                    mtus[found[0]] = found[1]
        return mtus

    def _gateway_for(self, hop: IPAddress) -> IPAddress | None:
        try:
            for route in self._ipr.route("get", dst=str(hop)):
                gw = route.get_attr("RTA_GATEWAY")
                if gw:
                    return ipaddress.ip_address(gw)
        except Exception as exc:  # pyroute2 raises NetlinkError for "no route"
            _log.info("no route to next hop", next_hop=str(hop), error=str(exc))
        return None
