"""Facts about the host the calc needs, read from the kernel at calculation time: the interface
holding the node address, the host MTU, and how the kernel reaches off-subnet next hops."""

from __future__ import annotations

import ipaddress
from typing import Any

from agent.calc.cluster_state import ClusterState
from agent.calc.dataplane_calc import HostFacts
from agent.calc.desired import IPAddress
from agent.startup.mtu import detect_host_mtu
from wren.log import get_logger
from wren.model import Node

__all__ = ["HostReader"]

_log = get_logger(__name__)


class HostReader:
    """`ipr` is a pyroute2 IPRoute in the node's namespace."""

    def __init__(self, ipr: Any) -> None:
        self._ipr = ipr

    def __call__(self, state: ClusterState) -> HostFacts:
        links = {str(link.get_attr("IFLA_IFNAME")): (link["index"], int(link.get_attr("IFLA_MTU")))
                 for link in self._ipr.get_links()}
        me = state.of("Node").get(state.node_name)
        address = me.spec.bgp.ipv4_address if isinstance(me, Node) and me.spec.bgp else None
        parent = None
        if address is not None:
            for msg in self._ipr.get_addr(family=2):
                if msg.get_attr("IFA_ADDRESS") == str(address.ip):
                    parent = next((n for n, (i, _) in links.items() if i == msg["index"]), None)
                    break
        gateways: dict[IPAddress, IPAddress] = {}
        if address is not None:
            for hop in set(state.learned.values()):
                if hop.version == 4 and hop not in address.network:
                    gateway = self._gateway_for(hop)
                    if gateway is not None:
                        gateways[hop] = gateway
        mtu = detect_host_mtu({n: m for n, (_, m) in links.items()})
        if parent is not None:
            mtu = links[parent][1]
        return HostFacts(parent_iface=parent, host_mtu=mtu, gateways=gateways)

    def _gateway_for(self, hop: IPAddress) -> IPAddress | None:
        try:
            for route in self._ipr.route("get", dst=str(hop)):
                gw = route.get_attr("RTA_GATEWAY")
                if gw:
                    return ipaddress.ip_address(gw)
        except Exception as exc:  # pyroute2 raises NetlinkError for "no route"
            _log.info("no route to next hop", next_hop=str(hop), error=str(exc))
        return None
