"""Tunnel devices: `vxlan.calico` while a pool uses VXLAN, `tunl0` while one uses IPIP.

The device specs go to the link table; the VXLAN neighbour and FDB entries of other nodes' VTEPs
are the neighbour manager's. A kernel without IPIP surfaces as a problem the agent reports on
readiness (and `wrenctl node status`) while everything else is still programmed.
"""

from __future__ import annotations

import ipaddress

from agent.calc.desired import DesiredDataplane
from agent.kernel.link_table import IPIPLink, LinkSpec, LinkTable, VXLANLink

__all__ = ["TunnelManager", "link_specs"]


def _host(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Interface | \
        ipaddress.IPv6Interface:
    return ipaddress.ip_interface(f"{addr}/{addr.max_prefixlen}")


def link_specs(desired: DesiredDataplane) -> list[LinkSpec]:
    specs: list[LinkSpec] = []
    if desired.vxlan is not None:
        v = desired.vxlan
        specs.append(VXLANLink(local=v.local_ip, parent=v.parent, mtu=v.mtu, mac=v.mac,
                               addresses=(_host(v.address),), vni=v.vni, port=v.port))
    if desired.ipip is not None:
        i = desired.ipip
        specs.append(IPIPLink(mtu=i.mtu, addresses=(_host(i.address),) if i.address else ()))
    return specs


class TunnelManager:
    def __init__(self, links: LinkTable) -> None:
        self._links = links
        self._wanted: list[LinkSpec] | None = None

    def on_desired(self, desired: DesiredDataplane) -> None:
        self._wanted = link_specs(desired)

    def complete_deferred_work(self) -> None:
        if self._wanted is not None:
            self._links.replace_all(self._wanted)
            self._wanted = None
