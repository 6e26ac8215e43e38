"""From cluster resources to this node's desired dataplane. Pure: no I/O, no clock.

    pools ─────┐
    nodes ─────┤                       ┌─► workload routes (+ neighbour entries)
    blocks ────┼──► compute_desired() ─┼─► blackholes for our blocks, routes to other blocks
    endpoints ─┤                       ├─► vxlan.calico / tunl0 devices, remote VTEPs
    learned ───┘  (BGP, from sidecar)  └─► NAT-outgoing pools, pod MTU

How a remote block is reached depends on the pool it belongs to (Calico's rules):
  vxlanMode Always                → via <owner's VTEP IP> dev vxlan.calico onlink   (datastore)
  vxlanMode CrossSubnet           → same, unless the owner is in our subnet: direct  (datastore)
  ipipMode Always                 → via <BGP next hop> dev tunl0 onlink              (BGP)
  ipipMode CrossSubnet            → same, unless the next hop is in our subnet: direct (BGP)
  both Never                      → via <BGP next hop> dev <parent> onlink           (BGP)
  no pool (an external peer's BGPFilter accepted it, a service range)
                                  → like Never, unless it covers our own subnet      (BGP)
A direct next hop outside our subnet is resolved recursively through the host's own route to it
(BIRD's "gateway recursive"), so a plain BGP fabric with a router between subnets works.
IPv6 blocks are routed directly only (IPIP has no IPv6 form; IPv6 VXLAN is not implemented: such
a pool gets a warning and its remote blocks no route): via the BGP next hop, an IPv6 address,
with the device left to the kernel (the IPv6 address need not sit on the IPv4 one's interface),
and the next hop resolved recursively when it is outside `spec.bgp.ipv6Address`'s prefix.
"Our subnet" is the prefix of this node's `spec.bgp.ipv4Address`. VXLAN routes come from the
datastore (blocks + their node's VTEP), as in Calico; the rest from what BGP learned, so that a
block that no BGP peer announces is not routed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from agent.calc.desired import (
    VTEP,
    BlockRoute,
    DesiredDataplane,
    IPAddress,
    IPIPDevice,
    IPNetwork,
    NatPoolSpec,
    VXLANDevice,
    WorkloadDelta,
    WorkloadRoute,
    changed_keys,
)
from agent.calc.workloads import WorkloadIndex, workload_routes
from wren.constants import IPIP_DEVICE, VXLAN_DEVICE, VXLAN_PORT, VXLAN_VNI
from wren.model import IPAMBlock, IPPool, Node, WorkloadEndpoint
from wren.prefix import inside, overlaps, parse_prefix

__all__ = [
    "CalcInput", "DesiredCalc", "FelixSettings", "HostFacts", "compute_desired",
    "needs_vxlan_device", "vxlan_mac_for",
]


@dataclass(frozen=True, slots=True)
class FelixSettings:
    """The FelixConfiguration fields calc needs (global `default` merged with `node.<name>`)."""

    vxlan_vni: int = VXLAN_VNI
    vxlan_port: int = VXLAN_PORT
    vxlan_mtu: int = 0  # 0: derive from the host MTU
    ipip_mtu: int = 0
    veth_mtu: int = 0
    ipip_enabled: bool | None = None  # None: on when a pool uses IPIP
    vxlan_enabled: bool | None = None
    route_refresh_interval: float | None = None  # None: the agent's own setting


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the agent read from the host: the interface holding the node address, its MTU, and
    how the kernel reaches next hops outside our subnet (BIRD's "gateway recursive")."""

    parent_iface: str | None = None
    host_mtu: int = 1500
    gateways: Mapping[IPAddress, IPAddress] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CalcInput:
    node_name: str
    pools: Mapping[str, IPPool] = field(default_factory=dict)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    blocks: Mapping[str, IPAMBlock] = field(default_factory=dict)
    endpoints: Mapping[str, WorkloadEndpoint] = field(default_factory=dict)  # this node's only
    learned: Mapping[IPNetwork, IPAddress] = field(default_factory=dict)  # prefix → next hop
    # For `DesiredCalc`: the prefixes whose next hop may differ from the `learned` of the
    # input it computed before (a superset); None: not known, it decides every prefix again.
    learned_changed: frozenset[IPNetwork] | None = None
    felix: FelixSettings = field(default_factory=FelixSettings)
    host: HostFacts = field(default_factory=HostFacts)


def vxlan_mac_for(node_name: str) -> str:
    """A stable, locally administered MAC for a node's VTEP: 66: + 5 bytes of sha1(name)."""
    digest = hashlib.sha1(node_name.encode()).digest()[:5]
    return "66:" + ":".join(f"{b:02x}" for b in digest)


def _pools_by_cidr(pools: Mapping[str, IPPool]) -> list[tuple[IPNetwork, IPPool]]:
    """The pools in name order with their CIDRs, the form `_pool_for` walks (as `Prefix4`s,
    whose fields `inside` reads without a Python call, once per learned prefix)."""
    return [(parse_prefix(str(p.spec.cidr)), p) for _, p in sorted(pools.items())]


def _pool_for(pools: Iterable[tuple[IPNetwork, IPPool]], net: IPNetwork) -> IPPool | None:
    """The most specific pool containing `net`."""
    best: IPPool | None = None
    for cidr, pool in pools:
        if inside(net, cidr) and (best is None or cidr.prefixlen > best.spec.cidr.prefixlen):
            best = pool
    return best


def _needs_encap(mode: str, my_net: IPNetwork | None, remote: IPAddress) -> bool:
    if mode == "Always":
        return True
    if mode == "CrossSubnet":
        return my_net is None or remote not in my_net
    return False


def _node_ip(node: Node | None) -> ipaddress.IPv4Interface | None:
    if node is None or node.spec.bgp is None:
        return None
    return node.spec.bgp.ipv4_address


def _node_net6(node: Node | None) -> ipaddress.IPv6Network | None:
    if node is None or node.spec.bgp is None or node.spec.bgp.ipv6_address is None:
        return None
    return node.spec.bgp.ipv6_address.network


def needs_vxlan_device(pools: Iterable[IPPool]) -> bool:
    """Whether a pool asks for VXLAN that `vxlan.calico` (IPv4) carries: IPv6 VXLAN is not
    implemented, so an IPv6 pool asking for it gets a warning and no device, tunnel address or
    lower MTU (the calc and the node upkeep both ask this)."""
    return any(p.spec.vxlan_mode != "Never" and p.spec.cidr.version == 4 for p in pools)


def _v6_vxlan_problem(pool: IPPool) -> str:
    return (f"IPPool {pool.name} spec.vxlanMode {pool.spec.vxlan_mode}: VXLAN on an IPv6 pool "
            "is not implemented; no route")


def compute_desired(inp: CalcInput) -> DesiredDataplane:
    """This node's desired dataplane, from scratch."""
    routes, warnings = workload_routes(inp.endpoints)
    return _assemble(routes, warnings, _infrastructure(inp))


class _LearnedRoutes:
    """The routes from what BGP learned, on top of the datastore's part: each prefix on its
    own, so a message from the sidecar with 800 new prefixes costs 800 decisions, not 10,000
    (re-deciding the whole learned set for every message made learning O(n²))."""

    def __init__(self, inp: CalcInput, base: _Infrastructure) -> None:
        self._base = base
        self._pools = _pools_by_cidr(inp.pools)
        me = _node_ip(inp.nodes.get(inp.node_name))
        self._my_net: IPNetwork | None = me.network if me is not None else None
        self._my_net6: IPNetwork | None = _node_net6(inp.nodes.get(inp.node_name))
        self._host = inp.host
        # As Prefix4s (their fields read without a Python call), checked against every prefix.
        self._local_blocks = [parse_prefix(str(r.dst)) for r in base.block_routes.values()
                              if r.kind == "blackhole"]
        self._block_routes = dict(base.block_routes)
        self._warnings: dict[IPNetwork, str] = {}
        self._by_hop: dict[tuple[int, IPAddress], _Via] = {}  # pools live as long as this

    def update(self, learned: Mapping[IPNetwork, IPAddress],
               prefixes: Iterable[IPNetwork]) -> None:
        """Re-decide `prefixes` (learned, changed or withdrawn) from `learned`."""
        base = self._base.block_routes
        routes = self._block_routes
        warnings = self._warnings
        for prefix in prefixes:
            if base and prefix in base:
                continue  # the datastore's route (our block, a VXLAN block) wins
            next_hop = learned.get(prefix)
            route, warning = (None, None) if next_hop is None else self._decide(prefix, next_hop)
            if route is None:
                routes.pop(prefix, None)
            else:
                routes[prefix] = route
            if warning is not None:
                warnings[prefix] = warning
            elif warnings:
                warnings.pop(prefix, None)

    def infrastructure(self) -> _Infrastructure:
        """The result so far, sharing nothing mutable with this object."""
        learned_warnings = [w for _, w in sorted(self._warnings.items(), key=lambda kv: str(kv[0]))]
        return dataclasses.replace(self._base, block_routes=dict(self._block_routes),
                                   warnings=(*self._base.warnings, *learned_warnings))

    def _decide(self, prefix: IPNetwork, next_hop: IPAddress) -> tuple[BlockRoute | None,
                                                                        str | None]:
        if self._local_blocks and any(overlaps(prefix, b) for b in self._local_blocks):
            return None, None  # our block, or inside or around one
        pool = _pool_for(self._pools, prefix)
        my_net = self._my_net if prefix.version == 4 else self._my_net6
        if pool is None and my_net is not None and overlaps(prefix, my_net):
            return None, (f"route {prefix}: learned over BGP but covers this node's subnet "
                          f"{my_net}; not programmed (it would shadow the host's own route)")
        # The rest depends on the pool and the next hop only, and thousands of prefixes
        # share both: decided once per pair.
        key = (id(pool), next_hop)
        how = self._by_hop.get(key)
        if how is None:
            how = self._by_hop[key] = self._via(pool, next_hop)
        kind, gateway, device, problem = how
        if kind is None:
            return None, None if problem is None else f"route {prefix}: {problem}"
        return BlockRoute(prefix, kind, gateway, device), None

    def _via(self, pool: IPPool | None, next_hop: IPAddress) -> _Via:
        v4 = next_hop.version == 4
        my_net = self._my_net if v4 else self._my_net6
        if pool is not None and pool.spec.vxlan_mode != "Never":
            if pool.spec.cidr.version == 6:
                return None, None, None, _v6_vxlan_problem(pool)
            return None, None, None, None  # VXLAN blocks are routed from the datastore
        if pool is not None and _needs_encap(pool.spec.ipip_mode, my_net, next_hop) and v4:
            return "ipip", next_hop, IPIP_DEVICE, None
        gateway: IPAddress | None = next_hop
        if my_net is not None and next_hop not in my_net:  # my_net is of next_hop's family
            # Not on our link: go where the kernel sends traffic for the next hop (recursive).
            gateway = self._host.gateways.get(next_hop)
            if gateway is None:
                return None, None, None, (f"next hop {next_hop} is not in our subnet and the "
                                          "host has no route to it; no route")
        return "direct", gateway, self._host.parent_iface if v4 else None, None


# How a learned prefix is routed, by pool and next hop: (kind, gateway, device, problem).
_Via = tuple[Literal["direct", "ipip"] | None, IPAddress | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class _Infrastructure:
    """Everything but the workload routes: it depends on pools, nodes, blocks, what BGP learned,
    Felix settings and the host, never on endpoints."""

    block_routes: dict[IPNetwork, BlockRoute]
    vxlan: VXLANDevice | None
    vteps: tuple[VTEP, ...]
    ipip: IPIPDevice | None
    nat_pools: tuple[NatPoolSpec, ...]
    mtu: int
    warnings: tuple[str, ...]


def _assemble(routes: dict[IPNetwork, WorkloadRoute], warnings: list[str],
              infra: _Infrastructure, delta: WorkloadDelta | None = None) -> DesiredDataplane:
    return DesiredDataplane(
        workload_routes=routes,
        block_routes=infra.block_routes,
        vxlan=infra.vxlan,
        vteps=infra.vteps,
        ipip=infra.ipip,
        nat_pools=infra.nat_pools,
        mtu=infra.mtu,
        warnings=(*warnings, *infra.warnings),
        delta=delta,
    )


def _infrastructure(inp: CalcInput) -> _Infrastructure:
    base = _datastore_infrastructure(inp)
    learned = _LearnedRoutes(inp, base)
    learned.update(inp.learned, inp.learned)
    return learned.infrastructure()


def _datastore_infrastructure(inp: CalcInput) -> _Infrastructure:
    """All but the routes BGP learned."""
    me = inp.nodes.get(inp.node_name)
    my_if = _node_ip(me)
    my_net: IPNetwork | None = my_if.network if my_if is not None else None
    warnings: list[str] = []

    uses_vxlan = needs_vxlan_device(inp.pools.values())
    uses_ipip = any(p.spec.ipip_mode != "Never" for p in inp.pools.values())
    if inp.felix.vxlan_enabled is not None:
        uses_vxlan = inp.felix.vxlan_enabled
    if inp.felix.ipip_enabled is not None:
        uses_ipip = inp.felix.ipip_enabled

    pools = _pools_by_cidr(inp.pools)
    block_routes: dict[IPNetwork, BlockRoute] = {}
    for block in inp.blocks.values():
        if block.affinity_node == inp.node_name:
            block_routes[block.spec.cidr] = BlockRoute(
                dst=block.spec.cidr, kind="blackhole", node=inp.node_name
            )

    # Remote VXLAN blocks, from the datastore.
    vteps: dict[str, VTEP] = {}
    for name, node in inp.nodes.items():
        if name == inp.node_name:
            continue
        addr = _node_ip(node)
        tunnel = node.spec.ipv4_vxlan_tunnel_addr
        if addr is not None and tunnel is not None:
            vteps[name] = VTEP(
                node=name, ip=tunnel, mac=node.spec.vxlan_tunnel_mac_addr or vxlan_mac_for(name),
                node_ip=addr.ip,
            )
    v6_vxlan: dict[str, IPPool] = {}  # IPv6 pools asking for VXLAN, which has no IPv6 form here
    for block in inp.blocks.values():
        owner = block.affinity_node
        if owner is None or owner == inp.node_name:
            continue
        pool = _pool_for(pools, block.spec.cidr)
        if pool is None or pool.spec.vxlan_mode == "Never":
            continue
        if block.spec.cidr.version == 6:
            v6_vxlan[pool.name] = pool
            continue
        owner_if = _node_ip(inp.nodes.get(owner))
        if owner_if is None:
            warnings.append(f"IPAMBlock {block.spec.cidr}: node {owner} has no address; no route")
            continue
        if _needs_encap(pool.spec.vxlan_mode, my_net, owner_if.ip):
            vtep = vteps.get(owner)
            if vtep is None:
                warnings.append(f"IPAMBlock {block.spec.cidr}: node {owner} has no VXLAN tunnel "
                                "address yet; no route")
                continue
            block_routes[block.spec.cidr] = BlockRoute(
                dst=block.spec.cidr, kind="vxlan", gateway=vtep.ip, device=VXLAN_DEVICE, node=owner
            )
        else:
            block_routes[block.spec.cidr] = BlockRoute(
                dst=block.spec.cidr, kind="direct", gateway=owner_if.ip,
                device=inp.host.parent_iface, node=owner,
            )

    warnings += [f"remote IPv6 blocks: {_v6_vxlan_problem(p)}"
                 for _, p in sorted(v6_vxlan.items())]

    host_mtu = inp.host.host_mtu
    vxlan_mtu = inp.felix.vxlan_mtu or host_mtu - 50
    ipip_mtu = inp.felix.ipip_mtu or host_mtu - 20
    pod_mtu = inp.felix.veth_mtu or min(
        [host_mtu, *([vxlan_mtu] if uses_vxlan else []), *([ipip_mtu] if uses_ipip else [])]
    )

    vxlan: VXLANDevice | None = None
    if uses_vxlan and me is not None and my_if is not None:
        if me.spec.ipv4_vxlan_tunnel_addr is not None:
            vxlan = VXLANDevice(
                vni=inp.felix.vxlan_vni, port=inp.felix.vxlan_port, local_ip=my_if.ip,
                parent=inp.host.parent_iface,
                mac=me.spec.vxlan_tunnel_mac_addr or vxlan_mac_for(inp.node_name),
                address=me.spec.ipv4_vxlan_tunnel_addr, mtu=vxlan_mtu,
            )
        else:
            warnings.append(f"Node {inp.node_name}: VXLAN in use but no VXLAN tunnel address yet")

    ipip: IPIPDevice | None = None
    if uses_ipip:
        tunnel = me.spec.bgp.ipv4_ipip_tunnel_addr if me is not None and me.spec.bgp else None
        ipip = IPIPDevice(address=tunnel, mtu=ipip_mtu)

    nat_pools = tuple(
        NatPoolSpec(cidr=p.spec.cidr, nat_outgoing=p.spec.nat_outgoing and not p.spec.disabled)
        for _, p in sorted(inp.pools.items())
    )
    return _Infrastructure(
        block_routes=block_routes,
        vxlan=vxlan,
        vteps=tuple(sorted(vteps.values(), key=lambda v: v.node)) if vxlan is not None else (),
        ipip=ipip,
        nat_pools=nat_pools,
        mtu=pod_mtu,
        warnings=tuple(warnings),
    )


_MISSING = object()
_K = TypeVar("_K")
_V = TypeVar("_V")


def _same_values(old: Mapping[_K, _V], new: Mapping[_K, _V]) -> bool:
    """The same keys holding the very same objects (resources are replaced, never mutated)."""
    if old is new:
        return True
    if len(old) != len(new):
        return False
    return all(old.get(k, _MISSING) is v for k, v in new.items())


class DesiredCalc:
    """`compute_desired` with a memory, for the agent's loop: the same result (the unit tests
    compare the two after random sequences of changes), in time proportional to what changed.

    At 10,000 endpoints a full recomputation took ~0.25 s, and the loop did one for every new
    pod. Now an endpoint event updates one endpoint's routes (`WorkloadIndex`), and the rest
    (block routes, tunnels, NAT pools, MTU) is reused as long as its inputs are the very same
    objects; a change of what BGP learned re-decides only the prefixes that changed
    (`_LearnedRoutes`); any other change recomputes the rest in full. The returned desired
    state shares the unchanged `block_routes` dict and `WorkloadRoute` objects with the previous
    one (and, after a change of learned routes, the unchanged `BlockRoute` objects), and
    its `delta` names the workload routes that changed since the previous one, so the managers
    can update in proportion to the change.
    """

    def __init__(self) -> None:
        self._workloads = WorkloadIndex()
        self._inputs: CalcInput | None = None
        self._learned: _LearnedRoutes | None = None
        # A copy of what `_learned` was told, kept only for callers without an account of
        # their changes (`learned_changed`): the agent has one, and keeping the copy current
        # cost two hashes and a dict write per learned prefix.
        self._learned_seen: dict[IPNetwork, IPAddress] | None = None
        self._infra: _Infrastructure | None = None
        self._last_token: object | None = None

    def compute(self, inp: CalcInput) -> DesiredDataplane:
        self._workloads.update(inp.endpoints)
        old = self._inputs
        blocks: frozenset[IPNetwork] | None = frozenset()  # block routes changed, if known
        changed = self._learned_changes(inp)
        if (old is None or self._learned is None or changed is None
                or not self._same_datastore_inputs(old, inp)):
            self._learned = _LearnedRoutes(inp, _datastore_infrastructure(inp))
            self._learned.update(inp.learned, inp.learned)
            self._infra, blocks = None, None
        elif changed:
            # Only what BGP learned changed (the sidecar's deltas): re-decide those prefixes.
            self._learned.update(inp.learned, changed)
            self._infra, blocks = None, frozenset(changed)
        if self._infra is None:
            self._infra = self._learned.infrastructure()
            # Our own copies of the mappings: the caller's may be live views of its state.
            self._inputs = CalcInput(
                node_name=inp.node_name, pools=dict(inp.pools), nodes=dict(inp.nodes),
                blocks=dict(inp.blocks), felix=inp.felix, host=inp.host)
        changes = self._workloads.take_changes()
        delta = (WorkloadDelta(since=self._last_token, dsts=frozenset(changes), blocks=blocks)
                 if self._last_token is not None else None)
        desired = _assemble(dict(self._workloads.routes), self._workloads.warnings(), self._infra,
                            delta)
        self._last_token = desired.token
        return desired

    def _learned_changes(self, inp: CalcInput) -> Collection[IPNetwork] | None:
        """The learned prefixes that changed since the last compute; None if unknown (every
        prefix is decided again). The caller's account (`learned_changed`) spares comparing
        10,000 prefixes per burst; without one, the copy kept of the last input is compared."""
        if inp.learned_changed is not None:
            self._learned_seen = None
            return inp.learned_changed
        seen, self._learned_seen = self._learned_seen, dict(inp.learned)
        return None if seen is None else changed_keys(seen, inp.learned)

    @staticmethod
    def _same_datastore_inputs(old: CalcInput, inp: CalcInput) -> bool:
        return (old.node_name == inp.node_name and old.felix == inp.felix
                and old.host == inp.host and _same_values(old.pools, inp.pools)
                and _same_values(old.nodes, inp.nodes) and _same_values(old.blocks, inp.blocks))
