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
"""

from __future__ import annotations

import ipaddress
import re
import socket
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
                 mtu_iface_pattern: str = DEFAULT_MTU_IFACE_PATTERN) -> None:
        self._ipr = ipr
        self._links = links
        self._mtu_pattern = re.compile(mtu_iface_pattern)

    def __call__(self, state: ClusterState) -> HostFacts:
        me = state.of("Node").get(state.node_name)
        address = me.spec.bgp.ipv4_address if isinstance(me, Node) and me.spec.bgp else None
        parent: tuple[str, int] | None = None
        if address is not None:
            parent = self._link_holding(str(address.ip))
        gateways: dict[IPAddress, IPAddress] = {}
        if address is not None:
            for hop in set(state.learned.values()):
                if hop.version == 4 and hop not in address.network:
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
