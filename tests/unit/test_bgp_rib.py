"""The sidecar's RIB: Adj-RIB-In per peer, best path, graceful restart and route reflection.

Time comes from a hand-driven clock; nothing here sleeps.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import replace

import pytest

from bgp.exabgp_json import Attributes
from bgp.intent import Announcement, BGPIntent, FilterRule, IPAddress, IPNetwork, PeerIntent
from bgp.rib import OutRoute, Rib

ip = ipaddress.ip_address


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def mesh(addr: str, *, restart: int = 120, rr_client: bool = False,
         next_hop_mode: str = "Auto",
         export_rules: tuple[FilterRule, ...] = ()) -> PeerIntent:
    return PeerIntent(address=ip(addr), peer_as=64512, local_as=64512,
                      type="node-to-node mesh", restart_time=restart, rr_client=rr_client,
                      next_hop_mode=next_hop_mode, is_node=True, export_rules=export_rules)


A, B, C = ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")
TOR = ip("192.0.2.1")
POOL_BLOCK, OTHER_BLOCK = net("10.65.1.0/26"), net("10.65.2.0/26")


def intent(*peers: PeerIntent, cluster_id: str | None = None,
           announce: Iterable[str] = ("10.65.0.0/26",),
           own: Iterable[str] = ("10.65.0.0/26",)) -> BGPIntent:
    return BGPIntent(
        node="me", router_id=ipaddress.IPv4Address("10.0.0.1"), local_as=64512,
        address=ip("10.0.0.1"),
        cluster_id=ipaddress.IPv4Address(cluster_id) if cluster_id else None,
        peers=peers, announce=tuple(Announcement(prefix=net(p)) for p in announce),
        accept=(net("10.65.0.0/16"),), own=tuple(net(p) for p in own),
    )


TOR_PEER = PeerIntent(address=TOR, peer_as=65100, local_as=64512, type="global")
MESH_INTENT = intent(mesh("10.0.0.2"), mesh("10.0.0.3"), mesh("10.0.0.4"), TOR_PEER)


def rib(base: BGPIntent = MESH_INTENT) -> tuple[Rib, Clock]:
    clock = Clock()
    r = Rib(base, clock=clock)
    for peer in base.peers:
        r.on_open(peer.address, str(peer.address), 120)
    return r, clock


def announce(r: Rib, peer: IPAddress, *prefixes: IPNetwork, next_hop: IPAddress | None = None,
             attrs: Attributes | None = None) -> None:
    r.on_update(peer, [(p, next_hop or peer) for p in prefixes], [], attrs or Attributes())


# -- Adj-RIB-In and import ----------------------------------------------------------------------
def test_accepted_paths_are_learned_with_their_next_hop_and_peer() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, next_hop=ip("10.0.0.20"))
    assert r.learned() == {POOL_BLOCK: (ip("10.0.0.20"), A)}


def test_rejected_paths_stay_in_adj_rib_in_and_are_counted_by_reason() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, net("172.16.0.0/24"), net("10.65.0.0/26"))
    assert r.learned() == {POOL_BLOCK: (A, A)}
    counters = r.counters(A)
    assert (counters.received, counters.accepted) == (3, 1)
    assert counters.rejected == {"outside pools": 1, "own block": 1}


def test_updates_from_a_peer_not_in_the_intent_are_ignored() -> None:
    r, _ = rib()
    announce(r, ip("10.0.0.99"), POOL_BLOCK)
    assert r.learned() == {}
    assert r.counters(ip("10.0.0.99")).received == 0


def test_a_re_announcement_replaces_the_peers_previous_path() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, next_hop=ip("10.0.0.20"))
    announce(r, A, POOL_BLOCK, next_hop=ip("10.0.0.21"))
    assert r.learned() == {POOL_BLOCK: (ip("10.0.0.21"), A)}
    assert r.counters(A).received == 1


def test_a_withdrawal_removes_the_path_and_the_next_best_takes_over() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK)
    announce(r, B, POOL_BLOCK)
    assert r.learned()[POOL_BLOCK] == (A, A)
    r.on_update(A, [], [POOL_BLOCK], Attributes())
    assert r.learned()[POOL_BLOCK] == (B, B)
    r.on_update(B, [], [POOL_BLOCK], Attributes())
    assert r.learned() == {}
    assert r.counters(A).received == 0


def test_withdrawing_a_rejected_prefix_forgets_the_rejection() -> None:
    r, _ = rib()
    announce(r, A, net("172.16.0.0/24"))
    r.on_update(A, [], [net("172.16.0.0/24")], Attributes())
    assert r.counters(A).rejected == {}


def test_version_changes_only_when_what_is_learned_changes() -> None:
    r, _ = rib()
    v0 = r.version
    announce(r, A, net("172.16.0.0/24"))
    assert r.version == v0
    announce(r, A, POOL_BLOCK)
    v1 = r.version
    assert v1 != v0
    announce(r, B, POOL_BLOCK)  # loses to A's path: nothing learned changes
    assert r.version == v1


def test_changes_name_what_the_learned_set_gained_changed_and_lost_since_the_last_take() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, OTHER_BLOCK)
    assert r.take_changes() == {POOL_BLOCK: (A, A), OTHER_BLOCK: (A, A)}
    assert r.take_changes() == {}
    announce(r, B, POOL_BLOCK)  # loses to A's path: no change
    announce(r, A, OTHER_BLOCK, next_hop=ip("10.0.0.20"))
    r.on_update(A, [], [POOL_BLOCK], Attributes())  # B's path takes over
    assert r.take_changes() == {OTHER_BLOCK: (ip("10.0.0.20"), A), POOL_BLOCK: (B, B)}
    r.drop_peer(A)
    assert r.take_changes() == {OTHER_BLOCK: None}
    # applying every take to a copy keeps it equal to learned()
    copy = r.learned()
    announce(r, C, net("10.65.3.0/26"), net("10.65.4.0/26"))
    r.on_update(C, [], [net("10.65.4.0/26")], Attributes())
    for prefix, best in r.take_changes().items():
        if best is None:
            copy.pop(prefix, None)
        else:
            copy[prefix] = best
    assert copy == r.learned()


# -- best path ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "winner"), [
    pytest.param(Attributes(local_pref=100), Attributes(local_pref=200), B,
                 id="higher local preference"),
    pytest.param(Attributes(as_path=(65001, 65002)), Attributes(as_path=(65003,)), B,
                 id="shorter AS path"),
    pytest.param(Attributes(origin="incomplete"), Attributes(origin="egp"), B,
                 id="lower origin"),
    pytest.param(Attributes(origin="incomplete", as_path=(65001,)),
                 Attributes(origin="igp", as_path=(65001, 65002)), A,
                 id="AS path length before origin"),
    pytest.param(Attributes(med=20), Attributes(med=10), B,
                 id="lower MED from the same neighbouring AS"),
    pytest.param(Attributes(med=None), Attributes(med=1), A, id="a missing MED counts as 0"),
])
def test_of_two_paths_the_one_with_the_better_attribute_wins(a: Attributes, b: Attributes,
                                                              winner: IPAddress) -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, attrs=a)
    announce(r, B, POOL_BLOCK, attrs=b)
    assert r.learned()[POOL_BLOCK] == (winner, winner)


def test_an_igp_origin_beats_egp_and_incomplete() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, attrs=Attributes(origin="incomplete"))
    announce(r, B, POOL_BLOCK, attrs=Attributes(origin="egp"))
    announce(r, C, POOL_BLOCK, attrs=Attributes(origin="igp"))
    assert r.learned()[POOL_BLOCK] == (C, C)


def test_a_missing_local_preference_counts_as_100() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, attrs=Attributes(local_pref=None))
    announce(r, B, POOL_BLOCK, attrs=Attributes(local_pref=101))
    assert r.learned()[POOL_BLOCK] == (B, B)
    r.on_update(B, [(POOL_BLOCK, B)], [], Attributes(local_pref=99))
    assert r.learned()[POOL_BLOCK] == (A, A)


def test_best_path_prefers_ebgp_over_ibgp() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK)
    announce(r, TOR, POOL_BLOCK, attrs=Attributes())
    assert r.learned()[POOL_BLOCK] == (TOR, TOR)


@pytest.mark.parametrize(("id_a", "id_b", "winner"), [
    # 10.0.0.9 is lower than 10.0.0.10 as a number (as text it would sort after it).
    pytest.param("10.0.0.10", "10.0.0.9", B, id="lowest router ID, as a number"),
    pytest.param("10.9.9.9", "10.9.9.9", A, id="same router ID: lowest peer address"),
])
def test_the_last_ties_go_to_the_router_id_then_the_peer_address(id_a: str, id_b: str,
                                                                  winner: IPAddress) -> None:
    r, _ = rib()
    r.on_open(A, id_a, 120)
    r.on_open(B, id_b, 120)
    announce(r, B, POOL_BLOCK)
    announce(r, A, POOL_BLOCK)
    assert r.learned()[POOL_BLOCK] == (winner, winner)


def test_med_is_not_compared_between_different_neighbouring_ases() -> None:
    # A is 10.0.0.2 with router ID 10.0.0.2, B 10.0.0.3: on MED alone B would win.
    r, _ = rib()
    announce(r, A, POOL_BLOCK, attrs=Attributes(as_path=(65001,), med=50))
    announce(r, B, POOL_BLOCK, attrs=Attributes(as_path=(65002,), med=10))
    assert r.learned()[POOL_BLOCK] == (A, A)


def test_med_picks_within_each_neighbouring_as_whatever_the_arrival_order() -> None:
    # Pairwise in arrival order MED is not transitive: A beats B (router ID), B beats C
    # (MED, same AS), C beats A (router ID) - deterministic MED gives one answer.
    orders = [(A, B, C), (C, B, A), (B, A, C), (C, A, B)]
    attrs = {A: Attributes(as_path=(65001,), med=5), B: Attributes(as_path=(65002,), med=10),
             C: Attributes(as_path=(65002,), med=20)}
    results = set()
    for order in orders:
        r, _ = rib()
        r.on_open(C, "10.0.0.1", 120)  # C has the lowest router ID
        for peer in order:
            announce(r, peer, POOL_BLOCK, attrs=attrs[peer])
        results.add(r.learned()[POOL_BLOCK])
    # AS 65002's best is B (lower MED); then A (10.0.0.2) against B (10.0.0.3): A.
    assert results == {(A, A)}


def test_a_reflected_path_ranks_by_its_originator_id_not_the_reflectors_router_id() -> None:
    r, _ = rib()
    r.on_open(A, "10.0.0.2", 120)
    r.on_open(B, "10.0.0.3", 120)
    announce(r, A, POOL_BLOCK, next_hop=ip("10.0.0.20"),
             attrs=Attributes(originator_id="10.0.0.30", cluster_list=("224.0.0.1",)))
    announce(r, B, POOL_BLOCK, next_hop=ip("10.0.0.21"),
             attrs=Attributes(originator_id="10.0.0.29", cluster_list=("224.0.0.1",)))
    assert r.learned()[POOL_BLOCK] == (ip("10.0.0.21"), B)


def test_best_path_prefers_the_shorter_cluster_list_after_the_router_id() -> None:
    r, _ = rib()
    same_origin = "10.0.0.40"
    announce(r, A, POOL_BLOCK, next_hop=ip("10.0.0.40"),
             attrs=Attributes(originator_id=same_origin, cluster_list=("1.1.1.1", "2.2.2.2")))
    announce(r, B, POOL_BLOCK, next_hop=ip("10.0.0.40"),
             attrs=Attributes(originator_id=same_origin, cluster_list=("3.3.3.3",)))
    assert r.learned()[POOL_BLOCK] == (ip("10.0.0.40"), B)


def test_the_best_path_does_not_depend_on_arrival_order() -> None:
    one, _ = rib()
    announce(one, A, POOL_BLOCK)
    announce(one, B, POOL_BLOCK)
    other, _ = rib()
    announce(other, B, POOL_BLOCK)
    announce(other, A, POOL_BLOCK)
    assert one.learned() == other.learned()


# -- graceful restart ---------------------------------------------------------------------------
def test_a_peer_that_goes_down_with_graceful_restart_keeps_its_paths_as_stale() -> None:
    r, clock = rib()
    announce(r, A, POOL_BLOCK)
    r.on_down(A)
    assert r.learned() == {POOL_BLOCK: (A, A)}
    assert r.adj_in[A][POOL_BLOCK].stale
    assert r.stale_until[A] == clock.now + 120
    assert r.next_deadline() == clock.now + 120


def test_the_restart_time_is_the_smaller_of_both_sides() -> None:
    r, clock = rib()
    r.on_open(A, "10.0.0.2", 300)  # the peer offers more than our intent allows
    r.on_open(B, "10.0.0.3", 30)
    announce(r, A, POOL_BLOCK)
    announce(r, B, OTHER_BLOCK)
    r.on_down(A)
    r.on_down(B)
    assert r.stale_until == {A: clock.now + 120, B: clock.now + 30}


def test_a_peer_without_graceful_restart_loses_its_paths_at_once() -> None:
    r, _ = rib()
    r.on_open(A, "10.0.0.2", 0)
    announce(r, A, POOL_BLOCK)
    r.on_down(A)
    assert r.learned() == {} and A not in r.stale_until


def test_graceful_restart_disabled_on_our_side_drops_at_once() -> None:
    r, _ = rib(intent(mesh("10.0.0.2", restart=0)))
    announce(r, A, POOL_BLOCK)
    r.on_down(A)
    assert r.learned() == {}


def test_stale_paths_expire_when_the_restart_time_runs_out() -> None:
    r, clock = rib()
    announce(r, A, POOL_BLOCK)
    r.on_down(A)
    clock.now += 119.5
    assert r.expire() is False
    assert POOL_BLOCK in r.learned()
    clock.now += 0.5
    assert r.expire() is True
    assert r.learned() == {} and r.next_deadline() is None


def test_end_of_rib_sweeps_only_the_stale_paths_not_re_sent() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, OTHER_BLOCK)
    r.on_down(A)
    announce(r, A, POOL_BLOCK)  # back up, re-sends one of the two
    assert r.adj_in[A][POOL_BLOCK].stale is False
    assert r.adj_in[A][OTHER_BLOCK].stale is True
    r.on_end_of_rib(A)
    assert r.learned() == {POOL_BLOCK: (A, A)}
    assert A not in r.stale_until
    assert r.counters(A).received == 1


def test_end_of_rib_also_forgets_rejected_paths_not_re_sent() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, net("172.16.0.0/24"))
    r.on_down(A)
    r.on_end_of_rib(A)
    counters = r.counters(A)
    assert (counters.received, counters.accepted, counters.rejected) == (0, 0, {})


def test_a_fresh_path_wins_over_a_stale_one() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK)  # A wins the tie on router ID...
    announce(r, B, POOL_BLOCK)
    assert r.learned()[POOL_BLOCK] == (A, A)
    r.on_down(A)  # ...until its session drops: B's fresh path is now the better one
    assert r.learned()[POOL_BLOCK] == (B, B)
    r.on_update(B, [], [POOL_BLOCK], Attributes())
    assert r.learned()[POOL_BLOCK] == (A, A)  # the stale path is still used if it is all


def test_all_down_keeps_every_peers_paths_stale_for_the_given_time() -> None:
    r, clock = rib()
    r.on_open(A, "10.0.0.2", 0)  # did not offer GR: our own restart still keeps its paths
    announce(r, A, POOL_BLOCK)
    announce(r, B, OTHER_BLOCK)
    r.all_down(60)
    assert r.stale_until == {A: clock.now + 60, B: clock.now + 120}
    assert set(r.learned()) == {POOL_BLOCK, OTHER_BLOCK}
    clock.now += 60
    r.expire()
    assert set(r.learned()) == {OTHER_BLOCK}


def test_all_down_never_keeps_paths_longer_than_our_intent_allows() -> None:
    r, _ = rib(intent(mesh("10.0.0.2", restart=0)))
    announce(r, A, POOL_BLOCK)
    r.all_down(120)
    assert r.learned() == {}


def test_drop_peer_forgets_everything_from_it() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK, net("172.16.0.0/24"))
    r.on_down(A)
    r.drop_peer(A)
    assert r.learned() == {} and A not in r.stale_until
    assert r.counters(A).received == 0 and r.counters(A).rejected == {}


# -- intent changes -----------------------------------------------------------------------------
def test_a_new_intent_drops_removed_peers_and_re_judges_the_rest() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK)
    announce(r, B, OTHER_BLOCK)
    # B is gone; A's block became ours (the pool moved to us).
    r.set_intent(intent(mesh("10.0.0.2"), own=("10.65.0.0/26", "10.65.1.0/26")))
    assert r.learned() == {}
    assert r.counters(A).rejected == {"own block": 1}
    assert B not in r.adj_in
    r.set_intent(MESH_INTENT)
    assert r.learned() == {POOL_BLOCK: (A, A)}


# -- what each peer gets ------------------------------------------------------------------------
def test_every_peer_gets_our_announcements_with_our_address_as_next_hop() -> None:
    r, _ = rib()
    out = r.wanted_out(mesh("10.0.0.2"))
    assert out == {net("10.65.0.0/26"): OutRoute(prefix=net("10.65.0.0/26"),
                                                 next_hop=ip("10.0.0.1"))}


def test_announcements_carry_their_communities() -> None:
    base = BGPIntent(node="me", router_id=ipaddress.IPv4Address("10.0.0.1"), local_as=64512,
                     address=ip("10.0.0.1"), peers=(TOR_PEER,),
                     announce=(Announcement(prefix=net("10.65.0.0/26"),
                                            communities=("65000:100",)),))
    r, _ = rib(base)
    assert r.wanted_out(TOR_PEER)[net("10.65.0.0/26")].communities == ("65000:100",)


def test_an_export_filter_rejection_keeps_a_prefix_from_that_peer() -> None:
    r, _ = rib()
    no_blocks = mesh("10.0.0.2", export_rules=(
        FilterRule(action="Reject", cidr=net("10.65.0.0/16"), match_operator="In"),))
    assert r.wanted_out(no_blocks) == {}


def test_ipv6_announcements_go_only_to_ipv6_peers_with_our_ipv6_next_hop() -> None:
    v6_peer = PeerIntent(address=ip("fd00::2"), peer_as=64512, local_as=64512,
                         type="node-to-node mesh")
    base = BGPIntent(node="me", router_id=ipaddress.IPv4Address("10.0.0.1"), local_as=64512,
                     address=ip("10.0.0.1"), address6=ipaddress.IPv6Address("fd00::1"),
                     peers=(mesh("10.0.0.2"), v6_peer),
                     announce=(Announcement(prefix=net("10.65.0.0/26")),
                               Announcement(prefix=net("fd00:10::/122"))))
    r, _ = rib(base)
    assert set(r.wanted_out(mesh("10.0.0.2"))) == {net("10.65.0.0/26")}
    out6 = r.wanted_out(v6_peer)
    assert set(out6) == {net("fd00:10::/122")}
    assert out6[net("fd00:10::/122")].next_hop == ip("fd00::1")


def test_an_ipv6_peer_gets_nothing_while_we_have_no_ipv6_address() -> None:
    v6_peer = PeerIntent(address=ip("fd00::2"), peer_as=64512, local_as=64512,
                         type="global")
    base = BGPIntent(node="me", router_id=ipaddress.IPv4Address("10.0.0.1"), local_as=64512,
                     address=ip("10.0.0.1"), peers=(v6_peer,),
                     announce=(Announcement(prefix=net("fd00:10::/122")),))
    r, _ = rib(base)
    assert r.wanted_out(v6_peer) == {}  # never an IPv4 next hop on an IPv6 route


DUAL_STACK = BGPIntent(
    node="me", router_id=ipaddress.IPv4Address("10.0.0.1"), local_as=64512,
    address=ip("10.0.0.1"), address6=ipaddress.IPv6Address("fd00::1"),
    peers=(mesh("10.0.0.2"), mesh("fd00::2", rr_client=True), mesh("fd00::3", rr_client=True),
           mesh("10.0.0.3", rr_client=True)),
    announce=(Announcement(prefix=net("fd00:65::/122")),),
    accept=(net("10.65.0.0/16"), net("fd00:65::/48")), own=(net("fd00:65::/122"),),
)


def test_ipv6_paths_pass_the_same_import_policy_as_ipv4_ones() -> None:
    r, _ = rib(DUAL_STACK)
    v6 = ip("fd00::2")
    announce(r, v6, net("fd00:65::40/122"), net("fd00:65::/122"), net("fd00:65::8/125"),
             net("fd00:99::/64"), net("::/0"))
    assert r.learned() == {net("fd00:65::40/122"): (v6, v6)}
    assert r.counters(v6).rejected == {"own block": 2, "outside pools": 1, "default route": 1}


def test_a_reflector_reflects_ipv6_paths_to_ipv6_peers_only() -> None:
    r, _ = rib(replace(DUAL_STACK, cluster_id=ipaddress.IPv4Address("224.0.0.1")))
    announce(r, ip("fd00::2"), net("fd00:65::40/122"))
    to_v6 = r.wanted_out(mesh("fd00::3", rr_client=True))
    assert set(to_v6) == {net("fd00:65::/122"), net("fd00:65::40/122")}
    assert to_v6[net("fd00:65::40/122")].next_hop == ip("fd00::2")  # unchanged (RFC 4456)
    assert to_v6[net("fd00:65::40/122")].cluster_list == ("224.0.0.1",)
    assert r.wanted_out(mesh("10.0.0.3", rr_client=True)) == {}


def test_a_node_that_is_no_reflector_passes_on_nothing_it_learned() -> None:
    r, _ = rib()
    announce(r, A, POOL_BLOCK)
    assert set(r.wanted_out(mesh("10.0.0.3"))) == {net("10.65.0.0/26")}


# RFC 4456 reflection: we are a reflector in cluster 224.0.0.1; A and B are clients, C is a
# non-client (another reflector of our cluster), TOR an eBGP peer.
CLIENT_A = mesh("10.0.0.2", rr_client=True)
CLIENT_B = mesh("10.0.0.3", rr_client=True)
NON_CLIENT = mesh("10.0.0.4")
RR_INTENT = intent(CLIENT_A, CLIENT_B, NON_CLIENT, TOR_PEER, cluster_id="224.0.0.1")


def test_a_reflector_sends_a_client_route_to_every_other_ibgp_peer_but_not_back() -> None:
    r, _ = rib(RR_INTENT)
    announce(r, A, POOL_BLOCK)
    assert POOL_BLOCK in r.wanted_out(CLIENT_B)
    assert POOL_BLOCK in r.wanted_out(NON_CLIENT)
    assert POOL_BLOCK not in r.wanted_out(CLIENT_A)
    assert POOL_BLOCK not in r.wanted_out(TOR_PEER)
    # Not back to the sender even when the route originated elsewhere.
    announce(r, A, OTHER_BLOCK, attrs=Attributes(originator_id="10.0.0.77"))
    assert OTHER_BLOCK not in r.wanted_out(CLIENT_A)
    assert OTHER_BLOCK in r.wanted_out(CLIENT_B)


def test_a_reflector_sends_a_non_client_route_to_clients_only() -> None:
    r, _ = rib(RR_INTENT)
    other_non_client = mesh("10.0.0.5")
    r.set_intent(intent(CLIENT_A, CLIENT_B, NON_CLIENT, other_non_client,
                        cluster_id="224.0.0.1"))
    r.on_open(ip("10.0.0.5"), "10.0.0.5", 120)
    announce(r, C, POOL_BLOCK)
    assert POOL_BLOCK in r.wanted_out(CLIENT_A)
    assert POOL_BLOCK in r.wanted_out(CLIENT_B)
    assert POOL_BLOCK not in r.wanted_out(other_non_client)
    assert POOL_BLOCK not in r.wanted_out(NON_CLIENT)


def test_a_reflected_route_gets_an_originator_id_and_our_cluster_id_in_front() -> None:
    r, _ = rib(RR_INTENT)
    announce(r, A, POOL_BLOCK, attrs=Attributes(local_pref=150, communities=("65000:1",)))
    route = r.wanted_out(CLIENT_B)[POOL_BLOCK]
    assert route.originator_id == "10.0.0.2"  # the client's router ID
    assert route.cluster_list == ("224.0.0.1",)
    assert route.next_hop == A  # next hop unchanged
    assert (route.local_pref, route.communities) == (150, ("65000:1",))

    # A path that was already reflected keeps its originator; our cluster goes first.
    announce(r, A, OTHER_BLOCK, attrs=Attributes(originator_id="10.0.0.77",
                                                 cluster_list=("224.0.0.9",)))
    again = r.wanted_out(CLIENT_B)[OTHER_BLOCK]
    assert again.originator_id == "10.0.0.77"
    assert again.cluster_list == ("224.0.0.1", "224.0.0.9")


def test_a_reflected_route_is_not_sent_to_the_peer_that_originated_it() -> None:
    r, _ = rib(RR_INTENT)
    announce(r, A, POOL_BLOCK, attrs=Attributes(originator_id="10.0.0.3"))  # B's route
    assert POOL_BLOCK not in r.wanted_out(CLIENT_B)
    assert POOL_BLOCK in r.wanted_out(NON_CLIENT)


def test_next_hop_self_replaces_the_next_hop_of_reflected_routes() -> None:
    self_b = mesh("10.0.0.3", rr_client=True, next_hop_mode="Self")
    r, _ = rib(intent(CLIENT_A, self_b, cluster_id="224.0.0.1"))
    announce(r, A, POOL_BLOCK)
    assert r.wanted_out(self_b)[POOL_BLOCK].next_hop == ip("10.0.0.1")


def test_our_own_announcement_wins_over_a_reflected_path_for_the_same_prefix() -> None:
    r, _ = rib(intent(CLIENT_A, CLIENT_B, cluster_id="224.0.0.1",
                      announce=("10.65.0.0/26", "10.65.1.0/26"), own=("10.65.0.0/26",)))
    announce(r, A, POOL_BLOCK)
    route = r.wanted_out(CLIENT_B)[POOL_BLOCK]
    assert route.next_hop == ip("10.0.0.1") and route.originator_id is None


def test_ebgp_learned_paths_are_not_reflected() -> None:
    r, _ = rib(RR_INTENT)
    announce(r, TOR, POOL_BLOCK)
    assert POOL_BLOCK not in r.wanted_out(CLIENT_A)


def test_export_filters_apply_to_reflected_routes() -> None:
    filtered = mesh("10.0.0.3", rr_client=True, export_rules=(
        FilterRule(action="Reject", cidr=POOL_BLOCK, match_operator="Equal"),))
    r, _ = rib(intent(CLIENT_A, filtered, cluster_id="224.0.0.1"))
    announce(r, A, POOL_BLOCK, OTHER_BLOCK)
    assert set(r.wanted_out(filtered)) == {net("10.65.0.0/26"), OTHER_BLOCK}
