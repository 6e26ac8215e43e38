"""Sysctl manager: forwarding on, and on each pod's host-side interface proxy ARP with no delay
(the pod's gateway 169.254.1.1 is answered by the host) and forwarding — as Felix sets them.

The CNI plugin sets the same values when it creates the interface, so a pod is reachable the
moment ADD returns; the agent owns them from then on and repairs drift.
"""

from __future__ import annotations

from agent.calc.desired import DesiredDataplane
from agent.kernel.sysctl import SysctlTable, iface_sysctl
from wren.constants import IPIP_DEVICE, VXLAN_DEVICE

__all__ = ["SysctlManager", "wanted_sysctls"]


def wanted_sysctls(desired: DesiredDataplane) -> dict[str, str]:
    wanted = {"net/ipv4/ip_forward": "1"}
    has_v6 = any(w.dst.version == 6 for w in desired.workload_routes.values())
    if has_v6:
        wanted["net/ipv6/conf/all/forwarding"] = "1"
    for w in desired.workload_routes.values():
        if w.dst.version == 4:
            wanted[iface_sysctl(4, w.iface, "proxy_arp")] = "1"
            wanted[f"net/ipv4/neigh/{w.iface}/proxy_delay"] = "0"
            wanted[iface_sysctl(4, w.iface, "forwarding")] = "1"
        else:
            wanted[iface_sysctl(6, w.iface, "proxy_ndp")] = "1"
            wanted[iface_sysctl(6, w.iface, "forwarding")] = "1"
    # Traffic arriving on a tunnel for a pod is checked against routes via other devices:
    # loose reverse-path filtering, as Felix sets on its tunnel devices.
    if desired.vxlan is not None:
        wanted[iface_sysctl(4, VXLAN_DEVICE, "rp_filter")] = "2"
    if desired.ipip is not None:
        wanted[iface_sysctl(4, IPIP_DEVICE, "rp_filter")] = "2"
    return wanted


class SysctlManager:
    def __init__(self, table: SysctlTable) -> None:
        self._table = table
        self._wanted: dict[str, str] | None = None

    def on_desired(self, desired: DesiredDataplane) -> None:
        self._wanted = wanted_sysctls(desired)

    def complete_deferred_work(self) -> None:
        if self._wanted is not None:
            self._table.replace_all(self._wanted)
            self._wanted = None
