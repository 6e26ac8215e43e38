"""One allocation block: which addresses of a CIDR are taken, and by which handle. Pure.

A block is the unit a node owns (its affinity) and the unit of optimistic concurrency: every
allocation or release is one compare-and-swap write of the whole block, exactly as in Calico's
libcalico-go (`allocations[ordinal]` → index into `attributes`, `unallocated` keeps the free
ordinals in the order they will be handed out, released ordinals go to the back so an address is
not reused at once).

Like Calico, every address of a block is handed out, including the first and the last (the
network and broadcast addresses of a pool mean nothing on /32 routes to pods); only addresses
covered by an `IPReservation` are never handed out. Functions return new blocks; nothing here
talks to a datastore.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "IP",
    "Attribute",
    "Block",
    "BlockFullError",
    "Network",
    "Reservations",
    "affinity_for_node",
    "candidate_blocks",
    "node_of_affinity",
]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockFullError(Exception):
    """A specific address was asked for but is already taken."""


def affinity_for_node(node: str) -> str:
    """Calico's affinity string for a host-affine block."""
    return f"host:{node}"


def node_of_affinity(affinity: str | None) -> str | None:
    if affinity and affinity.startswith("host:"):
        return affinity[len("host:"):]
    return None


@dataclass(frozen=True, slots=True)
class Reservations:
    """CIDRs no allocation may use (the union of every IPReservation)."""

    cidrs: tuple[Network, ...] = ()

    def matches(self, ip: IP) -> bool:
        return any(ip.version == c.version and ip in c for c in self.cidrs)

    def covers_all(self, net: Network) -> bool:
        """True when every address of `net` is reserved (then the block is not worth claiming)."""
        lo, hi = int(net.network_address), int(net.broadcast_address)
        spans = sorted(
            (max(lo, int(c.network_address)), min(hi, int(c.broadcast_address)))
            for c in self.cidrs
            if c.version == net.version and c.overlaps(net)
        )
        reach = lo - 1
        for start, end in spans:
            if start > reach + 1:
                return False
            reach = max(reach, end)
        return reach >= hi


@dataclass(frozen=True, slots=True)
class Attribute:
    """Who holds an allocation: the handle, plus pod/namespace/node for humans and `check`."""

    handle_id: str | None
    secondary: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Block:
    cidr: Network
    affinity: str | None
    allocations: tuple[int | None, ...]
    unallocated: tuple[int, ...]
    attributes: tuple[Attribute, ...] = ()

    @staticmethod
    def new(cidr: Network, *, affinity: str | None) -> Block:
        n = cidr.num_addresses
        return Block(cidr=cidr, affinity=affinity, allocations=(None,) * n,
                     unallocated=tuple(range(n)))

    # -- queries ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.allocations)

    def ordinal(self, ip: IP) -> int:
        if ip.version != self.cidr.version or ip not in self.cidr:
            raise ValueError(f"{ip} is not in block {self.cidr}")
        return int(ip) - int(self.cidr.network_address)

    def ip(self, ordinal: int) -> IP:
        return self.cidr.network_address + ordinal

    def free_count(self, reservations: Reservations = Reservations()) -> int:
        return sum(1 for o in self.unallocated if not reservations.matches(self.ip(o)))

    def in_use(self) -> dict[IP, Attribute]:
        return {self.ip(o): self.attributes[a] for o, a in enumerate(self.allocations)
                if a is not None}

    def ips_by_handle(self, handle_id: str) -> list[IP]:
        idx = {i for i, a in enumerate(self.attributes) if a.handle_id == handle_id}
        return [self.ip(o) for o, a in enumerate(self.allocations) if a is not None and a in idx]

    def is_empty(self) -> bool:
        return all(a is None for a in self.allocations)

    def is_consistent(self) -> list[str]:
        """Internal contradictions (an ordinal both free and allocated, dangling attribute
        indexes, an ordinal neither free nor allocated); `wrenctl ipam check` reports them."""
        problems: list[str] = []
        free = set(self.unallocated)
        if len(free) != len(self.unallocated):
            problems.append(f"block {self.cidr}: an ordinal is listed as free twice")
        for o, a in enumerate(self.allocations):
            if a is not None and o in free:
                problems.append(f"block {self.cidr}: {self.ip(o)} is both allocated and free")
            if a is None and o not in free:
                problems.append(f"block {self.cidr}: {self.ip(o)} is neither allocated nor free")
            if a is not None and not 0 <= a < len(self.attributes):
                problems.append(f"block {self.cidr}: {self.ip(o)} points at missing attribute {a}")
        return problems

    # -- changes ----------------------------------------------------------------------------
    def _attr_index(self, attr: Attribute) -> tuple[tuple[Attribute, ...], int]:
        for i, existing in enumerate(self.attributes):
            if existing == attr:
                return self.attributes, i
        return (*self.attributes, attr), len(self.attributes)

    def allocate(
        self, count: int, *, attribute: Attribute, reservations: Reservations = Reservations()
    ) -> tuple[Block, list[IP]]:
        """Take up to `count` free, unreserved addresses in `unallocated` order."""
        if count <= 0:
            return self, []
        taken: list[int] = []
        for o in self.unallocated:
            if len(taken) == count:
                break
            if not reservations.matches(self.ip(o)):
                taken.append(o)
        if not taken:
            return self, []
        attributes, index = self._attr_index(attribute)
        allocations = list(self.allocations)
        for o in taken:
            allocations[o] = index
        chosen = set(taken)
        unallocated = tuple(o for o in self.unallocated if o not in chosen)
        new = replace(self, allocations=tuple(allocations), unallocated=unallocated,
                      attributes=attributes)
        return new, [self.ip(o) for o in taken]

    def assign(self, ip: IP, *, attribute: Attribute) -> Block:
        """Take one specific address (tunnel address re-use, `wrenctl ipam` repairs)."""
        o = self.ordinal(ip)
        if self.allocations[o] is not None:
            raise BlockFullError(f"{ip} in block {self.cidr} is already allocated")
        attributes, index = self._attr_index(attribute)
        allocations = list(self.allocations)
        allocations[o] = index
        return replace(self, allocations=tuple(allocations),
                       unallocated=tuple(u for u in self.unallocated if u != o),
                       attributes=attributes)

    def release(self, ips: Iterable[IP], *, handle_id: str | None = None) -> tuple[Block, list[IP]]:
        """Free the given addresses (those of `handle_id` only, when given). Returns the new block
        and the addresses actually freed; unallocated or foreign ones are skipped."""
        ordinals: list[int] = []
        for ip in ips:
            o = self.ordinal(ip)
            a = self.allocations[o]
            if a is None or o in ordinals:
                continue
            if handle_id is not None and self.attributes[a].handle_id != handle_id:
                continue
            ordinals.append(o)
        return self._free(ordinals)

    def release_by_handle(self, handle_id: str) -> tuple[Block, list[IP]]:
        idx = {i for i, a in enumerate(self.attributes) if a.handle_id == handle_id}
        return self._free([o for o, a in enumerate(self.allocations) if a is not None and a in idx])

    def _free(self, ordinals: Sequence[int]) -> tuple[Block, list[IP]]:
        if not ordinals:
            return self, []
        allocations = list(self.allocations)
        for o in ordinals:
            allocations[o] = None
        # Drop attributes nobody points at any more and renumber the rest.
        used = sorted({a for a in allocations if a is not None})
        remap = {old: new for new, old in enumerate(used)}
        attributes = tuple(self.attributes[i] for i in used)
        allocations = [None if a is None else remap[a] for a in allocations]
        new = replace(self, allocations=tuple(allocations),
                      unallocated=(*self.unallocated, *ordinals), attributes=attributes)
        return new, [self.ip(o) for o in ordinals]


def candidate_blocks(pool: Network, *, block_prefix: int, node: str) -> Iterator[Network]:
    """Every block of `pool`, starting at a place derived from the node name and wrapping.

    Calico starts each host at a random block for the same reason: nodes claiming at the same
    moment then rarely race for the same block. Deriving the start from the name keeps it
    reproducible (tests, and a node that restarts tries its old neighbourhood first)."""
    if block_prefix < pool.prefixlen:
        raise ValueError(f"block size /{block_prefix} is larger than pool {pool}")
    count = 1 << (block_prefix - pool.prefixlen)
    step = 1 << (pool.max_prefixlen - block_prefix)
    start = int.from_bytes(hashlib.sha256(node.encode()).digest()[:8], "big") % count
    for i in range(count):
        addr = pool.network_address + ((start + i) % count) * step
        yield ipaddress.ip_network(f"{addr}/{block_prefix}")
