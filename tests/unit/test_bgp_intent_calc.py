"""The agent's BGP intent: who this node peers with and what it announces, as Calico does it.

Inputs are built from raw v3 bodies through the real model parser, so every resource here is one
that validation lets through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from agent.calc.bgp_intent import BGPInputs, compute_intent
from bgp.intent import BGPIntent, FilterRule, PeerIntent
from wren.model import (
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    IPAMBlock,
    IPPool,
    Node,
    Resource,
    parse_as,
)

R = TypeVar("R", bound=Resource)
ip = ipaddress.ip_address
net = ipaddress.ip_network


def res(cls: type[R], name: str, spec: Mapping[str, Any],
        labels: Mapping[str, str] | None = None) -> R:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return parse_as(cls, {"apiVersion": "projectcalico.org/v3", "kind": cls.KIND,
                          "metadata": meta, "spec": dict(spec)})


def node(name: str, addr: str | None, labels: Mapping[str, str] | None = None,
         **bgp: Any) -> Node:
    spec: dict[str, Any] = {}
    if addr is not None:
        spec["bgp"] = {"ipv4Address": addr, **bgp}
    return res(Node, name, spec, labels)


def pool(name: str, cidr: str, **spec: Any) -> IPPool:
    return res(IPPool, name, {"cidr": cidr, **spec})


def _name(cidr: str) -> str:
    """A resource name for a CIDR, as Calico's IPAM makes one (IPv6 colons become dashes)."""
    return cidr.replace("/", "-").replace(".", "-").replace(":", "-").strip("-")


def block(cidr: str, owner: str) -> IPAMBlock:
    size = net(cidr).num_addresses
    return res(IPAMBlock, _name(cidr),
               {"cidr": cidr, "affinity": f"host:{owner}", "allocations": [None] * size,
                "unallocated": list(range(size)), "attributes": []})


def affinity(owner: str, cidr: str, state: str) -> BlockAffinity:
    return res(BlockAffinity, f"{owner}-" + _name(cidr),
               {"state": state, "node": owner, "cidr": cidr})


def config(**spec: Any) -> BGPConfiguration:
    return res(BGPConfiguration, "default", spec)


def peer(name: str, **spec: Any) -> BGPPeer:
    return res(BGPPeer, name, spec)


def bgp_filter(name: str, **spec: Any) -> BGPFilter:
    return res(BGPFilter, name, spec)


RR_LABEL = {"route-reflector": "true"}
CLUSTER = "224.0.0.1"
N1, N2, N3 = (node(f"n{i}", f"10.0.0.{i}/24") for i in (1, 2, 3))
POOL = pool("default-ipv4-ippool", "10.65.0.0/16")
SECRETS = {("bgp-secrets", "mesh"): "mesh-pw", ("bgp-secrets", "tor"): "tor-pw"}


def intent_of(me: str = "n1", *, nodes: Iterable[Node] = (N1, N2, N3),
              pools: Iterable[IPPool] = (POOL,), blocks: Iterable[IPAMBlock] = (),
              affinities: Iterable[BlockAffinity] = (), cfg: BGPConfiguration | None = None,
              peers: Iterable[BGPPeer] = (), filters: Iterable[BGPFilter] = (),
              secrets: Mapping[tuple[str, str], str] = SECRETS) -> BGPIntent:
    intent = maybe_intent(me, nodes=nodes, pools=pools, blocks=blocks, affinities=affinities,
                          cfg=cfg, peers=peers, filters=filters, secrets=secrets)
    assert intent is not None
    return intent


def maybe_intent(me: str, *, nodes: Iterable[Node], pools: Iterable[IPPool] = (POOL,),
                 blocks: Iterable[IPAMBlock] = (), affinities: Iterable[BlockAffinity] = (),
                 cfg: BGPConfiguration | None = None, peers: Iterable[BGPPeer] = (),
                 filters: Iterable[BGPFilter] = (),
                 secrets: Mapping[tuple[str, str], str] = SECRETS) -> BGPIntent | None:
    inputs = BGPInputs(
        node_name=me, nodes={n.name: n for n in nodes}, pools={p.name: p for p in pools},
        blocks={b.name: b for b in blocks}, affinities=tuple(affinities), config=cfg,
        peers=tuple(peers), filters={f.name: f for f in filters},
    )
    return compute_intent(inputs, lambda name, key: secrets.get((name, key)))


def by_addr(intent: BGPIntent) -> dict[str, PeerIntent]:
    return {str(p.address): p for p in intent.peers}


# -- who we are ---------------------------------------------------------------------------------
def test_no_intent_until_our_node_has_a_bgp_ipv4_address() -> None:
    assert maybe_intent("n1", nodes=(N2, N3)) is None
    assert maybe_intent("n1", nodes=(node("n1", None), N2)) is None


def test_intent_names_our_address_router_id_as_and_ipv6_address() -> None:
    me = node("n1", "10.0.0.1/24", ipv6Address="fd00::1/64")
    intent = intent_of(nodes=(me, N2), cfg=config(asNumber=65000, listenPort=1790))
    assert intent.node == "n1"
    assert intent.address == ip("10.0.0.1") and intent.router_id == ip("10.0.0.1")
    assert intent.address6 == ip("fd00::1")
    assert intent.local_as == 65000
    assert intent.listen_port == 1790
    assert intent.cluster_id is None


def test_defaults_without_a_bgp_configuration_are_calicos_as_64512_and_port_179() -> None:
    intent = intent_of()
    assert intent.local_as == 64512 and intent.listen_port == 179
    assert {p.peer_as for p in intent.peers} == {64512}


# -- node-to-node mesh --------------------------------------------------------------------------
def test_full_mesh_with_every_other_node_that_has_a_bgp_address() -> None:
    no_bgp = node("n4", None)
    intent = intent_of(nodes=(N1, N2, N3, no_bgp))
    peers = by_addr(intent)
    assert sorted(peers) == ["10.0.0.2", "10.0.0.3"]
    p2 = peers["10.0.0.2"]
    assert p2.type == "node-to-node mesh" and p2.name == "n2" and p2.is_node
    assert (p2.peer_as, p2.local_as) == (64512, 64512) and not p2.ebgp
    assert p2.source_address == ip("10.0.0.1")
    assert p2.port == 179 and p2.restart_time == 120
    assert p2.password is None and not p2.rr_client


def test_mesh_is_ibgp_in_the_global_as_unless_a_node_sets_its_own() -> None:
    own_as = node("n3", "10.0.0.3/24", asNumber=65003)
    peers = by_addr(intent_of(nodes=(N1, N2, own_as), cfg=config(asNumber=65000)))
    assert (peers["10.0.0.2"].peer_as, peers["10.0.0.2"].local_as) == (65000, 65000)
    assert peers["10.0.0.3"].peer_as == 65003 and peers["10.0.0.3"].ebgp

    me_own_as = node("n1", "10.0.0.1/24", asNumber=65001)
    intent = intent_of(nodes=(me_own_as, N2), cfg=config(asNumber=65000))
    assert intent.local_as == 65001
    assert by_addr(intent)["10.0.0.2"].local_as == 65001


def test_exactly_one_side_dials_a_mesh_session_by_calico_nodes_rule() -> None:
    # calico-node's template: wait when the peer's address is greater, compared as text
    # ("10.0.0.9" > "10.0.0.10"), so a Wren node and a calico-node never both wait.
    n9, n10 = node("n9", "10.0.0.9/24"), node("n10", "10.0.0.10/24")
    n11 = node("n11", "10.0.0.11/24")
    peers = by_addr(intent_of("n10", nodes=(n9, n10, n11)))
    assert peers["10.0.0.9"].passive is True
    assert peers["10.0.0.11"].passive is True
    # And the other side agrees, so exactly one side dials each session.
    assert by_addr(intent_of("n9", nodes=(n9, n10, n11)))["10.0.0.10"].passive is False
    assert by_addr(intent_of("n11", nodes=(n9, n10, n11)))["10.0.0.10"].passive is False


def test_route_reflector_nodes_leave_the_mesh() -> None:
    rr = node("n3", "10.0.0.3/24", routeReflectorClusterID=CLUSTER)
    assert sorted(by_addr(intent_of("n1", nodes=(N1, N2, rr)))) == ["10.0.0.2"]
    reflector = intent_of("n3", nodes=(N1, N2, rr))
    assert reflector.cluster_id == ip(CLUSTER)
    assert reflector.peers == ()


def test_mesh_disabled_leaves_only_explicit_peers() -> None:
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65100)
    intent = intent_of(cfg=config(nodeToNodeMeshEnabled=False), peers=(tor,))
    assert [p.type for p in intent.peers] == ["global"]


def test_mesh_restart_time_comes_from_node_mesh_max_restart_time() -> None:
    intent = intent_of(cfg=config(nodeMeshMaxRestartTime="5m"))
    assert {p.restart_time for p in intent.peers} == {300}


def test_mesh_password_comes_from_the_secret_through_the_lookup() -> None:
    cfg = config(nodeMeshPassword={"secretKeyRef": {"name": "bgp-secrets", "key": "mesh"}})
    intent = intent_of(cfg=cfg)
    assert {p.password for p in intent.peers} == {"mesh-pw"}
    assert intent.warnings == ()


def test_missing_mesh_password_secret_opens_no_mesh_session_and_warns() -> None:
    cfg = config(nodeMeshPassword={"secretKeyRef": {"name": "bgp-secrets", "key": "gone"}})
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65100)
    intent = intent_of(cfg=cfg, peers=(tor,))
    assert [str(p.address) for p in intent.peers] == ["192.0.2.1"]
    assert any("bgp-secrets/gone" in w for w in intent.warnings)


# -- BGPPeer by IP ------------------------------------------------------------------------------
def test_global_peer_by_ip_is_an_ebgp_session_we_dial() -> None:
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65100)
    p = by_addr(intent_of(peers=(tor,)))["192.0.2.1"]
    assert p.type == "global" and p.name == "tor"
    assert (p.peer_as, p.local_as, p.port) == (65100, 64512, 179) and p.ebgp
    assert not p.passive and not p.is_node
    assert p.source_address == ip("10.0.0.1")
    assert p.next_hop_mode == "Auto" and p.restart_time == 120


def test_peer_ip_with_a_port_sets_the_session_port() -> None:
    tor = peer("tor", peerIP="192.0.2.1:1790", asNumber=65100)
    p = by_addr(intent_of(peers=(tor,)))["192.0.2.1"]
    assert p.port == 1790


def test_peer_ip_without_as_number_is_skipped_with_a_warning() -> None:
    intent = intent_of(cfg=config(nodeToNodeMeshEnabled=False),
                       peers=(peer("tor", peerIP="192.0.2.1"),))
    assert intent.peers == ()
    assert any("tor" in w and "asNumber" in w for w in intent.warnings)


def test_node_specific_peer_applies_only_to_its_node() -> None:
    tor = peer("rack1-tor", node="n2", peerIP="192.0.2.1", asNumber=65100)
    assert "192.0.2.1" not in by_addr(intent_of("n1", peers=(tor,)))
    p = by_addr(intent_of("n2", peers=(tor,)))["192.0.2.1"]
    assert p.type == "node specific"


def test_node_selector_peer_applies_to_the_selected_nodes_only() -> None:
    a1 = node("n1", "10.0.0.1/24", labels={"rack": "a"})
    b2 = node("n2", "10.0.0.2/24", labels={"rack": "b"})
    tor = peer("rack-a-tor", nodeSelector="rack == 'a'", peerIP="192.0.2.1", asNumber=65100)
    assert by_addr(intent_of("n1", nodes=(a1, b2), peers=(tor,)))["192.0.2.1"].type == \
        "node specific"
    assert "192.0.2.1" not in by_addr(intent_of("n2", nodes=(a1, b2), peers=(tor,)))


def test_peer_ip_of_another_node_is_a_node_session_dialled_by_one_side_only() -> None:
    cfg = config(nodeToNodeMeshEnabled=False)
    to_n1 = peer("to-n1", node="n2", peerIP="10.0.0.1", asNumber=64512)
    p = by_addr(intent_of("n2", cfg=cfg, peers=(to_n1,)))["10.0.0.1"]
    assert p.is_node and not p.passive  # "10.0.0.1" < "10.0.0.2": n2 dials
    to_n3 = peer("to-n3", node="n2", peerIP="10.0.0.3", asNumber=64512)
    assert by_addr(intent_of("n2", cfg=cfg, peers=(to_n3,)))["10.0.0.3"].passive


def test_a_peer_on_our_own_address_is_ignored() -> None:
    self_peer = peer("self", peerIP="10.0.0.1", asNumber=64512)
    assert "10.0.0.1" not in by_addr(intent_of(peers=(self_peer,)))


def test_a_peer_already_in_the_mesh_keeps_its_one_mesh_session() -> None:
    dup = peer("dup", peerIP="10.0.0.2", asNumber=64512)
    intent = intent_of(peers=(dup,))
    assert [p.type for p in intent.peers if str(p.address) == "10.0.0.2"] == \
        ["node-to-node mesh"]


def test_peer_password_comes_from_its_secret() -> None:
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65100,
               password={"secretKeyRef": {"name": "bgp-secrets", "key": "tor"}})
    assert by_addr(intent_of(peers=(tor,)))["192.0.2.1"].password == "tor-pw"


def test_peer_with_a_missing_password_secret_is_skipped_with_a_warning_others_stay() -> None:
    locked = peer("locked", peerIP="192.0.2.1", asNumber=65100,
                  password={"secretKeyRef": {"name": "bgp-secrets", "key": "nope"}})
    open_ = peer("open", peerIP="192.0.2.2", asNumber=65100)
    intent = intent_of(peers=(locked, open_))
    peers = by_addr(intent)
    assert "192.0.2.1" not in peers and "192.0.2.2" in peers
    assert any("BGPPeer locked" in w and "bgp-secrets/nope" in w for w in intent.warnings)


def test_peer_session_settings_restart_keepalive_ttl_local_as_source() -> None:
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65100, maxRestartTime="90s",
               keepaliveTime="20s", ttlSecurity=1, localASNumber=65010, sourceAddress="None")
    p = by_addr(intent_of(peers=(tor,)))["192.0.2.1"]
    assert p.restart_time == 90 and p.keepalive_time == 20 and p.ttl_security == 1
    assert p.local_as == 65010
    assert p.source_address is None


def test_keep_original_next_hop_and_next_hop_mode() -> None:
    keep = peer("keep", peerIP="192.0.2.1", asNumber=65100, keepOriginalNextHop=True)
    self_ = peer("self", peerIP="192.0.2.2", asNumber=65100, nextHopMode="Self")
    peers = by_addr(intent_of(peers=(keep, self_)))
    assert peers["192.0.2.1"].next_hop_mode == "Keep"
    assert peers["192.0.2.2"].next_hop_mode == "Self"


# -- BGPPeer by selector, both directions, reflectors -------------------------------------------
RR1 = node("rr1", "10.0.0.101/24", labels=RR_LABEL, routeReflectorClusterID=CLUSTER)
RR2 = node("rr2", "10.0.0.102/24", labels=RR_LABEL, routeReflectorClusterID=CLUSTER)
TO_RRS = peer("peer-with-rrs", nodeSelector="all()",
              peerSelector="route-reflector == 'true'")
RR_CLUSTER = (N1, N2, RR1, RR2)
NO_MESH = config(nodeToNodeMeshEnabled=False)


def test_clients_peer_with_every_reflector_and_never_each_other() -> None:
    peers = by_addr(intent_of("n1", nodes=RR_CLUSTER, cfg=NO_MESH, peers=(TO_RRS,)))
    assert sorted(peers) == ["10.0.0.101", "10.0.0.102"]
    for p in peers.values():
        assert p.type == "node specific" and p.is_node and p.name == "peer-with-rrs"
        assert p.peer_as == 64512 and not p.rr_client
        assert p.passive  # "10.0.0.101" > "10.0.0.1" as text: the reflector dials


def test_a_reflector_peers_with_every_node_the_bgppeer_applies_to_the_reverse_direction() -> None:
    intent = intent_of("rr1", nodes=RR_CLUSTER, cfg=NO_MESH, peers=(TO_RRS,))
    peers = by_addr(intent)
    assert sorted(peers) == ["10.0.0.1", "10.0.0.102", "10.0.0.2"]
    # As text "10.0.0.1" < "10.0.0.101" < "10.0.0.102" < "10.0.0.2": wait for the greater.
    assert not peers["10.0.0.1"].passive
    assert peers["10.0.0.2"].passive and peers["10.0.0.102"].passive


def test_a_peer_selector_without_a_node_selector_is_global_both_ways() -> None:
    everyone = peer("everyone-to-rrs", peerSelector="route-reflector == 'true'")
    client = by_addr(intent_of("n1", nodes=RR_CLUSTER, cfg=NO_MESH, peers=(everyone,)))
    assert {p.type for p in client.values()} == {"global"}
    reflector = by_addr(intent_of("rr1", nodes=RR_CLUSTER, cfg=NO_MESH, peers=(everyone,)))
    assert sorted(reflector) == ["10.0.0.1", "10.0.0.102", "10.0.0.2"]


def test_a_reflector_treats_ibgp_peers_outside_its_cluster_as_clients() -> None:
    other_cluster = node("rr3", "10.0.0.103/24", labels=RR_LABEL,
                         routeReflectorClusterID="224.0.0.3")
    peers = by_addr(intent_of("rr1", nodes=(*RR_CLUSTER, other_cluster), cfg=NO_MESH,
                              peers=(TO_RRS,)))
    assert peers["10.0.0.1"].rr_client and peers["10.0.0.2"].rr_client  # no cluster
    assert peers["10.0.0.103"].rr_client  # another cluster
    assert not peers["10.0.0.102"].rr_client  # same cluster


def test_a_reflector_does_not_treat_an_ebgp_peer_as_a_client() -> None:
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65100)
    p = by_addr(intent_of("rr1", nodes=RR_CLUSTER, cfg=NO_MESH, peers=(TO_RRS, tor)))
    assert not p["192.0.2.1"].rr_client


def test_reflectors_with_the_mesh_on_still_leave_it_and_clients_keep_meshing() -> None:
    peers = by_addr(intent_of("n1", nodes=RR_CLUSTER, peers=(TO_RRS,)))
    assert peers["10.0.0.2"].type == "node-to-node mesh"
    assert peers["10.0.0.101"].type == "node specific"


def test_reverse_peering_manual_configures_only_the_selecting_side() -> None:
    manual = peer("manual", nodeSelector="!has(route-reflector)",
                  peerSelector="route-reflector == 'true'", reversePeering="Manual")
    assert sorted(by_addr(intent_of("n1", nodes=RR_CLUSTER, cfg=NO_MESH, peers=(manual,)))) \
        == ["10.0.0.101", "10.0.0.102"]
    assert intent_of("rr1", nodes=RR_CLUSTER, cfg=NO_MESH, peers=(manual,)).peers == ()
    auto = peer("auto", nodeSelector="!has(route-reflector)",
                peerSelector="route-reflector == 'true'")
    assert sorted(by_addr(intent_of("rr1", nodes=RR_CLUSTER, cfg=NO_MESH, peers=(auto,)))) \
        == ["10.0.0.1", "10.0.0.2"]


def test_selected_peers_use_their_own_as_number() -> None:
    rr_own_as = node("rr1", "10.0.0.101/24", labels=RR_LABEL, asNumber=65101)
    peers = by_addr(intent_of("n1", nodes=(N1, rr_own_as), cfg=NO_MESH, peers=(TO_RRS,)))
    assert peers["10.0.0.101"].peer_as == 65101 and peers["10.0.0.101"].ebgp


def test_selected_nodes_without_a_bgp_address_are_skipped() -> None:
    unready = node("rr9", None, labels=RR_LABEL)
    peers = by_addr(intent_of("n1", nodes=(N1, RR1, unready), cfg=NO_MESH, peers=(TO_RRS,)))
    assert sorted(peers) == ["10.0.0.101"]


# -- BGPFilter ----------------------------------------------------------------------------------
def test_peer_filters_take_the_rules_of_the_peer_address_family_in_order() -> None:
    f = bgp_filter(
        "tor-filter",
        importV4=[{"action": "Reject", "cidr": "10.65.0.0/16", "matchOperator": "In",
                   "prefixLength": {"min": 28}},
                  {"action": "Accept", "cidr": "10.66.0.0/16", "matchOperator": "Equal"}],
        exportV4=[{"action": "Reject", "cidr": "10.96.0.0/12", "matchOperator": "NotIn"}],
        importV6=[{"action": "Reject", "cidr": "fd00::/8", "matchOperator": "In"}],
    )
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65100, filters=["tor-filter"])
    p = by_addr(intent_of(peers=(tor,), filters=(f,)))["192.0.2.1"]
    assert p.import_rules == (
        FilterRule(action="Reject", cidr=net("10.65.0.0/16"), match_operator="In", min_len=28),
        FilterRule(action="Accept", cidr=net("10.66.0.0/16"), match_operator="Equal"),
    )
    assert p.export_rules == (
        FilterRule(action="Reject", cidr=net("10.96.0.0/12"), match_operator="NotIn"),
    )


def test_a_missing_filter_is_ignored_with_a_warning() -> None:
    tor = peer("tor", peerIP="192.0.2.1", asNumber=65100, filters=["missing"])
    intent = intent_of(peers=(tor,))
    assert by_addr(intent)["192.0.2.1"].import_rules == ()
    assert any("BGPFilter missing" in w for w in intent.warnings)


# -- what we announce and accept ----------------------------------------------------------------
def test_announces_only_our_confirmed_blocks_of_enabled_exported_pools() -> None:
    pools = (POOL, pool("quiet", "10.70.0.0/16", disableBGPExport=True),
             pool("off", "10.80.0.0/16", disabled=True))
    blocks = (block("10.65.0.0/26", "n1"), block("10.65.0.64/26", "n1"),
              block("10.65.1.0/26", "n2"), block("10.70.0.0/26", "n1"),
              block("10.80.0.0/26", "n1"))
    affs = (affinity("n1", "10.65.0.0/26", "confirmed"),
            affinity("n1", "10.65.0.64/26", "pending"),
            affinity("n2", "10.65.1.0/26", "confirmed"),
            affinity("n1", "10.70.0.0/26", "confirmed"),
            affinity("n1", "10.80.0.0/26", "confirmed"))
    intent = intent_of(pools=pools, blocks=blocks, affinities=affs)
    assert [str(a.prefix) for a in intent.announce] == ["10.65.0.0/26"]
    # Every block affine to us is ours: peers may never send us any of them.
    assert sorted(map(str, intent.own)) == ["10.65.0.0/26", "10.65.0.64/26",
                                            "10.70.0.0/26", "10.80.0.0/26"]


def test_a_block_being_released_is_no_longer_announced() -> None:
    intent = intent_of(blocks=(block("10.65.0.0/26", "n1"),),
                       affinities=(affinity("n1", "10.65.0.0/26", "pendingDeletion"),))
    assert intent.announce == ()


def test_a_block_in_no_pool_is_not_announced_and_warned_about() -> None:
    intent = intent_of(blocks=(block("10.99.0.0/26", "n1"),),
                       affinities=(affinity("n1", "10.99.0.0/26", "confirmed"),))
    assert intent.announce == ()
    assert any("10.99.0.0/26" in w for w in intent.warnings)


def test_service_ranges_are_announced_and_accepted() -> None:
    cfg = config(serviceClusterIPs=[{"cidr": "10.96.0.0/12"}],
                 serviceExternalIPs=[{"cidr": "203.0.113.0/24"}],
                 serviceLoadBalancerIPs=[{"cidr": "198.51.100.0/24"}])
    intent = intent_of(cfg=cfg, blocks=(block("10.65.0.0/26", "n1"),),
                       affinities=(affinity("n1", "10.65.0.0/26", "confirmed"),))
    assert sorted(str(a.prefix) for a in intent.announce) == [
        "10.65.0.0/26", "10.96.0.0/12", "198.51.100.0/24", "203.0.113.0/24"]
    assert sorted(map(str, intent.accept)) == [
        "10.65.0.0/16", "10.96.0.0/12", "198.51.100.0/24", "203.0.113.0/24"]


def test_accept_is_every_pool_and_never_lists_a_pool_twice() -> None:
    pools = (POOL, pool("v6", "fd00:10::/48"), pool("quiet", "10.70.0.0/16",
                                                     disableBGPExport=True))
    cfg = config(serviceClusterIPs=[{"cidr": "10.65.0.0/16"}])
    intent = intent_of(pools=pools, cfg=cfg)
    assert sorted(map(str, intent.accept)) == ["10.65.0.0/16", "10.70.0.0/16", "fd00:10::/48"]


def test_communities_come_from_prefix_advertisements_named_or_literal() -> None:
    cfg = config(
        communities=[{"name": "pods", "value": "65000:100"}],
        prefixAdvertisements=[
            {"cidr": "10.65.0.0/16", "communities": ["pods", "65000:200:300"]},
            {"cidr": "10.65.0.0/26", "communities": ["65000:100", "65000:7"]},
            {"cidr": "10.96.0.0/12", "communities": ["65000:96"]},
        ],
        serviceClusterIPs=[{"cidr": "10.96.0.0/12"}],
    )
    pools = (POOL, pool("other", "10.71.0.0/16"))
    blocks = (block("10.65.0.0/26", "n1"), block("10.71.0.0/26", "n1"))
    affs = (affinity("n1", "10.65.0.0/26", "confirmed"),
            affinity("n1", "10.71.0.0/26", "confirmed"))
    intent = intent_of(cfg=cfg, pools=pools, blocks=blocks, affinities=affs)
    got = {str(a.prefix): a.communities for a in intent.announce}
    assert got == {
        # Both advertisements cover the block; a value already attached is not repeated.
        "10.65.0.0/26": ("65000:100", "65000:200:300", "65000:7"),
        "10.71.0.0/26": (),
        "10.96.0.0/12": ("65000:96",),
    }


# -- IPv6 sessions (dual stack) -----------------------------------------------------------------
D1, D2, D3 = (node(f"n{i}", f"10.0.0.{i}/24", ipv6Address=f"fd00::{i}/64") for i in (1, 2, 3))
POOL6 = pool("default-ipv6-ippool", "fd00:65::/48")


def test_dual_stack_nodes_mesh_twice_one_session_per_family_between_same_family_addresses(
) -> None:
    # n3 has no IPv6 address: with it only the IPv4 session.
    intent = intent_of(nodes=(D1, D2, N3))
    peers = by_addr(intent)
    assert sorted(peers) == ["10.0.0.2", "10.0.0.3", "fd00::2"]
    v4, v6 = peers["10.0.0.2"], peers["fd00::2"]
    assert v6.type == "node-to-node mesh" and v6.name == "n2" and v6.is_node
    assert v6.source_address == ip("fd00::1") and v4.source_address == ip("10.0.0.1")
    assert (v6.peer_as, v6.local_as, v6.restart_time) == (64512, 64512, 120)
    # The router ID stays the IPv4 address; the IPv6 address is where IPv6 sessions live.
    assert intent.router_id == ip("10.0.0.1") and intent.address6 == ip("fd00::1")
    # IPv4 sessions first, then IPv6 (a stable order: the rendered file must not move).
    assert [str(p.address) for p in intent.peers] == ["10.0.0.2", "10.0.0.3", "fd00::2"]


def test_a_node_without_an_ipv6_address_meshes_over_ipv4_only() -> None:
    intent = intent_of("n3", nodes=(D1, D2, N3))
    assert sorted(by_addr(intent)) == ["10.0.0.1", "10.0.0.2"]
    assert intent.address6 is None and intent.warnings == ()


def test_exactly_one_side_dials_each_ipv6_mesh_session() -> None:
    # Calico's rule compares the IPv6 addresses as text too: "fd00::2" > "fd00::10".
    a = node("a", "10.0.0.9/24", ipv6Address="fd00::2/64")
    b = node("b", "10.0.0.10/24", ipv6Address="fd00::10/64")
    from_a = by_addr(intent_of("a", nodes=(a, b)))
    from_b = by_addr(intent_of("b", nodes=(a, b)))
    assert from_a["fd00::10"].passive is False and from_b["fd00::2"].passive is True
    # Each family on its own: over IPv4 ("10.0.0.9" > "10.0.0.10") it is b that waits.
    assert from_a["10.0.0.10"].passive is False and from_b["10.0.0.9"].passive is True


def test_an_ipv6_bgppeer_is_a_session_from_our_ipv6_address_with_its_ipv6_filter_rules(
) -> None:
    f = bgp_filter(
        "tor-filter",
        importV4=[{"action": "Reject", "cidr": "10.65.0.0/16", "matchOperator": "In"}],
        importV6=[{"action": "Reject", "cidr": "fd00:66::/48", "matchOperator": "In"}],
        exportV6=[{"action": "Accept", "cidr": "fd00:65::/48", "matchOperator": "In"},
                  {"action": "Reject"}],
    )
    tor6 = peer("v6-tor", peerIP="[2001:db8::1]:1790", asNumber=65100, filters=["tor-filter"])
    intent = intent_of(nodes=(D1, D2), peers=(tor6,), filters=(f,))
    p = by_addr(intent)["2001:db8::1"]
    assert (p.type, p.name, p.port, p.peer_as, p.ebgp) == ("global", "v6-tor", 1790, 65100, True)
    assert p.source_address == ip("fd00::1") and not p.passive and not p.is_node
    assert p.import_rules == (
        FilterRule(action="Reject", cidr=net("fd00:66::/48"), match_operator="In"),)
    assert p.export_rules == (
        FilterRule(action="Accept", cidr=net("fd00:65::/48"), match_operator="In"),
        FilterRule(action="Reject"),
    )
    assert intent.warnings == ()


def test_an_ipv6_bgppeer_on_a_node_without_an_ipv6_address_warns_and_opens_no_session() -> None:
    v6 = peer("v6-tor", peerIP="2001:db8::1", asNumber=65100)
    v4 = peer("tor", peerIP="192.0.2.1", asNumber=65100)
    intent = intent_of(peers=(v6, v4))
    assert "2001:db8::1" not in by_addr(intent)
    assert "192.0.2.1" in by_addr(intent)
    [warning] = intent.warnings
    assert "BGPPeer v6-tor" in warning and "spec.peerIP 2001:db8::1" in warning
    assert "Node n1 has no spec.bgp.ipv6Address" in warning and "no session" in warning


def test_source_address_none_leaves_the_ipv6_source_to_the_renderer() -> None:
    v6 = peer("v6-tor", peerIP="2001:db8::1", asNumber=65100, sourceAddress="None")
    assert by_addr(intent_of(nodes=(D1,), peers=(v6,)))["2001:db8::1"].source_address is None


def test_peer_ip_of_another_nodes_ipv6_address_is_a_node_session() -> None:
    to_n2 = peer("to-n2", peerIP="fd00::2", asNumber=64512)
    p = by_addr(intent_of(nodes=(D1, D2), cfg=NO_MESH, peers=(to_n2,)))["fd00::2"]
    assert p.is_node and p.passive  # "fd00::2" > "fd00::1": n2 dials


def test_selected_dual_stack_reflectors_get_a_session_per_family_both_ways() -> None:
    rr1 = node("rr1", "10.0.0.101/24", labels=RR_LABEL, routeReflectorClusterID=CLUSTER,
               ipv6Address="fd00::101/64")
    client = by_addr(intent_of("n1", nodes=(D1, N2, rr1), cfg=NO_MESH, peers=(TO_RRS,)))
    assert sorted(client) == ["10.0.0.101", "fd00::101"]
    assert client["fd00::101"].source_address == ip("fd00::1")
    assert client["fd00::101"].type == "node specific" and client["fd00::101"].is_node
    # The reflector: n1 over both families (a client, outside its cluster), n2 over IPv4 only.
    reflector = by_addr(intent_of("rr1", nodes=(D1, N2, rr1), cfg=NO_MESH, peers=(TO_RRS,)))
    assert sorted(reflector) == ["10.0.0.1", "10.0.0.2", "fd00::1"]
    assert reflector["fd00::1"].rr_client and reflector["10.0.0.1"].rr_client
    assert reflector["fd00::1"].source_address == ip("fd00::101")


def test_a_reflector_knows_its_own_clusters_members_by_their_ipv6_address_too() -> None:
    rr1 = node("rr1", "10.0.0.101/24", labels=RR_LABEL, routeReflectorClusterID=CLUSTER,
               ipv6Address="fd00::101/64")
    rr2 = node("rr2", "10.0.0.102/24", labels=RR_LABEL, routeReflectorClusterID=CLUSTER,
               ipv6Address="fd00::102/64")
    peers = by_addr(intent_of("rr1", nodes=(D1, rr1, rr2), cfg=NO_MESH, peers=(TO_RRS,)))
    assert not peers["fd00::102"].rr_client and not peers["10.0.0.102"].rr_client
    assert peers["fd00::1"].rr_client


def test_ipv6_blocks_are_announced_owned_and_ipv6_pools_accepted_beside_ipv4_ones() -> None:
    blocks = (block("10.65.0.0/26", "n1"), block("fd00:65::/122", "n1"),
              block("fd00:65::40/122", "n2"))
    affs = (affinity("n1", "10.65.0.0/26", "confirmed"),
            affinity("n1", "fd00:65::/122", "confirmed"))
    intent = intent_of(nodes=(D1, D2), pools=(POOL, POOL6), blocks=blocks, affinities=affs)
    assert [str(a.prefix) for a in intent.announce] == ["10.65.0.0/26", "fd00:65::/122"]
    assert [str(n) for n in intent.own] == ["10.65.0.0/26", "fd00:65::/122"]
    assert {str(n) for n in intent.accept} == {"10.65.0.0/16", "fd00:65::/48"}
