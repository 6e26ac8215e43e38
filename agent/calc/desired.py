"""What this node's kernel should look like: the output of calc, the input of the managers.

Frozen values only; the managers turn them into kernel-table entries. Kept apart from the calc
so that a manager, a test or `wrenctl` can read the desired state without importing the calc.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeVar

__all__ = [
    "VTEP",
    "BlockRoute",
    "DesiredDataplane",
    "IPIPDevice",
    "IPNetwork",
    "NatPoolSpec",
    "VXLANDevice",
    "WorkloadDelta",
    "WorkloadRoute",
    "changed_keys",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class WorkloadRoute:
    """`<ip>/32 dev caliX scope link` plus a permanent neighbour entry ip → mac."""

    dst: IPNetwork
    iface: str
    mac: str | None
    endpoint: str  # namespace/name, for logs


class BlockRoute(NamedTuple):
    """A route for a whole block: ours (blackhole) or another node's (via its address/VTEP).

    A NamedTuple, not a frozen dataclass: one is built per learned prefix, and a frozen
    dataclass's `__init__` (~1.4 µs) was a tenth of the agent's cost per learned route."""

    dst: IPNetwork
    kind: Literal["blackhole", "direct", "ipip", "vxlan"]
    gateway: IPAddress | None = None
    device: str | None = None  # parent interface (direct), tunl0, vxlan.calico
    node: str = ""  # which node owns the block, for logs


@dataclass(frozen=True, slots=True)
class VXLANDevice:
    vni: int
    port: int
    local_ip: IPAddress  # the node's own address
    parent: str | None  # the interface holding local_ip
    mac: str
    address: IPAddress  # this node's VTEP address (/32 on the device)
    mtu: int


@dataclass(frozen=True, slots=True)
class VTEP:
    """Another node's VXLAN endpoint: neighbour (ip → mac) and FDB (mac → node_ip) entries."""

    node: str
    ip: IPAddress
    mac: str
    node_ip: IPAddress


@dataclass(frozen=True, slots=True)
class IPIPDevice:
    address: IPAddress | None
    mtu: int


@dataclass(frozen=True, slots=True)
class NatPoolSpec:
    cidr: IPNetwork
    nat_outgoing: bool


@dataclass(frozen=True, slots=True)
class WorkloadDelta:
    """Where a desired state's workload routes may differ from an earlier state's: nowhere but
    at `dsts` (a superset of the real changes). `since` is the earlier state's `token`. The
    same for block routes in `blocks`, when known (None: compare the two states)."""

    since: object
    dsts: frozenset[IPNetwork]
    blocks: frozenset[IPNetwork] | None = None


@dataclass(frozen=True, slots=True)
class DesiredDataplane:
    workload_routes: dict[IPNetwork, WorkloadRoute] = field(default_factory=dict)
    block_routes: dict[IPNetwork, BlockRoute] = field(default_factory=dict)
    vxlan: VXLANDevice | None = None
    vteps: tuple[VTEP, ...] = ()
    ipip: IPIPDevice | None = None
    nat_pools: tuple[NatPoolSpec, ...] = ()
    mtu: int = 1500
    # Problems found while computing (an endpoint with an address outside every pool...):
    # logged by the daemon, never fatal.
    warnings: tuple[str, ...] = ()
    # Bookkeeping, not part of the state (no effect on ==): an identity, and, from the agent's
    # incremental calc, which workload routes changed since the state it computed before, so
    # that a manager which rendered that state updates only those (at 10k endpoints, finding
    # them by comparing the two states was ~90% of the work of a pod event).
    token: object = field(default_factory=object, compare=False, repr=False)
    delta: WorkloadDelta | None = field(default=None, compare=False, repr=False)


K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


def changed_keys(old: Mapping[K, V], new: Mapping[K, V]) -> list[K]:
    """The keys added, removed, or holding another object in `new` than in `old`: parts of a
    desired state that did not change are the very same objects (see `agent.dataplane._diff`)."""
    if old is new:
        return []
    get = old.get
    changed = [k for k, v in new.items() if get(k, _MISSING) is not v]
    added = sum(1 for k in changed if k not in old)
    if len(new) - added < len(old):  # some of old's keys are gone
        changed += [k for k in old if k not in new]
    return changed
