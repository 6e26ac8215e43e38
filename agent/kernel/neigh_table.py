"""Permanent neighbour (ARP/NDP) entries and VXLAN FDB entries on the devices we own.

VXLAN without learning needs both for every remote VTEP: the neighbour entry maps the remote
VTEP's address to its MAC on `vxlan.calico`, the FDB entry maps that MAC to the remote node's
real address (where to send the UDP packet). Workload interfaces get a permanent entry for the
pod's address so the first packet does not wait for ARP.

Only permanent entries on devices the ownership policy names are read or written; the kernel's
own dynamic entries and everything on other devices are left alone.

Writes and dumps go through the raw netlink socket the route table uses (`netlink.py`), not
pyroute2: one pyroute2 request per entry made 1,000 VTEP entries cost ~300 ms (`ip -batch`:
9 ms) and dumping them back ~80 ms. An apply sends every pending change in batches and maps the
kernel's per-message errors back to the entry:

    pending deletions + updates ──► [NeighOp …] ──send_neighs──► kernel
                                                     │ NeighFailure(op, errno) per refusal
    DeltaTracker.apply_success(the rest) ◄───────────┘ ENOENT on delete = already gone

A resync dumps the links, the IPv4/IPv6 neighbours (one dump) and the FDB of each owned device
that can hold remote entries (one kernel-filtered dump per device, not the multicast entries of
every pod's veth).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from agent.kernel.delta import DeltaTracker
from agent.kernel.netlink import (
    AF_BRIDGE,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    LinkInfo,
    NeighFailure,
    NeighMsg,
    NeighNetlink,
    NeighOp,
)
from agent.kernel.ownership import OwnershipPolicy
from wren.errors import TemporaryError, ValidationError
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
_FDB_STATE = NUD_PERMANENT | NUD_NOARP  # what `bridge fdb ... permanent` leaves in the kernel
_ZERO_MAC = "00:00:00:00:00:00"  # a VXLAN device's default destination, not an entry of ours

_Key = tuple[Literal["neigh", "fdb"], str, str]  # kind, device, ip (neigh) or mac (fdb)


_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def _mac(value: str) -> str:
    """Lower case; a regex because every entry read back by a resync passes through here."""
    mac = value.lower()
    if not _MAC.fullmatch(mac):
        raise ValidationError(kind="Neighbour", name=value, field="mac",
                              rule="must be six colon-separated hex octets")
    return mac


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


def _to_msg(entry: Entry, index: int) -> NeighMsg:
    """The entry as the kernel stores it (and as a dump reports it back)."""
    if isinstance(entry, Neighbour):
        family = socket.AF_INET if entry.ip.version == 4 else socket.AF_INET6
        return NeighMsg(family=family, ifindex=index, dst=entry.ip, lladdr=entry.mac)
    return NeighMsg(family=AF_BRIDGE, ifindex=index, dst=entry.remote, lladdr=entry.mac,
                    state=_FDB_STATE, flags=NTF_SELF)


class NeighTable:
    """`netlink` (the route table's `RouteSocket`, in the node's namespace) carries writes and
    dumps. `ipr` is no longer used: it stays in the signature so that existing callers
    (`wiring.py`, the benchmarks, the integration tests) keep working unchanged."""

    def __init__(self, ipr: object, netlink: NeighNetlink, *,
                 policy: OwnershipPolicy | None = None) -> None:
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
            except (OSError, TemporaryError) as exc:
                self.counters.errors += 1
                return NeighApplyResult(errors=(f"neighbour resync failed: {exc}",))
        deleted: list[_Key] = []
        planned: list[tuple[NeighOp, _Key, Entry]] = []
        waiting = 0
        for key, entry in self._tracker.pending_deletions():
            index = self._links.index_by_name.get(key[1])
            if index is None:
                deleted.append(key)  # the device is gone, and its entries with it
                continue
            planned.append((NeighOp("delete", _to_msg(entry, index)), key, entry))
        for key, entry in self._tracker.pending_updates():
            index = self._links.index_by_name.get(key[1])
            if index is None:
                waiting += 1
                continue
            planned.append((NeighOp("replace", _to_msg(entry, index)), key, entry))
        failures: list[NeighFailure] = []
        if planned:
            try:
                failures = self._nl.send_neighs([op for op, _, _ in planned])
            except (OSError, TemporaryError) as exc:
                # We no longer know which operations landed: look again before the next apply.
                self._resync_due = True
                self.counters.errors += 1
                self._tracker.apply_success(deleted=deleted)
                return NeighApplyResult(
                    deleted=len(deleted), waiting_for_iface=waiting,
                    errors=(f"sending {len(planned)} neighbour operations failed: {exc}",))
        refused = {id(f.op): f for f in failures}
        updated: list[_Key] = []
        errors: list[str] = []
        for op, key, entry in planned:
            failure = refused.get(id(op))
            if op.op == "delete":
                if failure is None or failure.errno == errno.ENOENT:  # ENOENT: already gone
                    deleted.append(key)
                else:
                    errors.append(f"deleting {entry}: {failure.reason}")
            elif failure is None:
                updated.append(key)
            elif failure.errno == errno.ENODEV:
                waiting += 1  # the device went away under us: relearn the links, then wait
                self._resync_due = True
            else:
                errors.append(f"writing {entry}: {failure.reason}")
        self._tracker.apply_success(updated=updated, deleted=deleted)
        for err in errors:
            log.warning("neighbour change failed; retrying next apply", error=err)
        self.counters.updates += len(updated)
        self.counters.deletions += len(deleted)
        self.counters.errors += len(errors)
        self.counters.entries_programmed = self._tracker.dataplane_count
        return NeighApplyResult(updated=len(updated), deleted=len(deleted), errors=tuple(errors),
                                waiting_for_iface=waiting)

    def _resync(self) -> None:
        links = self._nl.dump_links()
        self._links = _Cache({x.name: x.index for x in links}, {x.index: x.name for x in links})
        owned = {x.index: x.name for x in links if self._policy.owns_iface(x.name)}
        # Where the kernel agrees with what we want, `seen` gets the very object we hold:
        # no new entry built and validated, and the diff compares identical fields.
        wanted = self._tracker.get_desired
        seen: dict[_Key, Entry] = {}
        for msg in self._nl.dump_neighs(family=socket.AF_UNSPEC):
            name = owned.get(msg.ifindex)
            if (name is None or msg.family not in (socket.AF_INET, socket.AF_INET6)
                    or not msg.state & NUD_PERMANENT or msg.dst is None
                    or len(msg.lladdr) != len(_ZERO_MAC)):
                continue  # not ours, not permanent, or not an Ethernet neighbour
            key: _Key = ("neigh", name, str(msg.dst))
            held = wanted(key)
            seen[key] = (held if isinstance(held, Neighbour) and held.mac == msg.lladdr
                         else Neighbour(iface=name, ip=msg.dst, mac=msg.lladdr))
        # Remote FDB entries live on tunnel devices (`vxlan.calico`), never on a pod's veth:
        # dumping every veth's FDB would list only their multicast addresses. A device an FDB
        # entry is wanted on is dumped whatever its name.
        wanted_on = {key[1] for key, _ in self._tracker.desired_items() if key[0] == "fdb"}
        for index, name in owned.items():
            if self._policy.is_workload_iface(name) and name not in wanted_on:
                continue
            for msg in self._nl.dump_neighs(family=AF_BRIDGE, ifindex=index):
                if (msg.ifindex != index or msg.dst is None or not msg.state & NUD_PERMANENT
                        or len(msg.lladdr) != len(_ZERO_MAC) or msg.lladdr == _ZERO_MAC):
                    continue  # the device's own (multicast) addresses, learned entries
                key = ("fdb", name, msg.lladdr)
                held = wanted(key)
                seen[key] = (held if isinstance(held, FDBEntry) and held.remote == msg.dst
                             else FDBEntry(iface=name, mac=msg.lladdr, remote=msg.dst))
        self._tracker.replace_dataplane(seen)
        self._resync_due = False
        self.counters.resyncs += 1
        self.counters.entries_programmed = self._tracker.dataplane_count
