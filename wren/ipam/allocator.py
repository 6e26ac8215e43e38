"""Block IPAM against the datastore, with optimistic concurrency and nothing lost or doubled.

    auto_assign(handle, node, n)
      ├─ affine blocks of the node (BlockAffinity node=<node>) with room → allocate there
      ├─ none with room → claim a new block of a pool that selects the node:
      │     create BlockAffinity(pending) → create IPAMBlock (the atomic claim; AlreadyExists =
      │     someone else won: drop our affinity, try the next block) → affinity confirmed
      ├─ no unclaimed block left and strictAffinity off → borrow from another node's block
      └─ still short → give back what this call took, raise NoFreeAddressesError

Every allocation is one compare-and-swap write of the block. Before it, the handle's count for
that block is raised (IPAMHandle, created on first use); after a failed block write it is lowered
again. So a crash between the two writes can leave a handle that over-counts (found by `check`)
but never an address that no handle knows about. A Conflict re-reads and retries, bounded, with
jittered backoff, as libcalico-go does.

Release goes the other way: free the addresses in the block (CAS), then lower the handle and
delete it when it holds nothing. Every function here is safe to call twice.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wren.client import Client
from wren.datastore.backend import Backend, Body
from wren.errors import AlreadyExists, Conflict, NotFound, TemporaryError, WrenError
from wren.ipam.block import (
    IP,
    Attribute,
    Block,
    Network,
    Reservations,
    affinity_for_node,
    candidate_blocks,
    node_of_affinity,
)
from wren.ipam.report import CheckReport, Endpoint, PoolUsage, check, usage
from wren.ipam.resources import (
    AFFINITY_CONFIRMED,
    AFFINITY_PENDING,
    Affinity,
    Handle,
    IpamConfig,
    affinity_body,
    affinity_from_body,
    affinity_name,
    block_body,
    block_from_body,
    block_name,
    handle_body,
    handle_from_body,
    handle_name,
)
from wren.kinds import kind_by_name
from wren.log import get_logger
from wren.model import IPAMConfiguration, IPPool, IPReservation, Node, parse

__all__ = [
    "USE_TUNNEL",
    "USE_WORKLOAD",
    "Ipam",
    "IpamError",
    "NoFreeAddressesError",
    "Pool",
    "TooManyConflictsError",
    "tunnel_handle_id",
]

log = get_logger(__name__)

EMPTY_BLOCK_MIN_RECLAIM_AGE = 60.0  # seconds, libcalico-go's EmptyBlockMinReclaimAge
USE_WORKLOAD = "Workload"
USE_TUNNEL = "Tunnel"

K_BLOCK = kind_by_name("IPAMBlock")
K_AFFINITY = kind_by_name("BlockAffinity")
K_HANDLE = kind_by_name("IPAMHandle")
K_POOL = kind_by_name("IPPool")
K_NODE = kind_by_name("Node")
K_CONFIG = kind_by_name("IPAMConfiguration")
K_RESERVATION = kind_by_name("IPReservation")
K_WEP = kind_by_name("WorkloadEndpoint")


@dataclass(frozen=True, slots=True)
class NodeRelease:
    ips: tuple[IP, ...]
    endpoints: int
    affinities: int
    blocks: int


class IpamError(WrenError):
    """IPAM could not do what was asked; the message says which pool/block/handle and why."""


class NoFreeAddressesError(IpamError):
    """Every pool usable by this node is exhausted (or strict affinity forbids borrowing)."""


class TooManyConflictsError(IpamError, TemporaryError):
    """Concurrent writers won the race every time we tried; retry later."""


def tunnel_handle_id(node: str, kind: Literal["ipip", "vxlan"]) -> str:
    """Calico's handle for a node's tunnel address: `ipip-tunnel-addr-<node>` etc."""
    return f"{kind}-tunnel-addr-{node}"


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    cidr: Network
    block_size: int
    disabled: bool = False
    node_selector: str = ""
    allowed_uses: tuple[str, ...] = (USE_WORKLOAD, USE_TUNNEL)

    manual: bool = False  # assignmentMode Manual: only when asked for by name or CIDR

    @staticmethod
    def from_model(pool: IPPool) -> Pool:
        spec = pool.spec
        return Pool(name=pool.metadata.name, cidr=spec.cidr, block_size=spec.block_size,
                    disabled=spec.disabled, node_selector=spec.node_selector,
                    allowed_uses=tuple(spec.allowed_uses),
                    manual=spec.assignment_mode == "Manual")

    def selects(self, labels: Mapping[str, str]) -> bool:
        sel = self.node_selector.strip()
        if sel in ("", "all()"):
            return True
        from wren.selector import parse_selector

        return bool(parse_selector(sel).matches(labels))


@dataclass(frozen=True, slots=True)
class _Request:
    handle_id: str
    node: str
    attribute: Attribute
    use: str
    version: int
    pools: tuple[str, ...]  # names or CIDRs; empty = every pool that selects the node


@dataclass
class _Progress:
    """What one auto_assign call has taken so far, so that a failure can give it all back."""

    ips: list[IP] = field(default_factory=list)


class Ipam:
    """The IPAM library. Thread-safe: every call works on fresh reads and CAS writes."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_retries: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = backend
        self._client = Client(backend)
        self._clock = clock
        self._max_retries = max_retries
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    # ----------------------------------------------------------------------------- public
    def auto_assign(
        self,
        *,
        handle_id: str,
        node: str,
        num4: int = 1,
        num6: int = 0,
        attrs: Mapping[str, str] | None = None,
        use: str = USE_WORKLOAD,
        ipv4_pools: Sequence[str] = (),
        ipv6_pools: Sequence[str] = (),
    ) -> list[IP]:
        """Allocate `num4` IPv4 and `num6` IPv6 addresses for `handle_id` on `node`. All or
        nothing: on any error the addresses this call took are released again."""
        attribute = Attribute(handle_id, dict(attrs or {}))
        progress = _Progress()
        try:
            for version, num, pools in ((4, num4, ipv4_pools), (6, num6, ipv6_pools)):
                if num > 0:
                    req = _Request(handle_id, node, attribute, use, version, tuple(pools))
                    self._assign(req, num, progress)
        except BaseException:
            if progress.ips:
                log.warning("rolling back partial allocation", handle=handle_id,
                            ips=[str(i) for i in progress.ips])
                self._release_quietly(progress.ips, handle_id)
            raise
        log.info("assigned", handle=handle_id, node=node, ips=[str(i) for i in progress.ips])
        return progress.ips

    def tunnel_address(self, *, node: str, kind: Literal["ipip", "vxlan"], version: int = 4) -> IP:
        """The node's tunnel address: the one it already holds, else a new one from a pool
        that allows Tunnel use (Calico allocates it from the node's own block too)."""
        hid = tunnel_handle_id(node, kind)
        existing = [ip for ip in self.ips_by_handle(hid) if ip.version == version]
        if existing:
            return existing[0]
        attrs = {"node": node, "type": f"{kind}TunnelAddress"}
        ips = self.auto_assign(handle_id=hid, node=node, num4=int(version == 4),
                               num6=int(version == 6), attrs=attrs, use=USE_TUNNEL)
        return ips[0]

    def ips_by_handle(self, handle_id: str) -> list[IP]:
        handle = self._get_handle(handle_id)
        if handle is None:
            return []
        out: list[IP] = []
        for cidr in handle.blocks:
            try:
                block, _ = block_from_body(self._db.get(K_BLOCK, block_name(_net(cidr))))
            except NotFound:
                continue
            out.extend(block.ips_by_handle(handle_id))
        return out

    def release_by_handle(self, handle_id: str) -> list[IP]:
        """Free every address of the handle and delete the handle. Unknown handle: nothing to
        do (DEL is idempotent), but blocks are still searched for addresses carrying the handle
        in case the handle object itself was lost."""
        handle = self._get_handle(handle_id)
        cidrs = list(handle.blocks) if handle is not None else []
        if handle is None:
            cidrs = [str(b.cidr) for b, _ in self._list_blocks()
                     if b.ips_by_handle(handle_id)]
        freed: list[IP] = []
        for cidr in cidrs:
            got = self._update_block(
                _net(cidr), lambda b: b.release_by_handle(handle_id), missing_ok=True)
            freed.extend(got)
        if handle is not None:
            self._delete_handle_if_empty(handle_id, force=True)
        log.info("released by handle", handle=handle_id, ips=[str(i) for i in freed])
        return freed

    def release_ips(self, ips: Iterable[IP]) -> list[IP]:
        """Free specific addresses, whoever holds them (wrenctl ipam release)."""
        wanted = list(ips)
        by_block: dict[Network, list[IP]] = {}
        blocks = self._list_blocks()
        for ip in wanted:
            for b, _ in blocks:
                if ip.version == b.cidr.version and ip in b.cidr:
                    by_block.setdefault(b.cidr, []).append(ip)
                    break
        freed: list[IP] = []
        for cidr, addrs in by_block.items():
            holders: dict[str, int] = {}

            def change(b: Block, addrs: list[IP] = addrs,
                       holders: dict[str, int] = holders) -> tuple[Block, list[IP]]:
                holders.clear()
                use = b.in_use()
                for a in addrs:
                    h = use[a].handle_id if a in use else None
                    if h:
                        holders[h] = holders.get(h, 0) + 1
                return b.release(addrs)

            got = self._update_block(cidr, change, missing_ok=True)
            freed.extend(got)
            for hid, n in holders.items():
                self._change_handle(hid, cidr=str(cidr), delta=-n)
                self._delete_handle_if_empty(hid)
        return freed

    # ----------------------------------------------------------------------------- reading
    def config(self) -> IpamConfig:
        try:
            spec = self._client.get(IPAMConfiguration, "default").spec
        except NotFound:
            return IpamConfig()
        return IpamConfig(strict_affinity=spec.strict_affinity,
                          auto_allocate_blocks=spec.auto_allocate_blocks,
                          max_blocks_per_host=spec.max_blocks_per_host)

    def reservations(self) -> Reservations:
        return Reservations(tuple(c for r in self._client.list(IPReservation)
                                  for c in r.spec.reserved_cidrs))

    def pools(self) -> list[Pool]:
        """Valid pools only: the typed client skips (and logs) a stored pool that is invalid."""
        return [Pool.from_model(p) for p in self._client.list(IPPool)]

    def node_labels(self, node: str) -> dict[str, str]:
        try:
            return dict(self._client.get(Node, node).metadata.labels)
        except NotFound:
            log.warning("node resource not found; matching pools with no labels", node=node)
            return {}

    def blocks(self) -> list[Block]:
        return [b for b, _ in self._list_blocks()]

    def affinities(self) -> list[Affinity]:
        return [affinity_from_body(b) for b in self._db.list(K_AFFINITY).items]

    def handles(self) -> list[Handle]:
        return [handle_from_body(b) for b in self._db.list(K_HANDLE).items]

    def release_node(self, node: str) -> NodeRelease:
        """What `calicoctl delete node` does on etcd: release every address the node's pods and
        tunnels hold, remove its WorkloadEndpoints, its block affinities, and its blocks once
        they are empty (a block still holding another node's borrowed address stays)."""
        handles = {a.handle_id for b in self.blocks() for a in b.attributes
                   if a.handle_id and a.secondary.get("node") == node}
        handles |= {tunnel_handle_id(node, "ipip"), tunnel_handle_id(node, "vxlan")}
        released: list[IP] = []
        for handle_id in sorted(handles):
            released += self.release_by_handle(handle_id)
        endpoints = 0
        for body in self._db.list(K_WEP).items:
            if (body.get("spec") or {}).get("node") == node:
                meta = body.get("metadata") or {}
                with contextlib.suppress(NotFound):
                    self._db.delete(K_WEP, str(meta.get("name")), str(meta.get("namespace")))
                    endpoints += 1
        affinities = [a for a in self.affinities() if a.node == node]
        for aff in affinities:
            self._delete_quietly(K_AFFINITY, affinity_name(aff.node, aff.cidr))
        blocks = 0
        for block in self.blocks():
            if node_of_affinity(block.affinity) == node and all(a is None
                                                                 for a in block.allocations):
                self._delete_quietly(K_BLOCK, block_name(block.cidr))
                blocks += 1
        log.info("released node", node=node, ips=len(released), endpoints=endpoints,
                 blocks=blocks)
        return NodeRelease(ips=tuple(released), endpoints=endpoints,
                           affinities=len(affinities), blocks=blocks)

    def check(self) -> CheckReport:
        """`wrenctl ipam check`: leaks, double use, handle mismatches, orphaned blocks."""
        endpoints = []
        for body in self._db.list(K_WEP).items:
            spec = body.get("spec") or {}
            meta = body.get("metadata") or {}
            ips = tuple(ipaddress.ip_interface(n).ip for n in spec.get("ipNetworks") or [])
            endpoints.append(Endpoint(namespace=str(meta.get("namespace") or ""),
                                      pod=str(spec.get("pod") or spec.get("workload") or ""),
                                      name=str(meta.get("name") or ""), ips=ips))
        nodes = [str((b.get("metadata") or {}).get("name")) for b in self._db.list(K_NODE).items]
        return check(blocks=self.blocks(), handles=self.handles(), endpoints=endpoints,
                     nodes=nodes)

    def usage(self) -> list[PoolUsage]:
        """`wrenctl ipam show`: per pool and per block, size / in use / free."""
        return usage([(p.name, p.cidr) for p in self.pools()], self.blocks())

    # ----------------------------------------------------------------------------- assign
    def _usable_pools(self, req: _Request) -> list[Pool]:
        labels = self.node_labels(req.node)
        out = []
        for p in self.pools():
            if p.cidr.version != req.version or p.disabled or req.use not in p.allowed_uses:
                continue
            if req.pools and p.name not in req.pools and str(p.cidr) not in req.pools:
                continue
            if p.manual and not req.pools:
                continue
            if not p.selects(labels):
                continue
            out.append(p)
        return out

    def _assign(self, req: _Request, num: int, progress: _Progress) -> None:
        pools = self._usable_pools(req)
        if not pools:
            raise NoFreeAddressesError(
                f"no enabled IPv{req.version} pool allows {req.use} use and selects node "
                f"{req.node!r}" + (f" (requested pools: {', '.join(req.pools)})"
                                   if req.pools else ""))
        config = self.config()
        reservations = self.reservations()
        remaining = num

        def in_pools(cidr: Network) -> bool:
            return any(cidr.version == p.cidr.version and cidr.subnet_of(p.cidr)  # type: ignore[arg-type]
                       for p in pools)

        # 1. Blocks this node already owns.
        mine = [a for a in self.affinities() if a.node == req.node and in_pools(a.cidr)]
        for aff in sorted(mine, key=lambda a: int(a.cidr.network_address)):
            if remaining == 0:
                return
            if aff.state != AFFINITY_CONFIRMED and not self._ensure_block(aff):
                continue
            remaining -= self._take(aff.cidr, req, num=remaining, reservations=reservations,
                                    progress=progress,
                                    own=True)
        # 2. Claim new blocks.
        owned = len(mine)
        while remaining > 0 and config.auto_allocate_blocks:
            if config.max_blocks_per_host and owned >= config.max_blocks_per_host:
                log.warning("node reached maxBlocksPerHost", node=req.node,
                            limit=config.max_blocks_per_host)
                break
            cidr = self._claim_block(req.node, pools=pools, reservations=reservations)
            if cidr is None:
                break
            owned += 1
            remaining -= self._take(cidr, req, num=remaining, reservations=reservations,
                                    progress=progress, own=True)
        # 3. Borrow from blocks affine to other nodes.
        if remaining > 0 and not config.strict_affinity:
            for block, _ in self._list_blocks():
                if remaining == 0:
                    break
                if not in_pools(block.cidr) or block.free_count(reservations) == 0:
                    continue
                log.info("borrowing from another node's block", node=req.node,
                         block=str(block.cidr), owner=block.affinity)
                remaining -= self._take(block.cidr, req, num=remaining, reservations=reservations,
                                        progress=progress,
                                        own=False)
        if remaining > 0:
            names = ", ".join(f"{p.name} ({p.cidr})" for p in pools)
            why = " and strictAffinity forbids borrowing" if config.strict_affinity else ""
            raise NoFreeAddressesError(
                f"no free IPv{req.version} address for node {req.node!r} in pools {names}{why}")

    def _take(self, cidr: Network, req: _Request, *, num: int, reservations: Reservations,
              progress: _Progress, own: bool) -> int:
        """Allocate up to `num` from one block: handle count first, then the block (CAS)."""
        for attempt in range(self._max_retries):
            try:
                body = self._db.get(K_BLOCK, block_name(cidr))
            except NotFound:
                return 0
            block, stored = block_from_body(body)
            broken = block.is_consistent()
            if broken:
                # Allocating from contradictory bookkeeping could hand out an address twice.
                log.error("skipping inconsistent block; see `wrenctl ipam check`",
                          block=str(cidr), problems=broken)
                return 0
            if own and block.affinity != affinity_for_node(req.node):
                # Our affinity names a block another node holds: stale, as libcalico-go says.
                log.warning("removing stale affinity", node=req.node, block=str(cidr),
                            owner=block.affinity)
                self._delete_quietly(K_AFFINITY, affinity_name(req.node, cidr))
                return 0
            new, ips = block.allocate(num, attribute=req.attribute, reservations=reservations)
            if not ips:
                return 0
            self._change_handle(req.handle_id, cidr=str(cidr), delta=len(ips))
            try:
                self._update(block_body(new, resource_version=stored.resource_version,
                                           claim_time=stored.claim_time))
            except Conflict:
                self._change_handle(req.handle_id, cidr=str(cidr), delta=-len(ips))
                self._backoff(attempt)
                continue
            except BaseException:
                self._undo_handle_quietly(req.handle_id, cidr=str(cidr), n=len(ips))
                raise
            progress.ips.extend(ips)
            return len(ips)
        raise TooManyConflictsError(
            f"block {cidr}: gave up after {self._max_retries} conflicting writes")

    def _claim_block(self, node: str, *, pools: Sequence[Pool],
                     reservations: Reservations) -> Network | None:
        """Claim one unclaimed block; failing that, reclaim an empty block of another node.
        None when neither is possible."""
        listed = self._list_blocks()
        existing = {b.cidr for b, _ in listed}
        for pool in pools:
            for cidr in candidate_blocks(pool.cidr, block_prefix=pool.block_size, node=node):
                if cidr in existing or reservations.covers_all(cidr):
                    continue
                if self._claim(node, cidr):
                    return cidr
                existing.add(cidr)
        return self._reclaim_empty_block(node, pools=pools, listed=listed)

    def _reclaim_empty_block(self, node: str, *, pools: Sequence[Pool],
                             listed: Sequence[tuple[Block, Body]]) -> Network | None:
        """Small pools (or many nodes) strand blocks on nodes that no longer use them. As in
        libcalico-go, an empty block claimed more than EMPTY_BLOCK_MIN_RECLAIM_AGE ago by
        another node may be taken over; the age stops two nodes passing a block back and forth
        before either allocates from it. The delete is compare-and-swap on the version we saw
        empty, so an allocation that lands meanwhile wins."""
        now = self._clock()
        for block, body in listed:
            owner = node_of_affinity(block.affinity)
            if owner in (None, node) or not block.is_empty():
                continue
            if not any(block.cidr.version == p.cidr.version
                       and block.cidr.subnet_of(p.cidr)  # type: ignore[arg-type]
                       for p in pools):
                continue
            _, stored = block_from_body(body)
            if now - _parse_time(stored.claim_time) < EMPTY_BLOCK_MIN_RECLAIM_AGE:
                continue
            try:
                self._db.delete(K_BLOCK, block_name(block.cidr),
                                resource_version=stored.resource_version)
            except (Conflict, NotFound):
                continue
            self._delete_quietly(K_AFFINITY, affinity_name(str(owner), block.cidr))
            log.info("reclaimed empty block", node=node, block=str(block.cidr), previous=owner)
            if self._claim(node, block.cidr):
                return block.cidr
        return None

    def _claim(self, node: str, cidr: Network) -> bool:
        aff = Affinity(node=node, cidr=cidr, state=AFFINITY_PENDING)
        try:
            stored_aff = affinity_from_body(self._create(affinity_body(aff)))
        except AlreadyExists:
            stored_aff = affinity_from_body(self._db.get(K_AFFINITY, affinity_name(node, cidr)))
        return self._ensure_block(stored_aff)

    def _ensure_block(self, aff: Affinity) -> bool:
        """Make sure the affinity's block exists and is ours, then confirm the affinity.
        False (and our affinity removed) when another node holds the block."""
        try:
            self._create(block_body(Block.new(aff.cidr, affinity=affinity_for_node(aff.node))))
            log.info("claimed block", node=aff.node, block=str(aff.cidr))
        except AlreadyExists:
            try:
                block, _ = block_from_body(self._db.get(K_BLOCK, block_name(aff.cidr)))
            except NotFound:
                return False  # deleted under us; a later call will retry the claim
            if block.affinity != affinity_for_node(aff.node):
                log.info("block taken by another node", node=aff.node, block=str(aff.cidr),
                         owner=block.affinity)
                self._delete_quietly(K_AFFINITY, affinity_name(aff.node, aff.cidr))
                return False
        if aff.state != AFFINITY_CONFIRMED:
            for attempt in range(self._max_retries):
                try:
                    current = affinity_from_body(
                        self._db.get(K_AFFINITY, affinity_name(aff.node, aff.cidr)))
                    if current.state == AFFINITY_CONFIRMED:
                        break
                    self._update(affinity_body(Affinity(
                        node=aff.node, cidr=aff.cidr, state=AFFINITY_CONFIRMED,
                        resource_version=current.resource_version)))
                    break
                except Conflict:
                    self._backoff(attempt)
                except NotFound:
                    self._create(affinity_body(Affinity(
                        node=aff.node, cidr=aff.cidr, state=AFFINITY_CONFIRMED)))
                    break
        return True

    # ----------------------------------------------------------------------------- handles
    def _get_handle(self, handle_id: str) -> Handle | None:
        try:
            return handle_from_body(self._db.get(K_HANDLE, handle_name(handle_id)))
        except NotFound:
            return None

    def _change_handle(self, handle_id: str, *, cidr: str, delta: int) -> None:
        for attempt in range(self._max_retries):
            handle = self._get_handle(handle_id)
            if handle is None:
                if delta <= 0:
                    return
                try:
                    self._create(handle_body(Handle(handle_id, {cidr: delta})))
                    return
                except AlreadyExists:
                    continue
            blocks = dict(handle.blocks)
            count = blocks.get(cidr, 0) + delta
            if count > 0:
                blocks[cidr] = count
            else:
                blocks.pop(cidr, None)
            try:
                self._update(handle_body(Handle(handle_id, blocks, handle.resource_version)))
                return
            except Conflict:
                self._backoff(attempt)
            except NotFound:
                continue
        raise TooManyConflictsError(
            f"handle {handle_id}: gave up after {self._max_retries} conflicting writes")

    def _delete_handle_if_empty(self, handle_id: str, *, force: bool = False) -> None:
        """Delete the handle when it counts no addresses (`force`: after release_by_handle,
        whatever it still counts: those counts can only be leftovers of a crash)."""
        for attempt in range(self._max_retries):
            handle = self._get_handle(handle_id)
            if handle is None or (handle.blocks and not force):
                return
            try:
                self._db.delete(K_HANDLE, handle_name(handle_id),
                                resource_version=handle.resource_version)
                return
            except NotFound:
                return
            except Conflict:
                self._backoff(attempt)

    # ----------------------------------------------------------------------------- helpers
    def _update_block(self, cidr: Network, change: Callable[[Block], tuple[Block, list[IP]]],
                      *, missing_ok: bool) -> list[IP]:
        for attempt in range(self._max_retries):
            try:
                block, stored = block_from_body(self._db.get(K_BLOCK, block_name(cidr)))
            except NotFound:
                if missing_ok:
                    return []
                raise
            new, ips = change(block)
            if not ips:
                return []
            try:
                self._update(block_body(new, resource_version=stored.resource_version,
                                           claim_time=stored.claim_time))
                return ips
            except Conflict:
                self._backoff(attempt)
        raise TooManyConflictsError(
            f"block {cidr}: gave up after {self._max_retries} conflicting writes")

    def _create(self, body: Body) -> Body:
        return self._db.create(_validated(body))

    def _update(self, body: Body) -> Body:
        return self._db.update(_validated(body))

    def _list_blocks(self) -> list[tuple[Block, Body]]:
        out = []
        for body in self._db.list(K_BLOCK).items:
            block, _ = block_from_body(body)
            out.append((block, body))
        return out

    def _release_quietly(self, ips: Sequence[IP], handle_id: str) -> None:
        by_block: dict[Network, list[IP]] = {}
        for b, _ in self._list_blocks():
            mine = [ip for ip in ips if ip.version == b.cidr.version and ip in b.cidr]
            if mine:
                by_block[b.cidr] = mine
        for cidr, addrs in by_block.items():
            try:
                got = self._update_block(
                    cidr, functools.partial(_release_of, addrs=addrs, handle_id=handle_id),
                    missing_ok=True)
                if got:
                    self._change_handle(handle_id, cidr=str(cidr), delta=-len(got))
            except WrenError as exc:
                log.error("rollback could not free addresses; `wrenctl ipam check` will show "
                          "them", handle=handle_id, block=str(cidr), error=str(exc))
        try:
            self._delete_handle_if_empty(handle_id)
        except WrenError as exc:
            log.error("rollback could not delete handle", handle=handle_id, error=str(exc))

    def _undo_handle_quietly(self, handle_id: str, *, cidr: str, n: int) -> None:
        try:
            self._change_handle(handle_id, cidr=cidr, delta=-n)
            self._delete_handle_if_empty(handle_id)
        except WrenError as exc:
            log.error("could not lower handle count after a failed block write; "
                      "`wrenctl ipam check` will show it", handle=handle_id, error=str(exc))

    def _delete_quietly(self, kind: Any, name: str) -> None:
        with contextlib.suppress(NotFound):
            self._db.delete(kind, name)

    def _backoff(self, attempt: int) -> None:
        with self._rng_lock:
            jitter = self._rng.random()
        self._sleep(min(0.2, 0.002 * (2 ** min(attempt, 7))) * (0.5 + jitter))


def _net(cidr: str) -> Network:
    return ipaddress.ip_network(cidr, strict=False)


def _release_of(block: Block, *, addrs: Sequence[IP], handle_id: str) -> tuple[Block, list[IP]]:
    return block.release(addrs, handle_id=handle_id)


def _parse_time(stamp: str) -> float:
    """affinityClaimTime as epoch seconds; unknown or unparsable counts as long ago."""
    import datetime

    try:
        return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return 0.0


def _validated(body: Body) -> Body:
    """Every IPAM write passes the model's rules first (for blocks: every ordinal exactly once
    free or allocated, no dangling attribute), so a bookkeeping bug raises ValidationError
    instead of storing a block that could hand out an address twice."""
    parse(body)
    return body
