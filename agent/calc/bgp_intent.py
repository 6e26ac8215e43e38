"""This node's BGP intent from the datastore: the part of Calico's confd that writes BIRD's config.

    Node (ours, others) ─┐
    BGPConfiguration ────┤                     peers: mesh, BGPPeer by IP / by selector (both
    BGPPeer, BGPFilter ──┼──► compute_intent ──►       directions), reflector clients
    IPPool, IPAMBlock, ──┘                     announce: our confirmed blocks + service ranges
    BlockAffinity                              accept: pools + service ranges; own: our blocks

Sessions per address family, as Calico's bird.cfg and bird6.cfg do it: a node with
`spec.bgp.ipv6Address` peers over IPv6 too (a second session between the two IPv6 addresses,
`ipv6 unicast` only), with the IPv6 address as source and next hop; the router ID stays the
IPv4 address. Without our own IPv6 address there is no IPv6 session: an explicit IPv6 `peerIP`
gets a warning, the IPv6 address of a selected node is skipped (its IPv4 session remains).

Pure: secrets come through the `secret` lookup the caller passes (a dict in tests).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from bgp.intent import Announcement, BGPIntent, FilterRule, IPAddress, IPNetwork, PeerIntent
from wren.model import (
    DEFAULT_AS_NUMBER,
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    IPAMBlock,
    IPPool,
    Node,
)
from wren.model.bgp import BGPFilterRule, BGPPassword, split_peer_ip
from wren.selector import parse_selector

__all__ = ["BGPInputs", "compute_intent"]

DEFAULT_RESTART_TIME = 120
SecretLookup = Callable[[str, str], str | None]  # (secret name, key) → value


@dataclass(frozen=True)
class BGPInputs:
    node_name: str
    nodes: Mapping[str, Node]
    pools: Mapping[str, IPPool]
    blocks: Mapping[str, IPAMBlock]
    affinities: Iterable[BlockAffinity] = ()
    config: BGPConfiguration | None = None
    peers: Iterable[BGPPeer] = ()
    filters: Mapping[str, BGPFilter] = field(default_factory=dict)


class _Target(NamedTuple):
    """One session a BGPPeer asks of our node."""

    address: IPAddress
    port: int | None
    peer_as: int
    is_node: bool  # the peer is another node of this cluster
    explicit: bool  # from `peerIP` (a user's address), not from a selected node's addresses


def _node_addresses(node: Node) -> list[IPAddress]:
    """The addresses a node peers from: IPv4, then IPv6 if it has one. A node without an
    IPv4 address runs no BGP (its intent waits for one), so it has none."""
    bgp = node.spec.bgp
    if bgp is None or bgp.ipv4_address is None:
        return []
    out: list[IPAddress] = [bgp.ipv4_address.ip]
    if bgp.ipv6_address is not None:
        out.append(bgp.ipv6_address.ip)
    return out


def _waits(mine: IPAddress, theirs: IPAddress) -> bool:
    """Only one side of a node-to-node session dials: calico-node's rule, so a Wren node and a
    calico-node agree too — wait when the peer's address is greater, compared as text."""
    return str(theirs) > str(mine)


def compute_intent(inp: BGPInputs, secret: SecretLookup | None = None) -> BGPIntent | None:
    """None when this node has no BGP address yet (the agent writes it; BGP waits)."""
    lookup: SecretLookup = secret or (lambda _name, _key: None)
    me = inp.nodes.get(inp.node_name)
    if me is None or me.spec.bgp is None or me.spec.bgp.ipv4_address is None:
        return None
    spec = inp.config.spec if inp.config is not None else None
    global_as = spec.as_number if spec is not None else DEFAULT_AS_NUMBER
    my_addr = me.spec.bgp.ipv4_address.ip
    my_addr6 = me.spec.bgp.ipv6_address.ip if me.spec.bgp.ipv6_address is not None else None
    # Our end of a session of each family: source address, and what `_waits` compares.
    source_for: dict[int, IPAddress | None] = {4: my_addr, 6: my_addr6}
    my_as = me.spec.bgp.as_number or global_as
    my_cluster = me.spec.bgp.route_reflector_cluster_id
    warnings: list[str] = []

    def node_as(node: Node) -> int:
        return (node.spec.bgp.as_number if node.spec.bgp else None) or global_as

    node_by_ip: dict[IPAddress, Node] = {}
    for node in inp.nodes.values():
        for node_addr in _node_addresses(node):
            node_by_ip[node_addr] = node

    def cluster_of(addr: IPAddress) -> ipaddress.IPv4Address | None:
        node = node_by_ip.get(addr)
        return node.spec.bgp.route_reflector_cluster_id if node and node.spec.bgp else None

    def is_client(addr: IPAddress, peer_as: int) -> bool:
        # RFC 4456 as Calico applies it: a reflector treats iBGP peers outside its cluster
        # (another cluster ID or none) as its clients.
        return my_cluster is not None and peer_as == my_as and cluster_of(addr) != my_cluster

    peers: dict[IPAddress, PeerIntent] = {}

    mesh = spec.node_to_node_mesh_enabled if spec is not None else True
    mesh_password: str | None = None
    mesh_restart = DEFAULT_RESTART_TIME
    if mesh and my_cluster is None:
        mesh_restart = _seconds(spec.node_mesh_max_restart_time if spec else None)
        try:
            mesh_password = _password(spec.node_mesh_password if spec else None, lookup,
                                      "BGPConfiguration default", warnings)
        except _MissingSecret:
            mesh = False
    if mesh and my_cluster is None:
        for name, node in sorted(inp.nodes.items()):
            bgp = node.spec.bgp
            if name == inp.node_name or bgp is None or bgp.ipv4_address is None:
                continue
            if bgp.route_reflector_cluster_id is not None:
                continue  # reflectors leave the mesh
            for mesh_addr in _node_addresses(node):
                source = source_for[mesh_addr.version]
                if source is None:
                    continue  # IPv6 only between two nodes that both have an IPv6 address
                peers.setdefault(mesh_addr, PeerIntent(
                    address=mesh_addr, peer_as=node_as(node), local_as=my_as,
                    type="node-to-node mesh", name=name, passive=_waits(source, mesh_addr),
                    password=mesh_password,
                    source_address=source, restart_time=mesh_restart, is_node=True,
                ))

    for peer in sorted(inp.peers, key=lambda p: p.metadata.name):
        for target_addr, port, peer_as, node_peer, explicit in _targets(peer, inp, me,
                                                                         warnings):
            source = source_for[target_addr.version]
            if source is None:
                if explicit:
                    warnings.append(
                        f"BGPPeer {peer.metadata.name}: spec.peerIP {target_addr} is IPv6, but "
                        f"Node {inp.node_name} has no spec.bgp.ipv6Address (an IPv6 session "
                        "needs one as its source address and next hop); no session")
                continue
            if target_addr in (my_addr, my_addr6) or target_addr in peers:
                continue
            addr: IPAddress = target_addr
            s = peer.spec
            kind = "global" if not s.node and not s.node_selector else "node specific"
            next_hop = s.next_hop_mode or ("Keep" if s.keep_original_next_hop else "Auto")
            local_as = s.local_as_number or my_as
            try:
                password = _password(s.password, lookup, f"BGPPeer {peer.metadata.name}",
                                     warnings)
            except _MissingSecret:
                continue
            peers[addr] = PeerIntent(
                address=addr, peer_as=peer_as, local_as=local_as, type=kind,
                name=peer.metadata.name, port=port or 179,
                passive=node_peer and _waits(source, addr),
                password=password,
                source_address=source if s.source_address == "UseNodeIP" else None,
                restart_time=_seconds(s.max_restart_time),
                keepalive_time=(int(s.keepalive_time.total_seconds())
                                if s.keepalive_time is not None else None),
                ttl_security=s.ttl_security or 0, next_hop_mode=next_hop,
                rr_client=is_client(addr, peer_as), is_node=node_peer,
                import_rules=_rules(peer, inp.filters, "import", addr.version, warnings),
                export_rules=_rules(peer, inp.filters, "export", addr.version, warnings),
            )

    own, announce = _announcements(inp, spec, warnings)
    accept = [p.spec.cidr for p in inp.pools.values()]
    if spec is not None:
        accept += [b.cidr for b in (*spec.service_cluster_ips, *spec.service_external_ips,
                                    *spec.service_load_balancer_ips)]
    ipv6 = me.spec.bgp.ipv6_address
    return BGPIntent(
        node=inp.node_name, router_id=ipaddress.IPv4Address(my_addr), local_as=my_as,
        address=my_addr, address6=ipv6.ip if ipv6 is not None else None,
        listen_port=spec.listen_port if spec is not None else 179,
        cluster_id=my_cluster,
        peers=tuple(sorted(peers.values(), key=lambda p: (p.address.version, p.address))),
        announce=tuple(announce), accept=tuple(sorted(set(accept), key=str)),
        own=tuple(sorted(own, key=str)), warnings=tuple(warnings),
    )


def _targets(peer: BGPPeer, inp: BGPInputs, me: Node, warnings: list[str]) -> list[_Target]:
    """Each session this BGPPeer asks of our node; a selected node's once per address."""
    s = peer.spec
    name = peer.metadata.name
    global_as = inp.config.spec.as_number if inp.config is not None else DEFAULT_AS_NUMBER

    def applies_to(node_name: str, node: Node) -> bool:
        if s.node:
            return s.node == node_name
        if s.node_selector:
            return parse_selector(s.node_selector).matches(_labels(node_name, node))
        return True

    def node_targets(node: Node) -> list[_Target]:
        peer_as = (node.spec.bgp.as_number if node.spec.bgp else None) or global_as
        return [_Target(a, None, peer_as, True, False) for a in _node_addresses(node)]

    out: list[_Target] = []
    if applies_to(inp.node_name, me):
        if s.peer_ip:
            if s.as_number is None:
                warnings.append(f"BGPPeer {name}: peerIP without asNumber; skipped")
                return []
            addr, port = split_peer_ip(s.peer_ip)
            is_node = any(addr in _node_addresses(n) for n in inp.nodes.values())
            out.append(_Target(addr, port, s.as_number, is_node, True))
        elif s.peer_selector:
            selector = parse_selector(s.peer_selector)
            for other_name, other in sorted(inp.nodes.items()):
                if (other_name != inp.node_name
                        and selector.matches(_labels(other_name, other))):
                    out += node_targets(other)
    # The reverse direction: when our node is selected as the peer, the nodes this BGPPeer
    # applies to peer with us (Calico's reversePeering Auto), so both sides configure a session.
    if s.peer_selector and s.reverse_peering != "Manual":
        selector = parse_selector(s.peer_selector)
        if selector.matches(_labels(inp.node_name, me)):
            for other_name, other in sorted(inp.nodes.items()):
                if other_name != inp.node_name and applies_to(other_name, other):
                    out += node_targets(other)
    return out


def _labels(name: str, node: Node) -> Mapping[str, str]:
    labels = dict(node.metadata.labels)
    labels.setdefault("kubernetes.io/hostname", name)
    return labels


def _announcements(inp: BGPInputs, spec: object,
                   warnings: list[str]) -> tuple[list[IPNetwork], list[Announcement]]:
    from wren.model.bgp import BGPConfigurationSpec

    cfg = spec if isinstance(spec, BGPConfigurationSpec) else None
    states = {(a.spec.node, a.spec.cidr): a.spec.state for a in inp.affinities}
    own: list[IPNetwork] = []
    prefixes: list[IPNetwork] = []
    for block in inp.blocks.values():
        if block.affinity_node != inp.node_name:
            continue
        cidr = block.spec.cidr
        own.append(cidr)
        state = states.get((inp.node_name, cidr))
        if state is not None and state != "confirmed":
            continue  # claimed but not confirmed, or being released: not ours to announce yet
        pool = _pool_for(inp.pools, cidr)
        if pool is None:
            warnings.append(f"IPAMBlock {cidr}: in no IP pool; not announced")
            continue
        if pool.spec.disabled or pool.spec.disable_bgp_export:
            continue
        prefixes.append(cidr)
    if cfg is not None:
        for b in (*cfg.service_cluster_ips, *cfg.service_external_ips,
                  *cfg.service_load_balancer_ips):
            prefixes.append(b.cidr)
    named = {c.name: c.value for c in cfg.communities} if cfg else {}
    out: list[Announcement] = []
    for prefix in sorted(set(prefixes), key=lambda n: (n.version, n)):
        communities: list[str] = []
        for adv in (cfg.prefix_advertisements if cfg else ()):
            if adv.cidr.version == prefix.version and prefix.subnet_of(adv.cidr):  # type: ignore[arg-type]
                for c in adv.communities:
                    value = named.get(c, c)
                    if ":" not in value:
                        warnings.append(f"BGPConfiguration: prefixAdvertisements {adv.cidr}: "
                                        f"community {c!r} is neither defined nor a value")
                        continue
                    if value not in communities:
                        communities.append(value)
        out.append(Announcement(prefix=prefix, communities=tuple(communities)))
    return own, out


def _pool_for(pools: Mapping[str, IPPool], net: IPNetwork) -> IPPool | None:
    best: IPPool | None = None
    for pool in pools.values():
        cidr = pool.spec.cidr
        inside = cidr.version == net.version and net.subnet_of(cidr)  # type: ignore[arg-type]
        if inside and (best is None or cidr.prefixlen > best.spec.cidr.prefixlen):
            best = pool
    return best


def _seconds(value: object) -> int:
    import datetime

    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds())
    return DEFAULT_RESTART_TIME


def _password(pw: BGPPassword | None, lookup: SecretLookup, owner: str,
              warnings: list[str]) -> str | None:
    if pw is None or pw.secret_key_ref is None:
        return None
    ref = pw.secret_key_ref
    value = lookup(ref.name, ref.key)
    if value is None:
        warnings.append(f"{owner}: password secret {ref.name}/{ref.key} not found; "
                        "its sessions are left out (never opened without the password)")
        raise _MissingSecret
    return value


class _MissingSecret(Exception):
    pass


def _rules(peer: BGPPeer, filters: Mapping[str, BGPFilter], direction: str, version: int,
           warnings: list[str]) -> tuple[FilterRule, ...]:
    out: list[FilterRule] = []
    for name in peer.spec.filters:
        f = filters.get(name)
        if f is None:
            warnings.append(f"BGPPeer {peer.metadata.name}: BGPFilter {name} not found; ignored")
            continue
        spec = f.spec
        rules: tuple[BGPFilterRule, ...] = {
            ("import", 4): spec.import_v4, ("import", 6): spec.import_v6,
            ("export", 4): spec.export_v4, ("export", 6): spec.export_v6,
        }[(direction, version)]
        for rule in rules:
            out.append(FilterRule(
                action=rule.action, cidr=rule.cidr, match_operator=rule.match_operator,
                min_len=rule.prefix_length.min if rule.prefix_length else None,
                max_len=rule.prefix_length.max if rule.prefix_length else None,
            ))
    return tuple(out)
