"""Neighbour manager: permanent ARP entries for local pods, and for every remote VXLAN VTEP a
neighbour entry (VTEP IP → VTEP MAC on vxlan.calico) plus an FDB entry (VTEP MAC → node IP).

With learning off, VXLAN forwards only what these entries say, so they must be in place before
the routes that use them; the driver applies this table before the route tables.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.calc.desired import DesiredDataplane, IPNetwork, WorkloadRoute
from agent.dataplane._diff import workload_changes
from agent.kernel.neigh_table import Entry, FDBEntry, Neighbour, NeighTable
from wren.constants import VXLAN_DEVICE
from wren.errors import ValidationError
from wren.log import get_logger

__all__ = ["NeighbourManager", "neighbour_entries", "vtep_entries", "workload_entry"]

_log = get_logger(__name__)


def workload_entry(w: WorkloadRoute) -> Neighbour | None:
    """The permanent ARP entry for a local pod's address (IPv4 with a known MAC only)."""
    if w.mac and w.dst.version == 4:
        return Neighbour(iface=w.iface, ip=w.dst.network_address, mac=w.mac)
    return None


def vtep_entries(desired: DesiredDataplane) -> list[Entry]:
    entries: list[Entry] = []
    if desired.vxlan is not None:
        for vtep in desired.vteps:
            entries.append(Neighbour(iface=VXLAN_DEVICE, ip=vtep.ip, mac=vtep.mac))
            entries.append(FDBEntry(iface=VXLAN_DEVICE, mac=vtep.mac, remote=vtep.node_ip))
    return entries


def neighbour_entries(desired: DesiredDataplane) -> list[Entry]:
    """Every entry the desired state implies (what the manager keeps the table at)."""
    entries: list[Entry] = []
    for w in desired.workload_routes.values():
        entry = workload_entry(w)
        if entry is not None:
            entries.append(entry)
    return entries + vtep_entries(desired)


class NeighbourManager:
    """Renders by difference, like the route manager: only the pods whose route changed (found
    by identity, see `_diff`) and the VTEP entries when they change. A pod interface the
    ownership policy does not name gets no entry (the table refuses it) and a warning."""

    def __init__(self, table: NeighTable) -> None:
        self._table = table
        self._pending: DesiredDataplane | None = None
        self._token: object | None = None  # of the desired state rendered last
        self._workloads: Mapping[IPNetwork, WorkloadRoute] = {}
        self._rendered: dict[IPNetwork, Neighbour] = {}
        self._vteps: list[Entry] = []

    def on_desired(self, desired: DesiredDataplane) -> None:
        self._pending = desired

    def complete_deferred_work(self) -> None:
        desired, self._pending = self._pending, None
        if desired is None:
            return
        for dst in workload_changes(self._token, self._workloads, desired):
            w = desired.workload_routes.get(dst)
            self._render(dst, workload_entry(w) if w is not None else None)
        self._workloads, self._token = desired.workload_routes, desired.token
        vteps = vtep_entries(desired)
        if vteps != self._vteps:
            keep = set(vteps)
            for entry in self._vteps:
                if entry not in keep:
                    self._table.delete_entry(entry)
            for entry in vteps:
                self._table.set_entry(entry)
            self._vteps = vteps

    def _render(self, dst: IPNetwork, entry: Neighbour | None) -> None:
        old = self._rendered.get(dst)
        if entry == old:
            return
        if old is not None:
            del self._rendered[dst]
            self._table.delete_entry(old)
        if entry is None:
            return
        try:
            self._table.set_entry(entry)
        except ValidationError as err:
            _log.warning("no neighbour entry for a pod", pod_ip=str(entry.ip), error=str(err))
            return
        self._rendered[dst] = entry
