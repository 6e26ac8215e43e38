"""The tunnel devices the agent owns (`vxlan.calico`, `tunl0`) and their addresses.

Per device: observe it (pyroute2), compare with the spec (`plan_link`, pure), make the few
changes that differ. Attributes the kernel cannot change in place (VNI, port, local address,
parent device, learning) mean delete + create. Only devices named by the ownership policy are
ever touched; a device we own that is no longer wanted is removed, except `tunl0`, which is the
ipip module's fallback device and cannot be deleted: it is emptied of addresses and set down.

The table also keeps the ifindex ↔ name cache other parts need, refreshed on link events.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.kernel.netlink import LinkInfo, Netlink
from agent.kernel.ownership import OwnershipPolicy
from wren.constants import IPIP_DEVICE, VXLAN_DEVICE, VXLAN_PORT, VXLAN_VNI
from wren.errors import KernelUnsupported, ValidationError
from wren.log import get_logger

__all__ = [
    "IPIPLink",
    "LinkApplyResult",
    "LinkChange",
    "LinkSpec",
    "LinkTable",
    "LinkTableCounters",
    "ObservedLink",
    "VXLANLink",
    "plan_link",
]

log = get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
_IFF_UP = 0x1


@dataclass(frozen=True, slots=True)
class VXLANLink:
    local: IPAddress  # this node's address: the outer source of every packet
    parent: str | None  # the device holding `local`
    mtu: int
    mac: str | None = None
    addresses: tuple[IPInterface, ...] = ()  # the VTEP address, as a /32 (or /128)
    vni: int = VXLAN_VNI
    port: int = VXLAN_PORT
    name: str = VXLAN_DEVICE

    def __post_init__(self) -> None:
        if not 0 < self.vni < 1 << 24:
            raise ValidationError(kind="VXLANLink", name=self.name, field="vni",
                                  rule="must be 1..16777215")
        if self.mac is not None:
            object.__setattr__(self, "mac", self.mac.lower())


@dataclass(frozen=True, slots=True)
class IPIPLink:
    mtu: int
    addresses: tuple[IPInterface, ...] = ()
    name: str = IPIP_DEVICE


LinkSpec = VXLANLink | IPIPLink


@dataclass(frozen=True, slots=True)
class ObservedLink:
    """What the kernel says about one device (the fields we compare)."""

    name: str
    index: int
    kind: str | None
    up: bool
    mtu: int
    mac: str | None = None
    vni: int | None = None
    port: int | None = None
    local: IPAddress | None = None
    parent_index: int | None = None
    learning: bool | None = None
    addresses: frozenset[IPInterface] = frozenset()


@dataclass(frozen=True, slots=True)
class LinkChange:
    op: Literal["create", "delete", "set_mtu", "set_mac", "set_up", "set_down", "add_address",
                "del_address"]
    name: str
    mtu: int | None = None
    mac: str | None = None
    address: IPInterface | None = None
    reason: str = ""


def _recreate_reason(spec: LinkSpec, seen: ObservedLink, parent_index: int | None) -> str:
    kind = "vxlan" if isinstance(spec, VXLANLink) else "ipip"
    if seen.kind != kind:
        return f"kind {seen.kind} is not {kind}"
    if isinstance(spec, VXLANLink):
        for what, want, have in (("vni", spec.vni, seen.vni), ("port", spec.port, seen.port),
                                 ("local", spec.local, seen.local),
                                 ("parent", parent_index, seen.parent_index)):
            if want != have:
                return f"{what} {have} is not {want}"
        if seen.learning:
            return "learning is on"
    return ""


def plan_link(spec: LinkSpec | None, seen: ObservedLink | None, *, name: str,
              parent_index: int | None = None) -> list[LinkChange]:
    """The changes that turn `seen` into `spec` (None = the device should not exist)."""
    if spec is None:
        if seen is None:
            return []
        if name == IPIP_DEVICE:  # the fallback device cannot be deleted: make it inert
            emptied = [LinkChange("del_address", name, address=a) for a in sorted(
                seen.addresses, key=str) if not _is_link_local(a)]
            return [*emptied, LinkChange("set_down", name)] if seen.up else emptied
        return [LinkChange("delete", name, reason="no longer wanted")]
    if seen is not None:
        reason = _recreate_reason(spec, seen, parent_index)
        if reason:
            return [LinkChange("delete", name, reason=reason),
                    *plan_link(spec, None, name=name, parent_index=parent_index)]
    if seen is None:
        mac = spec.mac if isinstance(spec, VXLANLink) else None
        return [LinkChange("create", name, mtu=spec.mtu, mac=mac),
                *(LinkChange("add_address", name, address=a) for a in spec.addresses),
                LinkChange("set_up", name)]
    changes: list[LinkChange] = []
    if seen.mtu != spec.mtu:
        changes.append(LinkChange("set_mtu", name, mtu=spec.mtu))
    if isinstance(spec, VXLANLink) and spec.mac is not None and seen.mac != spec.mac:
        changes.append(LinkChange("set_mac", name, mac=spec.mac))
    wanted = set(spec.addresses)
    changes += [LinkChange("del_address", name, address=a)
                for a in sorted(seen.addresses - wanted, key=str) if not _is_link_local(a)]
    changes += [LinkChange("add_address", name, address=a)
                for a in spec.addresses if a not in seen.addresses]
    if not seen.up:
        changes.append(LinkChange("set_up", name))
    return changes


def _is_link_local(address: IPInterface) -> bool:
    return address.version == 6 and address.ip.is_link_local  # the kernel's own fe80::/64


@dataclass
class LinkTableCounters:
    changes: int = 0
    resyncs: int = 0
    errors: int = 0
    drift_repaired: int = 0


@dataclass(frozen=True, slots=True)
class LinkApplyResult:
    changes: tuple[LinkChange, ...] = ()
    errors: tuple[str, ...] = ()
    unsupported: tuple[KernelUnsupported, ...] = ()
    waiting: tuple[str, ...] = ()  # devices whose parent does not exist yet

    @property
    def ok(self) -> bool:
        return not self.errors and not self.unsupported


@dataclass
class _Pending:
    dirty: set[str] = field(default_factory=set)
    unsupported: dict[str, KernelUnsupported] = field(default_factory=dict)


class LinkTable:
    """`ipr` is a pyroute2 `IPRoute` opened in the node's namespace; `netlink` (the raw route
    socket) serves the cheap full link dump for the index cache."""

    def __init__(self, ipr: Any, netlink: Netlink, *,
                 policy: OwnershipPolicy | None = None) -> None:
        self._ipr = ipr
        self._nl = netlink
        self._policy = policy or OwnershipPolicy()
        self._specs: dict[str, LinkSpec] = {}
        self._index_by_name: dict[str, int] = {}
        self._name_by_index: dict[int, str] = {}
        self._p = _Pending()
        self._resync_due = True
        self._synced_once = False
        self.counters = LinkTableCounters()

    # -- desired ------------------------------------------------------------------------------

    def set_link(self, spec: LinkSpec) -> None:
        if not self._policy.owns_iface(spec.name):
            raise ValidationError(kind="Link", name=spec.name, field="name",
                                  rule="not a device this agent owns")
        if self._specs.get(spec.name) != spec:
            self._specs[spec.name] = spec
            self._p.dirty.add(spec.name)
            self._p.unsupported.pop(spec.name, None)

    def delete_link(self, name: str) -> None:
        if self._specs.pop(name, None) is not None:
            self._p.dirty.add(name)
            self._p.unsupported.pop(name, None)

    def replace_all(self, specs: Iterable[LinkSpec]) -> None:
        new = {s.name: s for s in specs}
        for name in [n for n in self._specs if n not in new]:
            self.delete_link(name)
        for spec in new.values():
            self.set_link(spec)

    def queue_resync(self) -> None:
        self._resync_due = True

    # -- index cache --------------------------------------------------------------------------

    def index_of(self, name: str) -> int | None:
        return self._index_by_name.get(name)

    def name_of(self, index: int) -> str | None:
        return self._name_by_index.get(index)

    def on_link(self, link: LinkInfo, *, deleted: bool) -> None:
        """Keep the cache current; a change to a device we own is looked at on the next apply."""
        if deleted:
            if self._index_by_name.get(link.name) == link.index:
                del self._index_by_name[link.name]
            self._name_by_index.pop(link.index, None)
        else:
            old = self._index_by_name.get(link.name)
            if old is not None and old != link.index:
                self._name_by_index.pop(old, None)
            self._index_by_name[link.name] = link.index
            self._name_by_index[link.index] = link.name
        if link.name in self._policy.devices:
            self._p.dirty.add(link.name)
        if any(isinstance(s, VXLANLink) and s.parent == link.name for s in self._specs.values()):
            self._p.dirty.update(s.name for s in self._specs.values() if isinstance(s, VXLANLink))

    # -- apply --------------------------------------------------------------------------------

    def apply(self) -> LinkApplyResult:
        if self._resync_due:
            links = self._nl.dump_links()
            self._index_by_name = {x.name: x.index for x in links}
            self._name_by_index = {x.index: x.name for x in links}
            self._p.dirty |= set(self._specs) | (self._policy.devices & self._index_by_name.keys())
            self._resync_due = False
            self.counters.resyncs += 1
        done: list[LinkChange] = []
        errors: list[str] = []
        waiting: list[str] = []
        for name in sorted(self._p.dirty):
            if name in self._p.unsupported:
                continue
            spec = self._specs.get(name)
            parent_index: int | None = None
            if isinstance(spec, VXLANLink) and spec.parent is not None:
                parent_index = self._index_by_name.get(spec.parent)
                if parent_index is None:
                    waiting.append(name)
                    continue
            try:
                seen = self._observe(name)
                changes = plan_link(spec, seen, name=name, parent_index=parent_index)
                for change in changes:
                    self._execute(change, spec, parent_index)
                    done.append(change)
                    log.info("link changed", device=name, op=change.op, reason=change.reason)
                if changes and self._synced_once and seen is not None:
                    self.counters.drift_repaired += 1
                self._p.dirty.discard(name)
            except KernelUnsupported as exc:
                self._p.unsupported[name] = exc
                log.error("device not supported by this kernel", device=name, error=str(exc))
            except Exception as exc:  # pyroute2 raises NetlinkError/OSError/ValueError
                errors.append(f"device {name}: {exc}")
                log.warning("link change failed; retrying next apply", device=name,
                            error=str(exc))
        self._synced_once = True
        self.counters.changes += len(done)
        self.counters.errors += len(errors)
        return LinkApplyResult(changes=tuple(done), errors=tuple(errors),
                               unsupported=tuple(self._p.unsupported.values()),
                               waiting=tuple(waiting))

    def _observe(self, name: str) -> ObservedLink | None:
        try:
            (msg,) = self._ipr.link("get", ifname=name)
        except Exception as exc:
            if getattr(exc, "code", None) == errno.ENODEV:
                return None
            raise
        index = int(msg["index"])
        self._index_by_name[name] = index
        self._name_by_index[index] = name
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        attrs: dict[str, Any] = dict(data["attrs"]) if data else {}
        local = attrs.get("IFLA_VXLAN_LOCAL") or attrs.get("IFLA_VXLAN_LOCAL6")
        addresses = frozenset(
            ipaddress.ip_interface(f"{a.get('address')}/{a['prefixlen']}")
            for a in self._ipr.addr("dump", index=index) if a["index"] == index)
        mac = msg.get("address")
        learning = attrs.get("IFLA_VXLAN_LEARNING")
        return ObservedLink(
            name=name, index=index, kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
            up=bool(msg["flags"] & _IFF_UP), mtu=int(msg.get("mtu")),
            mac=mac.lower() if mac else None, vni=attrs.get("IFLA_VXLAN_ID"),
            port=attrs.get("IFLA_VXLAN_PORT"),
            local=ipaddress.ip_address(local) if local else None,
            parent_index=attrs.get("IFLA_VXLAN_LINK"),
            learning=None if learning is None else bool(learning), addresses=addresses)

    def _execute(self, change: LinkChange, spec: LinkSpec | None,
                 parent_index: int | None) -> None:
        ipr, name = self._ipr, change.name
        if change.op == "create":
            self._create(change, spec, parent_index)
            return
        index = self._index_by_name.get(name)
        if index is None:
            (index,) = ipr.link_lookup(ifname=name) or (None,)
            if index is None:
                raise LookupError(f"device {name} vanished")
        if change.op == "delete":
            ipr.link("del", index=index)
            self._index_by_name.pop(name, None)
            self._name_by_index.pop(index, None)
        elif change.op == "set_mtu":
            ipr.link("set", index=index, mtu=change.mtu)
        elif change.op == "set_mac":
            ipr.link("set", index=index, address=change.mac)
        elif change.op == "set_up":
            ipr.link("set", index=index, state="up")
        elif change.op == "set_down":
            ipr.link("set", index=index, state="down")
        else:
            assert change.address is not None
            ipr.addr("add" if change.op == "add_address" else "del", index=index,
                     address=str(change.address.ip), prefixlen=change.address.network.prefixlen)

    def _create(self, change: LinkChange, spec: LinkSpec | None,
                parent_index: int | None) -> None:
        kwargs: dict[str, Any] = {"ifname": change.name, "mtu": change.mtu}
        if isinstance(spec, VXLANLink):
            kwargs.update(kind="vxlan", vxlan_id=spec.vni, vxlan_port=spec.port,
                          vxlan_learning=0)
            kwargs["vxlan_local" if spec.local.version == 4 else "vxlan_local6"] = str(spec.local)
            if parent_index is not None:
                kwargs["vxlan_link"] = parent_index
            if spec.mac is not None:
                kwargs["address"] = spec.mac
        else:
            kwargs["kind"] = "ipip"
        try:
            self._ipr.link("add", **kwargs)
        except Exception as exc:
            code = getattr(exc, "code", None)
            if kwargs["kind"] == "ipip" and code in (errno.EOPNOTSUPP, errno.ENOENT):
                raise KernelUnsupported(
                    "ipip", f"creating {change.name} (type ipip) was refused with "
                            f"{errno.errorcode.get(code, code)}: the ipip module is missing or "
                            f"cannot be loaded; load it (modprobe ipip) or use VXLAN "
                            f"(ipipMode: Never, vxlanMode: Always) for this pool") from exc
            if code != errno.EEXIST or kwargs["kind"] != "ipip":
                raise
            # Loading the module made tunl0 already; set what `add` would have set.
        (index,) = self._ipr.link_lookup(ifname=change.name)
        self._index_by_name[change.name] = index
        self._name_by_index[index] = change.name
        if kwargs["kind"] == "ipip":
            self._ipr.link("set", index=index, mtu=change.mtu)
