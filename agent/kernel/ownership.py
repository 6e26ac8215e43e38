"""Which kernel routes the agent may touch.

Felix's routetable grew its ownership rules late and its own comments regret it: without an
explicit answer to "is this route ours?", a daemon either leaks its old routes or deletes an
operator's. The rule here: a route is ours if it carries our protocol number, or if it sits on a
device we own (`cali*`, `tunl0`, `vxlan.calico`). Never ours, whatever the device: routes the
kernel itself maintains (protocol `kernel`: link-local and connected subnets) and route types
other than unicast/blackhole (local, broadcast, multicast).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.kernel.netlink import RTN_BLACKHOLE, RTN_UNICAST, RouteMsg
from wren.constants import IPIP_DEVICE, ROUTE_PROTOCOL, VXLAN_DEVICE, WORKLOAD_IFACE_PREFIX

__all__ = ["RTPROT_KERNEL", "OwnershipPolicy"]

RTPROT_KERNEL = 2


@dataclass(frozen=True, slots=True)
class OwnershipPolicy:
    protocol: int = ROUTE_PROTOCOL
    workload_prefixes: tuple[str, ...] = (WORKLOAD_IFACE_PREFIX,)
    devices: frozenset[str] = frozenset({IPIP_DEVICE, VXLAN_DEVICE})

    def is_workload_iface(self, name: str | None) -> bool:
        return name is not None and name.startswith(self.workload_prefixes)

    def owns_iface(self, name: str | None) -> bool:
        return name is not None and (name in self.devices or self.is_workload_iface(name))

    def owns_route(self, route: RouteMsg, iface: str | None) -> bool:
        """`iface` is the name of `route.oif` (None if it has none or it is unknown)."""
        if route.type not in (RTN_UNICAST, RTN_BLACKHOLE) or route.protocol == RTPROT_KERNEL:
            return False
        return route.protocol == self.protocol or self.owns_iface(iface)
