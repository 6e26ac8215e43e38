"""Neighbour manager: permanent ARP entries for local pods, and for every remote VXLAN VTEP a
neighbour entry (VTEP IP → VTEP MAC on vxlan.calico) plus an FDB entry (VTEP MAC → node IP).

With learning off, VXLAN forwards only what these entries say, so they must be in place before
the routes that use them; the driver applies this table before the route tables.
"""

from __future__ import annotations

from agent.calc.desired import DesiredDataplane
from agent.kernel.neigh_table import Entry, FDBEntry, Neighbour, NeighTable
from wren.constants import VXLAN_DEVICE

__all__ = ["NeighbourManager", "neighbour_entries"]


def neighbour_entries(desired: DesiredDataplane) -> list[Entry]:
    entries: list[Entry] = []
    for w in desired.workload_routes.values():
        if w.mac and w.dst.version == 4:
            entries.append(Neighbour(iface=w.iface, ip=w.dst.network_address, mac=w.mac))
    if desired.vxlan is not None:
        for vtep in desired.vteps:
            entries.append(Neighbour(iface=VXLAN_DEVICE, ip=vtep.ip, mac=vtep.mac))
            entries.append(FDBEntry(iface=VXLAN_DEVICE, mac=vtep.mac, remote=vtep.node_ip))
    return entries


class NeighbourManager:
    def __init__(self, table: NeighTable) -> None:
        self._table = table
        self._wanted: list[Entry] | None = None

    def on_desired(self, desired: DesiredDataplane) -> None:
        self._wanted = neighbour_entries(desired)

    def complete_deferred_work(self) -> None:
        if self._wanted is not None:
            self._table.replace_all(self._wanted)
            self._wanted = None
