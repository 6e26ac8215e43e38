"""The routes of one routing table and one IP version that the agent owns.

Felix's `routetable` in Python. Managers say which routes they want (`set_route`,
`delete_route`, `replace_all`); `apply()` makes the kernel agree, touching only the difference:

    managers ──set_route──► wanted (by iface name) ──resolve ifindex──► DeltaTracker.desired
                                                                              │ diff
    kernel ──dump (resync) / netlink events──► owned routes ──► DeltaTracker.dataplane
                                                                              │
                              apply(): deletions, then replaces, batched on the raw socket

What it will and will not touch is the `OwnershipPolicy`'s answer. A route someone else owns
that sits where we want one is a *conflict*: logged and counted, never clobbered. A route whose
interface does not exist yet (the CNI plugin has not created the veth, or our link cache is
behind) waits quietly and is written once the interface shows up. An undesired route on a
workload interface is deleted only after a grace period, because the CNI plugin writes a pod's
route before the agent hears about the pod.

A fresh table dumps the kernel before its first write, so a restarted agent changes nothing
that is already right.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from agent.kernel.delta import DeltaTracker
from agent.kernel.netlink import (
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTN_BLACKHOLE,
    RTN_UNICAST,
    LinkInfo,
    Netlink,
    RouteFailure,
    RouteMsg,
    RouteOp,
    prefix_key,
)
from agent.kernel.ownership import OwnershipPolicy
from wren.constants import ROUTE_PROTOCOL
from wren.errors import TemporaryError, ValidationError
from wren.log import get_logger

__all__ = ["ApplyResult", "Route", "RouteTable", "RouteTableCounters"]

log = get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPV6_DEFAULT_METRIC = 1024

# Prefixes are keyed internally by one int (`prefix_key`): ipaddress networks recompute their
# hash in Python on every dict access, which cost ~5 µs a route at 10k routes.
_Key = int
_key = prefix_key
_new_msg = tuple.__new__


class _RouteFields(NamedTuple):
    dst: IPNetwork
    type: Literal["unicast", "blackhole"] = "unicast"
    iface: str | int | None = None
    gateway: IPAddress | None = None
    onlink: bool = False
    scope: Literal["link", "universe"] | None = None
    protocol: int = ROUTE_PROTOCOL
    table: int = RT_TABLE_MAIN
    priority: int = 0


class Route(_RouteFields):
    """A route the agent wants. `iface` is a device name (resolved to an index at apply time)
    or an index. `scope=None` picks what `ip route` would: link for an IPv4 device route
    without a gateway, universe otherwise.

    Immutable and checked when built, like a frozen dataclass, but a tuple underneath: one is
    built per route rendered, and a frozen dataclass's `__init__` cost ~2 µs of that."""

    __slots__ = ()

    def __new__(cls, dst: IPNetwork, type: Literal["unicast", "blackhole"] = "unicast", *,
                iface: str | int | None = None, gateway: IPAddress | None = None,
                onlink: bool = False, scope: Literal["link", "universe"] | None = None,
                protocol: int = ROUTE_PROTOCOL, table: int = RT_TABLE_MAIN,
                priority: int = 0) -> Route:
        if type == "blackhole":
            if iface is not None or gateway is not None:
                raise _bad(dst, "type", "a blackhole route has no interface and no gateway")
        elif iface is None and gateway is None:
            raise _bad(dst, "iface", "a unicast route needs an interface or a gateway")
        if gateway is not None:
            _check_gateway(dst, gateway)
        elif onlink:
            raise _bad(dst, "onlink", "onlink needs a gateway")
        return tuple.__new__(cls, (dst, type, iface, gateway, onlink, scope, protocol, table,
                                   priority))

    # The constructors below build the tuple directly: of the rules `__new__` checks, the
    # shape each one builds can only break the gateway's version, checked here.

    @classmethod
    def workload(cls, dst: IPNetwork, iface: str) -> Route:
        """`<pod ip> dev caliX scope link`."""
        return tuple.__new__(cls, (dst, "unicast", iface, None, False, None, ROUTE_PROTOCOL,
                                   RT_TABLE_MAIN, 0))

    @classmethod
    def blackhole(cls, dst: IPNetwork) -> Route:
        """Our own block: unreachable addresses in it are dropped here, not sent upstream."""
        return tuple.__new__(cls, (dst, "blackhole", None, None, False, None, ROUTE_PROTOCOL,
                                   RT_TABLE_MAIN, 0))

    @classmethod
    def via(cls, dst: IPNetwork, gateway: IPAddress, *, iface: str | None = None,
            onlink: bool = False) -> Route:
        _check_gateway(dst, gateway)
        return tuple.__new__(cls, (dst, "unicast", iface, gateway, onlink, None, ROUTE_PROTOCOL,
                                   RT_TABLE_MAIN, 0))


def _bad(dst: IPNetwork, field_name: str, rule: str) -> ValidationError:
    return ValidationError(kind="Route", name=str(dst), field=field_name, rule=rule)


def _check_gateway(dst: IPNetwork, gateway: IPAddress) -> None:
    if gateway.version != dst.version:
        raise _bad(dst, "gateway", f"IPv{gateway.version} gateway for an "
                                   f"IPv{dst.version} destination")


@dataclass
class RouteTableCounters:
    """Plain numbers for metrics; the daemon copies them into Prometheus."""

    routes_programmed: int = 0  # our routes in the kernel right now
    updates: int = 0
    deletions: int = 0
    drift_repaired: int = 0  # changes made because someone else changed the kernel
    resyncs: int = 0
    errors: int = 0  # operations the kernel refused (retried next apply)
    conflicts: int = 0  # desired routes blocked by someone else's route, right now
    waiting_for_iface: int = 0  # desired routes whose interface does not exist yet


@dataclass(frozen=True, slots=True)
class ApplyResult:
    updated: int = 0
    deleted: int = 0
    failures: tuple[RouteFailure, ...] = ()
    conflicts: tuple[IPNetwork, ...] = ()
    waiting_for_iface: int = 0
    #: Seconds until a deferred deletion (grace period) is due; None if nothing is deferred.
    retry_after: float | None = None
    error: str | None = None  # the resync or the send failed as a whole

    @property
    def ok(self) -> bool:
        return not self.failures and self.error is None


@dataclass
class _State:
    wanted: dict[_Key, Route] = field(default_factory=dict)
    networks: dict[_Key, IPNetwork] = field(default_factory=dict)  # wanted's dsts, for dumps
    waiting: set[_Key] = field(default_factory=set)
    by_iface: dict[str, set[_Key]] = field(default_factory=dict)
    foreign: dict[_Key, RouteMsg] = field(default_factory=dict)
    extras: list[RouteMsg] = field(default_factory=list)
    unwanted_since: dict[_Key, float] = field(default_factory=dict)
    drift: set[_Key] = field(default_factory=set)
    conflicts_logged: set[_Key] = field(default_factory=set)


class RouteTable:
    def __init__(self, netlink: Netlink, *, ip_version: Literal[4, 6] = 4,
                 table: int = RT_TABLE_MAIN, policy: OwnershipPolicy | None = None,
                 resync_interval: float = 90.0, workload_grace: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._nl = netlink
        self._version = ip_version
        self._family = socket.AF_INET if ip_version == 4 else socket.AF_INET6
        self._table = table
        self._policy = policy or OwnershipPolicy()
        self._resync_interval = resync_interval
        self._grace = workload_grace
        self._clock = clock
        self._tracker: DeltaTracker[_Key, RouteMsg] = DeltaTracker()
        self._s = _State()
        self._index_by_name: dict[str, int] = {}
        self._name_by_index: dict[int, str] = {}
        self._resync_due = True
        self._links_stale = True
        self._synced_once = False
        self._next_resync = 0.0
        self.counters = RouteTableCounters()
        self._log = log.bind(table=table, ip_version=ip_version)

    # -- desired state (from the managers) ----------------------------------------------------

    def set_route(self, route: Route) -> None:
        """Want `route` (for its destination); a route equal to the one wanted is a no-op."""
        self.set_routes((route,))

    def set_routes(self, routes: Sequence[Route]) -> None:
        """`set_route` of each, in one loop (a burst of learned routes comes as thousands);
        one route this table cannot hold rejects the batch before any is taken."""
        version, table = self._version, self._table
        for route in routes:
            if route.dst.version != version or route.table != table:
                raise ValidationError(kind="Route", name=str(route.dst), field="dst",
                                      rule=f"this table holds IPv{version} routes of table "
                                           f"{table}")
        s = self._s
        wanted, networks, by_iface = s.wanted, s.networks, s.by_iface
        unwanted_since, resolve = s.unwanted_since, self._resolve
        for route in routes:
            dst = route.dst
            key = _key(dst)
            old = wanted.get(key)
            if old is not None:
                if old == route:
                    continue
                if isinstance(old.iface, str) and old.iface != route.iface:
                    by_iface.get(old.iface, set()).discard(key)
            wanted[key] = route
            networks[key] = dst
            iface = route.iface
            if isinstance(iface, str):
                keys = by_iface.get(iface)
                if keys is None:
                    keys = by_iface[iface] = set()
                keys.add(key)
            if unwanted_since:
                unwanted_since.pop(key, None)
            resolve(key, route)

    def delete_route(self, dst: IPNetwork) -> None:
        self._delete(_key(dst))

    def _delete(self, key: _Key) -> None:
        route = self._s.wanted.pop(key, None)
        if route is None:
            return
        del self._s.networks[key]
        if isinstance(route.iface, str):
            self._s.by_iface.get(route.iface, set()).discard(key)
        self._s.waiting.discard(key)
        self._tracker.delete_desired(key)

    def replace_all(self, routes: Iterable[Route]) -> None:
        new = {_key(r.dst): r for r in routes}
        for key in [k for k in self._s.wanted if k not in new]:
            self._delete(key)
        for key, route in new.items():
            current = self._s.wanted.get(key)
            if current is None or current != route:
                self.set_route(route)

    def queue_resync(self) -> None:
        self._resync_due = True

    @property
    def resync_due_at(self) -> float:
        """Clock time of the next periodic resync (for the main loop's timer)."""
        return self._next_resync

    # -- kernel events (from the listener thread, via the main loop) --------------------------

    def on_link(self, link: LinkInfo, *, deleted: bool) -> None:
        """Keep the name ↔ index cache current; routes waiting for this device get resolved,
        and routes on a deleted device are gone from the kernel with it."""
        if deleted:
            if self._name_by_index.get(link.index) == link.name:
                del self._name_by_index[link.index]
            if self._index_by_name.get(link.name) == link.index:
                del self._index_by_name[link.name]
            for key, msg in self._tracker.dataplane_items():
                if msg.oif == link.index:
                    self._tracker.delete_dataplane(key)
        else:
            old = self._index_by_name.get(link.name)
            if old is not None and old != link.index:
                self._name_by_index.pop(old, None)
            self._index_by_name[link.name] = link.index
            self._name_by_index[link.index] = link.name
        for key in list(self._s.by_iface.get(link.name, ())):
            self._resolve(key, self._s.wanted[key])

    def on_route(self, msg: RouteMsg, *, deleted: bool) -> None:
        """A route changed in the kernel (anyone's change, including our own writes echoing
        back): update the dataplane view; the next apply repairs what differs."""
        if msg.dst.version != self._version or msg.table != self._table:
            return
        key = _key(msg.dst)
        name = self._name_by_index.get(msg.oif)
        if not self._policy.owns_route(msg, name):
            if deleted:
                if self._s.foreign.get(key) == msg:
                    del self._s.foreign[key]
            else:
                self._s.foreign[key] = msg
            return
        norm = self._normalise(key, msg)
        current = self._tracker.get_dataplane(key)
        if deleted:
            if current == norm:
                self._tracker.delete_dataplane(key)
                self._note_drift(key)
        elif current != norm:
            self._tracker.set_dataplane(key, norm)
            if not self._tracker.in_sync:
                self._note_drift(key)

    # -- apply --------------------------------------------------------------------------------

    def apply(self) -> ApplyResult:
        now = self._clock()
        if self._resync_due or now >= self._next_resync:
            try:
                self._resync()
            except (OSError, TemporaryError) as exc:
                self.counters.errors += 1
                self._log.warning("route resync failed", error=str(exc))
                return ApplyResult(error=f"resync of table {self._table} failed: {exc}")
            self._next_resync = now + self._resync_interval
        elif self._links_stale:
            try:
                self._refresh_links()
            except (OSError, TemporaryError) as exc:
                return ApplyResult(error=f"link dump failed: {exc}")

        ops, keys, conflicts, retry_after = self._plan(now)
        self.counters.conflicts = len(conflicts)
        self.counters.waiting_for_iface = len(self._s.waiting)
        if not ops:
            return ApplyResult(conflicts=tuple(conflicts), waiting_for_iface=len(self._s.waiting),
                               retry_after=retry_after)
        try:
            failures = self._nl.send_routes(ops)
        except (OSError, TemporaryError) as exc:
            # We no longer know which operations landed: look again before the next apply.
            self.counters.errors += 1
            self._resync_due = True
            self._log.warning("route batch failed as a whole", error=str(exc), ops=len(ops))
            return ApplyResult(error=f"sending {len(ops)} route operations failed: {exc}",
                               conflicts=tuple(conflicts))
        return self._record(ops, keys, failures, conflicts, retry_after)

    def _plan(self, now: float) -> tuple[list[RouteOp], list[_Key | None], list[IPNetwork],
                                         float | None]:
        """The operations to send, each with its key (None: an extra copy to delete)."""
        ops: list[RouteOp] = [RouteOp("delete", m) for m in self._s.extras]
        keys: list[_Key | None] = [None] * len(ops)
        retry_after: float | None = None
        for key, msg in self._tracker.pending_deletions():
            if key in self._s.waiting:
                continue  # wanted, but its interface is unknown to us right now
            if self._grace > 0 and self._policy.is_workload_iface(
                    self._name_by_index.get(msg.oif)):
                since = self._s.unwanted_since.setdefault(key, now)
                left = since + self._grace - now
                if left > 0:
                    retry_after = left if retry_after is None else min(retry_after, left)
                    continue
            ops.append(RouteOp("delete", msg))
            keys.append(key)
        conflicts: list[IPNetwork] = []
        foreign_routes = self._s.foreign
        get_dataplane = self._tracker.get_dataplane
        for key, msg in self._tracker.pending_updates():
            foreign = foreign_routes.get(key) if foreign_routes else None
            if foreign is not None:
                conflicts.append(msg.dst)
                if key not in self._s.conflicts_logged:
                    self._s.conflicts_logged.add(key)
                    self._log.warning("route conflicts with a route we do not own; leaving it",
                                      dst=str(msg.dst), their_protocol=foreign.protocol,
                                      their_oif=foreign.oif)
                continue
            current = get_dataplane(key)
            if current is not None and current.priority != msg.priority:
                ops.append(RouteOp("delete", current))  # replace would add a second route
                keys.append(key)
            ops.append(RouteOp("replace", msg))
            keys.append(key)
        return ops, keys, conflicts, retry_after

    def _record(self, ops: list[RouteOp], keys: list[_Key | None],
                failures: list[RouteFailure], conflicts: list[IPNetwork],
                retry_after: float | None) -> ApplyResult:
        failed: set[int] = set()
        reported: list[RouteFailure] = []
        for failure in failures:
            if failure.op.op == "delete" and failure.errno in (errno.ESRCH, errno.ENOENT):
                continue  # already gone: that is what we wanted
            failed.add(id(failure.op))
            if failure.op.op == "replace" and failure.errno == errno.ENODEV:
                self._links_stale = True  # the device went away; wait for it quietly
                continue
            reported.append(failure)
            self._log.warning("kernel refused route", failure=str(failure))
        self.counters.errors += len(reported)
        updated: list[_Key] = []
        deleted: list[_Key] = []
        for op, key in zip(ops, keys, strict=True):
            if key is None or (failed and id(op) in failed):
                continue  # an extra copy (below), or refused
            if op.op == "replace":
                updated.append(key)
            elif self._tracker.get_dataplane(key) == op.route:
                deleted.append(key)
        if self._s.extras:
            self._s.extras = [m for m in self._s.extras
                              if any(id(op) in failed for op in ops if op.route is m)]
        self._tracker.apply_success(deleted=deleted)
        self._tracker.apply_success(updated=updated)
        for key in deleted:
            self._s.unwanted_since.pop(key, None)
        repaired = self._s.drift.intersection(updated + deleted)
        self.counters.drift_repaired += len(repaired)
        self._s.drift -= repaired
        self.counters.updates += len(updated)
        self.counters.deletions += len(deleted)
        self.counters.routes_programmed = self._tracker.dataplane_count
        return ApplyResult(updated=len(updated), deleted=len(deleted), failures=tuple(reported),
                           conflicts=tuple(conflicts), waiting_for_iface=len(self._s.waiting),
                           retry_after=retry_after)

    # -- resync -------------------------------------------------------------------------------

    def _refresh_links(self) -> None:
        links = self._nl.dump_links()
        old = self._index_by_name
        self._index_by_name = {link.name: link.index for link in links}
        self._name_by_index = {link.index: link.name for link in links}
        self._links_stale = False
        # Only routes on devices that appeared, vanished or changed index need resolving again
        # (resolving all 50k on every periodic resync cost ~0.2 s).
        for name in old.keys() | self._index_by_name.keys():
            if old.get(name) != self._index_by_name.get(name):
                for key in list(self._s.by_iface.get(name, ())):
                    self._resolve(key, self._s.wanted[key])

    def _resync(self) -> None:
        self._refresh_links()
        kernel = self._nl.dump_routes(family=self._family, table=self._table,
                                      known=self._s.networks)
        before = {k for k, _ in self._tracker.pending_updates()} | {
            k for k, _ in self._tracker.pending_deletions()}
        owned: dict[_Key, RouteMsg] = {}
        foreign: dict[_Key, RouteMsg] = {}
        extras: list[RouteMsg] = []
        for msg in kernel:
            key = _key(msg.dst)
            if not self._policy.owns_route(msg, self._name_by_index.get(msg.oif)):
                foreign.setdefault(key, msg)
                continue
            norm = self._normalise(key, msg)
            current = owned.get(key)
            if current is None:
                owned[key] = norm
            elif norm == self._tracker.get_desired(key):
                extras.append(current)
                owned[key] = norm
            else:
                extras.append(norm)
        self._tracker.replace_dataplane(owned)
        self._s.foreign = foreign
        self._s.extras = extras
        self._s.conflicts_logged &= foreign.keys()
        unwanted = {k for k, _ in self._tracker.pending_deletions()}
        self._s.unwanted_since = {k: v for k, v in self._s.unwanted_since.items() if k in unwanted}
        if self._synced_once:
            after = {k for k, _ in self._tracker.pending_updates()} | {
                k for k, _ in self._tracker.pending_deletions()}
            for key in after - before:
                self._note_drift(key)
        self._synced_once = True
        self._resync_due = False
        self.counters.resyncs += 1
        self.counters.routes_programmed = self._tracker.dataplane_count

    def _note_drift(self, key: _Key) -> None:
        self._s.drift.add(key)

    # -- conversions --------------------------------------------------------------------------

    def _resolve(self, key: _Key, route: Route) -> None:
        """Hand the tracker the route's message, or park it until its device is known."""
        msg = self._to_msg(route)
        if msg is None:
            self._s.waiting.add(key)
            self._tracker.delete_desired(key)
        else:
            if self._s.waiting:
                self._s.waiting.discard(key)
            self._tracker.set_desired(key, msg)

    def _to_msg(self, route: Route) -> RouteMsg | None:
        """The route as the kernel will report it back, so that a dump compares equal."""
        dst, kind, iface, gateway, onlink, scope_name, protocol, table, priority = route
        v6 = self._version == 6  # set_route admits only routes of our version
        if not priority and v6:
            priority = _IPV6_DEFAULT_METRIC
        if kind == "blackhole":
            return _new_msg(RouteMsg, (dst, 0, None, RTN_BLACKHOLE, RT_SCOPE_UNIVERSE, False,
                                       table, protocol, priority))
        oif = 0
        if isinstance(iface, int):
            oif = iface
        elif iface is not None:
            found = self._index_by_name.get(iface)
            if found is None:
                return None
            oif = found
        if v6:
            scope = RT_SCOPE_UNIVERSE  # IPv6 has no route scopes; dumps report universe
        elif scope_name is not None:
            scope = RT_SCOPE_LINK if scope_name == "link" else RT_SCOPE_UNIVERSE
        else:
            scope = RT_SCOPE_LINK if gateway is None else RT_SCOPE_UNIVERSE
        # RouteMsg's fields in order, built as the tuple it is: its generated `__new__` is a
        # Python call, and this runs once per route.
        return _new_msg(RouteMsg, (dst, oif, gateway, RTN_UNICAST, scope, onlink, table,
                                   protocol, priority))

    def _normalise(self, key: _Key, msg: RouteMsg) -> RouteMsg:
        """Blank what the kernel fills in by itself, so it compares equal to what we asked."""
        if msg.type == RTN_BLACKHOLE:
            return msg._replace(oif=0, scope=RT_SCOPE_UNIVERSE, gateway=None, onlink=False)
        wanted = self._s.wanted.get(key)
        if msg.oif and wanted is not None and wanted.iface is None and wanted.gateway is not None:
            return msg._replace(oif=0)  # the kernel picked the device for a gateway route
        return msg
