"""Permanent neighbour (ARP/NDP) entries and VXLAN FDB entries on the devices we own.

VXLAN without learning needs both for every remote VTEP: the neighbour entry maps the remote
VTEP's address to its MAC on `vxlan.calico`, the FDB entry maps that MAC to the remote node's
real address (where to send the UDP packet). Workload interfaces get a permanent entry for the
pod's address so the first packet does not wait for ARP.

Only permanent entries on devices the ownership policy names are read or written; the kernel's
own dynamic entries and everything on other devices are left alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.kernel.delta import DeltaTracker
from agent.kernel.netlink import LinkInfo, Netlink
from agent.kernel.ownership import OwnershipPolicy
from wren.errors import ValidationError
from wren.log import get_logger

__all__ = [
    "Entry",
    "FDBEntry",
    "NeighApplyResult",
    "NeighTable",
    "NeighTableCounters",
    "Neighbour",
]

log = get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
AF_BRIDGE = 7
NTF_SELF = 0x02

_Key = tuple[Literal["neigh", "fdb"], str, str]  # kind, device, ip (neigh) or mac (fdb)


def _mac(value: str) -> str:
    parts = value.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise ValidationError(kind="Neighbour", name=value, field="mac",
                              rule="must be six colon-separated hex octets")
    return ":".join(parts)


@dataclass(frozen=True, slots=True)
class Neighbour:
    """`ip neigh replace <ip> lladdr <mac> dev <iface> nud permanent`."""

    iface: str
    ip: IPAddress
    mac: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", _mac(self.mac))


@dataclass(frozen=True, slots=True)
class FDBEntry:
    """`bridge fdb replace <mac> dev <iface> dst <remote> self permanent`."""

    iface: str
    mac: str
    remote: IPAddress

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", _mac(self.mac))


Entry = Neighbour | FDBEntry


def _key(entry: Entry) -> _Key:
    if isinstance(entry, Neighbour):
        return ("neigh", entry.iface, str(entry.ip))
    return ("fdb", entry.iface, entry.mac)


@dataclass
class NeighTableCounters:
    entries_programmed: int = 0
    updates: int = 0
    deletions: int = 0
    resyncs: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class NeighApplyResult:
    updated: int = 0
    deleted: int = 0
    errors: tuple[str, ...] = ()
    waiting_for_iface: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Cache:
    index_by_name: dict[str, int] = field(default_factory=dict)
    name_by_index: dict[int, str] = field(default_factory=dict)


class NeighTable:
    """`ipr` is a pyroute2 `IPRoute` in the node's namespace; `netlink` serves link dumps."""

    def __init__(self, ipr: Any, netlink: Netlink, *,
                 policy: OwnershipPolicy | None = None) -> None:
        self._ipr = ipr
        self._nl = netlink
        self._policy = policy or OwnershipPolicy()
        self._tracker: DeltaTracker[_Key, Entry] = DeltaTracker()
        self._links = _Cache()
        self._resync_due = True
        self.counters = NeighTableCounters()

    def set_entry(self, entry: Entry) -> None:
        if not self._policy.owns_iface(entry.iface):
            raise ValidationError(kind=type(entry).__name__, name=str(_key(entry)[2]),
                                  field="iface", rule=f"{entry.iface} is not a device we own")
        self._tracker.set_desired(_key(entry), entry)

    def delete_entry(self, entry: Entry) -> None:
        self._tracker.delete_desired(_key(entry))

    def replace_all(self, entries: Iterable[Entry]) -> None:
        self._tracker.replace_all_desired({_key(e): e for e in entries})

    def queue_resync(self) -> None:
        self._resync_due = True

    def on_link(self, link: LinkInfo, *, deleted: bool) -> None:
        """A deleted device takes its entries with it; a new one may unblock waiting entries."""
        if deleted:
            self._links.index_by_name.pop(link.name, None)
            self._links.name_by_index.pop(link.index, None)
            for key, _ in self._tracker.dataplane_items():
                if key[1] == link.name:
                    self._tracker.delete_dataplane(key)
        else:
            self._links.index_by_name[link.name] = link.index
            self._links.name_by_index[link.index] = link.name

    def apply(self) -> NeighApplyResult:
        if self._resync_due:
            try:
                self._resync()
            except Exception as exc:  # pyroute2 NetlinkError / OSError
                self.counters.errors += 1
                return NeighApplyResult(errors=(f"neighbour resync failed: {exc}",))
        errors: list[str] = []
        deleted: list[_Key] = []
        updated: list[_Key] = []
        waiting = 0
        for key, entry in self._tracker.pending_deletions():
            index = self._links.index_by_name.get(key[1])
            if index is None:
                deleted.append(key)  # the device is gone, and its entries with it
                continue
            try:
                self._write("del", entry, index)
                deleted.append(key)
            except Exception as exc:
                errors.append(f"deleting {entry}: {exc}")
        for key, entry in self._tracker.pending_updates():
            index = self._links.index_by_name.get(key[1])
            if index is None:
                waiting += 1
                continue
            try:
                self._write("replace", entry, index)
                updated.append(key)
            except Exception as exc:
                errors.append(f"writing {entry}: {exc}")
        self._tracker.apply_success(updated=updated, deleted=deleted)
        for err in errors:
            log.warning("neighbour change failed; retrying next apply", error=err)
        self.counters.updates += len(updated)
        self.counters.deletions += len(deleted)
        self.counters.errors += len(errors)
        self.counters.entries_programmed = self._tracker.dataplane_count
        return NeighApplyResult(updated=len(updated), deleted=len(deleted), errors=tuple(errors),
                                waiting_for_iface=waiting)

    def _write(self, command: str, entry: Entry, index: int) -> None:
        if isinstance(entry, Neighbour):
            self._ipr.neigh(command, dst=str(entry.ip), lladdr=entry.mac, ifindex=index,
                            state="permanent")
        else:
            # pyroute2 fills in "self permanent" only for add/del; say it for replace too.
            self._ipr.fdb(command, ifindex=index, lladdr=entry.mac, dst=str(entry.remote),
                          state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)

    def _resync(self) -> None:
        links = self._nl.dump_links()
        self._links = _Cache({x.name: x.index for x in links}, {x.index: x.name for x in links})
        seen: dict[_Key, Entry] = {}
        for msg in self._ipr.neigh("dump"):
            name = self._links.name_by_index.get(msg["ifindex"])
            if (not self._policy.owns_iface(name) or not msg["state"] & NUD_PERMANENT
                    or msg["family"] not in (2, 10) or not msg.get("lladdr")):
                continue
            n = Neighbour(iface=name or "", ip=ipaddress.ip_address(msg.get("dst")),
                          mac=msg.get("lladdr"))
            seen[_key(n)] = n
        for msg in self._ipr.fdb("dump"):
            name = self._links.name_by_index.get(msg["ifindex"])
            if (not self._policy.owns_iface(name) or msg["family"] != AF_BRIDGE
                    or not msg.get("dst") or not msg.get("lladdr")
                    or msg.get("lladdr") == "00:00:00:00:00:00"):
                continue
            f = FDBEntry(iface=name or "", mac=msg.get("lladdr"),
                         remote=ipaddress.ip_address(msg.get("dst")))
            seen[_key(f)] = f
        self._tracker.replace_dataplane(seen)
        self._resync_due = False
        self.counters.resyncs += 1
        self.counters.entries_programmed = self._tracker.dataplane_count
