"""Sysctl manager: forwarding on, and on each pod's host-side interface proxy ARP with no delay
(the pod's gateway 169.254.1.1 is answered by the host) and forwarding — as Felix sets them.

The CNI plugin sets the same values when it creates the interface, so a pod is reachable the
moment ADD returns; the agent owns them from then on and repairs drift.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.calc.desired import DesiredDataplane, IPNetwork, WorkloadRoute
from agent.dataplane._diff import workload_changes
from agent.kernel.sysctl import SysctlTable, iface_sysctl
from wren.constants import IPIP_DEVICE, VXLAN_DEVICE

__all__ = ["SysctlManager", "static_sysctls", "wanted_sysctls", "workload_sysctls"]


def workload_sysctls(w: WorkloadRoute) -> dict[str, str]:
    """What one pod's address needs on its host-side interface (and, for IPv6, globally)."""
    if w.dst.version == 4:
        return {iface_sysctl(4, w.iface, "proxy_arp"): "1",
                f"net/ipv4/neigh/{w.iface}/proxy_delay": "0",
                iface_sysctl(4, w.iface, "forwarding"): "1"}
    return {"net/ipv6/conf/all/forwarding": "1",
            iface_sysctl(6, w.iface, "proxy_ndp"): "1",
            iface_sysctl(6, w.iface, "forwarding"): "1"}


def static_sysctls(desired: DesiredDataplane) -> dict[str, str]:
    """The settings that do not depend on pods: forwarding, and loose reverse-path filtering
    on the tunnel devices (traffic arriving on a tunnel for a pod is checked against routes
    via other devices), as Felix sets them."""
    wanted = {"net/ipv4/ip_forward": "1"}
    if desired.vxlan is not None:
        wanted[iface_sysctl(4, VXLAN_DEVICE, "rp_filter")] = "2"
    if desired.ipip is not None:
        wanted[iface_sysctl(4, IPIP_DEVICE, "rp_filter")] = "2"
    return wanted


def wanted_sysctls(desired: DesiredDataplane) -> dict[str, str]:
    """Every setting the desired state implies (what the manager keeps the table at)."""
    wanted: dict[str, str] = {}
    for w in desired.workload_routes.values():
        wanted.update(workload_sysctls(w))
    wanted.update(static_sysctls(desired))  # a tunnel device's setting wins
    return wanted


class SysctlManager:
    """Renders by difference: the settings of the pods whose route changed (found by identity,
    see `_diff`), counted per setting so that one shared by two addresses (an interface with
    an IPv4 and an IPv6 address, IPv6 forwarding) goes only with the last of them. Rebuilding
    all 30,000 settings of 10,000 pods for every recalculation was an O(N) cost per event."""

    def __init__(self, table: SysctlTable) -> None:
        self._table = table
        self._pending: DesiredDataplane | None = None
        self._token: object | None = None  # of the desired state rendered last
        self._workloads: Mapping[IPNetwork, WorkloadRoute] = {}
        self._counts: dict[str, int] = {}  # pod setting → how many pod addresses want it
        self._values: dict[str, str] = {}  # pod setting → value
        self._static: dict[str, str] = {}

    def on_desired(self, desired: DesiredDataplane) -> None:
        self._pending = desired

    def complete_deferred_work(self) -> None:
        desired, self._pending = self._pending, None
        if desired is None:
            return
        touched: set[str] = set()
        for dst in workload_changes(self._token, self._workloads, desired):
            old = self._workloads.get(dst)
            new = desired.workload_routes.get(dst)
            if old is new:
                continue
            if old is not None:
                for key in workload_sysctls(old):
                    self._counts[key] -= 1
                    if not self._counts[key]:
                        del self._counts[key], self._values[key]
                    touched.add(key)
            if new is not None:
                for key, value in workload_sysctls(new).items():
                    self._counts[key] = self._counts.get(key, 0) + 1
                    self._values[key] = value
                    touched.add(key)
        self._workloads, self._token = desired.workload_routes, desired.token
        static = static_sysctls(desired)
        if static != self._static:
            touched |= static.keys() | self._static.keys()
            self._static = static
        for key in touched:
            wanted = self._static.get(key, self._values.get(key))
            if wanted is None:
                self._table.delete(key)
            else:
                self._table.set(key, wanted)
