"""What `wrenctl ipam show` and `wrenctl ipam check` print, computed from plain lists. Pure.

`check` looks for what goes wrong in real clusters (the same list as `calicoctl ipam check`):
addresses still allocated to pods that are gone (a DEL that never came), addresses used by two
endpoints, handles whose counts no longer match their blocks, allocations no handle knows,
blocks affine to nodes that were removed, and blocks whose own bookkeeping contradicts itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from wren.ipam.block import IP, Block, Network, node_of_affinity
from wren.ipam.resources import Handle

__all__ = [
    "BlockUsage",
    "CheckReport",
    "Endpoint",
    "PoolUsage",
    "Problem",
    "check",
    "usage",
]

TUNNEL_HANDLE_PREFIXES = ("ipip-tunnel-addr-", "vxlan-tunnel-addr-", "wireguard-tunnel-addr-")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The parts of a WorkloadEndpoint that IPAM cares about."""

    namespace: str
    pod: str
    name: str
    ips: tuple[IP, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # leaked | double-use | handle-mismatch | no-handle | orphan-block | inconsistent
    subject: str  # the address, handle or block it is about
    detail: str


@dataclass(frozen=True, slots=True)
class CheckReport:
    problems: tuple[Problem, ...]
    blocks: int
    allocations: int
    handles: int

    @property
    def ok(self) -> bool:
        return not self.problems


def check(
    *,
    blocks: Sequence[Block],
    handles: Sequence[Handle],
    endpoints: Sequence[Endpoint],
    nodes: Iterable[str],
) -> CheckReport:
    node_set = set(nodes)
    problems: list[Problem] = []
    pods = {(e.namespace, e.pod) for e in endpoints}
    handle_by_id = {h.handle_id: h for h in handles}
    # Where each address is allocated (overlapping blocks would allocate one address twice).
    where: dict[IP, list[Network]] = {}
    actual: dict[tuple[str, str], int] = {}  # (handle, block cidr) -> addresses held
    allocations = 0
    for block in blocks:
        for msg in block.is_consistent():
            problems.append(Problem("inconsistent", str(block.cidr), msg))
        owner = node_of_affinity(block.affinity)
        if owner is not None and owner not in node_set:
            problems.append(Problem("orphan-block", str(block.cidr),
                                    f"block {block.cidr} is affine to node {owner!r}, "
                                    "which does not exist"))
        for ip, attr in sorted(block.in_use().items()):
            allocations += 1
            where.setdefault(ip, []).append(block.cidr)
            hid = attr.handle_id or ""
            actual[(hid, str(block.cidr))] = actual.get((hid, str(block.cidr)), 0) + 1
            problems.extend(_leak(ip, hid, attr.secondary, pods=pods, nodes=node_set))
            if hid and hid not in handle_by_id:
                problems.append(Problem("no-handle", str(ip),
                                        f"{ip} is allocated to handle {hid!r}, which has no "
                                        "IPAMHandle"))
    for ip, cidrs in sorted(where.items()):
        if len(cidrs) > 1:
            problems.append(Problem("double-use", str(ip),
                                    f"{ip} is allocated in {len(cidrs)} blocks: "
                                    + ", ".join(map(str, cidrs))))
    users: dict[IP, list[str]] = {}
    for e in endpoints:
        for ip in e.ips:
            users.setdefault(ip, []).append(f"{e.namespace}/{e.name}")
    for ip, names in sorted(users.items()):
        if len(names) > 1:
            problems.append(Problem("double-use", str(ip),
                                    f"{ip} is used by {len(names)} endpoints: "
                                    + ", ".join(sorted(names))))
        if ip not in where:
            problems.append(Problem("double-use", str(ip),
                                    f"{ip} is used by {', '.join(names)} but not allocated: "
                                    "IPAM may hand it out again"))
    for h in handles:
        held = {cidr: n for (hid, cidr), n in actual.items() if hid == h.handle_id}
        if not h.blocks and not held:
            problems.append(Problem("handle-mismatch", h.handle_id,
                                    f"handle {h.handle_id!r} holds no addresses"))
            continue
        for cidr in sorted(set(h.blocks) | set(held)):
            if h.blocks.get(cidr, 0) != held.get(cidr, 0):
                problems.append(Problem(
                    "handle-mismatch", h.handle_id,
                    f"handle {h.handle_id!r} counts {h.blocks.get(cidr, 0)} address(es) in "
                    f"block {cidr} but holds {held.get(cidr, 0)}"))
    return CheckReport(problems=tuple(problems), blocks=len(blocks), allocations=allocations,
                       handles=len(handles))


def _leak(ip: IP, handle_id: str, attrs: Mapping[str, str], *,
          pods: set[tuple[str, str]], nodes: set[str]) -> list[Problem]:
    for prefix in TUNNEL_HANDLE_PREFIXES:
        if handle_id.startswith(prefix):
            node = handle_id[len(prefix):]
            if node not in nodes:
                return [Problem("leaked", str(ip), f"{ip} is the tunnel address of node "
                                f"{node!r}, which does not exist (handle {handle_id})")]
            return []
    pod, namespace = attrs.get("pod"), attrs.get("namespace")
    if pod and namespace is not None and (namespace, pod) not in pods:
        return [Problem("leaked", str(ip),
                        f"{ip} is allocated to pod {namespace}/{pod} (handle {handle_id}), "
                        "which has no workload endpoint")]
    return []


@dataclass(frozen=True, slots=True)
class BlockUsage:
    cidr: Network
    node: str | None
    size: int
    in_use: int

    @property
    def free(self) -> int:
        return self.size - self.in_use


@dataclass(frozen=True, slots=True)
class PoolUsage:
    name: str
    cidr: Network
    size: int
    in_use: int
    blocks: tuple[BlockUsage, ...]

    @property
    def free(self) -> int:
        return self.size - self.in_use


def usage(pools: Sequence[tuple[str, Network]], blocks: Sequence[Block]) -> list[PoolUsage]:
    """Per pool: size, addresses in use, free; and the same per block with its node."""
    out = []
    for name, cidr in pools:
        inside = sorted((b for b in blocks if b.cidr.version == cidr.version
                         and b.cidr.subnet_of(cidr)),  # type: ignore[arg-type]
                        key=lambda b: int(b.cidr.network_address))
        per_block = tuple(BlockUsage(cidr=b.cidr, node=node_of_affinity(b.affinity), size=b.size,
                                     in_use=len(b.in_use())) for b in inside)
        out.append(PoolUsage(name=name, cidr=cidr, size=cidr.num_addresses,
                             in_use=sum(b.in_use for b in per_block), blocks=per_block))
    return out
