"""Import and export policy of the BGP sidecar: which learned paths we keep, and why not."""

from __future__ import annotations

import ipaddress

import pytest

from bgp.exabgp_json import Attributes
from bgp.intent import BGPIntent, FilterRule, IPNetwork, PeerIntent
from bgp.policy import export_allowed, import_verdict, rule_matches

ip = ipaddress.ip_address


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


INTENT = BGPIntent(
    node="n1", router_id=ipaddress.IPv4Address("10.0.0.1"), local_as=64512,
    address=ip("10.0.0.1"),
    accept=(net("10.65.0.0/16"), net("10.96.0.0/12")),
    own=(net("10.65.0.0/26"),),
)
REFLECTOR = BGPIntent(
    node="rr1", router_id=ipaddress.IPv4Address("10.0.0.101"), local_as=64512,
    address=ip("10.0.0.101"), cluster_id=ipaddress.IPv4Address("224.0.0.1"),
    accept=(net("10.65.0.0/16"),),
)
MESH = PeerIntent(address=ip("10.0.0.2"), peer_as=64512, local_as=64512,
                  type="node-to-node mesh", is_node=True)
TOR = PeerIntent(address=ip("192.0.2.1"), peer_as=65100, local_as=64512, type="global")
PLAIN = Attributes()


def with_import(peer: PeerIntent, *rules: FilterRule) -> PeerIntent:
    return PeerIntent(address=peer.address, peer_as=peer.peer_as, local_as=peer.local_as,
                      type=peer.type, import_rules=rules)


# -- import -------------------------------------------------------------------------------------
def test_a_pool_prefix_from_a_mesh_peer_is_accepted() -> None:
    assert import_verdict(INTENT, MESH, net("10.65.1.0/26"), PLAIN) == "accept"


def test_a_service_range_prefix_is_accepted() -> None:
    assert import_verdict(INTENT, MESH, net("10.96.0.10/32"), PLAIN) == "accept"


@pytest.mark.parametrize("prefix", ["10.65.0.0/26", "10.65.0.32/27", "10.65.0.5/32"])
def test_our_own_block_and_anything_inside_it_is_dropped(prefix: str) -> None:
    assert import_verdict(INTENT, MESH, net(prefix), PLAIN) == "own block"


def test_a_route_covering_our_block_is_judged_like_any_other() -> None:
    # An aggregate of the pool or a default route is not ours (Calico matches `net ~ block`).
    assert import_verdict(INTENT, MESH, net("10.65.0.0/16"), PLAIN) == "accept"
    assert import_verdict(INTENT, MESH, net("10.65.0.0/25"), PLAIN) == "accept"
    assert import_verdict(INTENT, MESH, net("0.0.0.0/0"), PLAIN) == "default route"


def test_own_block_is_dropped_even_when_a_filter_would_accept_it() -> None:
    accept_all = with_import(TOR, FilterRule(action="Accept"))
    assert import_verdict(INTENT, accept_all, net("10.65.0.0/26"), PLAIN) == "own block"


def test_a_path_that_carries_our_router_id_as_originator_is_dropped() -> None:
    looped = Attributes(originator_id="10.0.0.1")
    assert import_verdict(INTENT, MESH, net("10.65.1.0/26"), looped) == "originator is us"
    other = Attributes(originator_id="10.0.0.3")
    assert import_verdict(INTENT, MESH, net("10.65.1.0/26"), other) == "accept"


def test_a_reflector_drops_a_path_whose_cluster_list_holds_its_cluster_id() -> None:
    looped = Attributes(originator_id="10.0.0.3", cluster_list=("224.0.0.9", "224.0.0.1"))
    assert import_verdict(REFLECTOR, MESH, net("10.65.1.0/26"), looped) == "cluster loop"
    elsewhere = Attributes(originator_id="10.0.0.3", cluster_list=("224.0.0.9",))
    assert import_verdict(REFLECTOR, MESH, net("10.65.1.0/26"), elsewhere) == "accept"


def test_a_node_that_is_no_reflector_ignores_cluster_lists() -> None:
    reflected = Attributes(originator_id="10.0.0.3", cluster_list=("224.0.0.1",))
    assert import_verdict(INTENT, MESH, net("10.65.1.0/26"), reflected) == "accept"


def test_an_ebgp_path_with_our_as_in_its_as_path_is_a_loop() -> None:
    looped = Attributes(as_path=(65100, 64512, 65200))
    assert import_verdict(INTENT, TOR, net("10.65.1.0/26"), looped) == "AS path loop"
    clean = Attributes(as_path=(65100, 65200))
    assert import_verdict(INTENT, TOR, net("10.65.1.0/26"), clean) == "accept"


def test_the_as_path_loop_check_is_for_ebgp_only() -> None:
    # Over iBGP our own AS is not prepended, so its presence says nothing about a loop.
    path = Attributes(as_path=(64512,))
    assert import_verdict(INTENT, MESH, net("10.65.1.0/26"), path) == "accept"


def test_a_default_route_is_dropped() -> None:
    assert import_verdict(INTENT, MESH, net("0.0.0.0/0"), PLAIN) == "default route"
    assert import_verdict(INTENT, TOR, net("::/0"), PLAIN) == "default route"


@pytest.mark.parametrize("prefix", ["172.16.0.0/24", "10.64.0.0/12", "fd00::/64"])
def test_prefixes_outside_the_pools_and_service_ranges_are_dropped_from_ibgp(
        prefix: str) -> None:
    assert import_verdict(INTENT, MESH, net(prefix), PLAIN) == "outside pools"


def test_a_filter_reject_drops_a_prefix_the_default_would_accept() -> None:
    tor = with_import(TOR, FilterRule(action="Reject", cidr=net("10.65.0.0/16"),
                                      match_operator="In"))
    assert import_verdict(INTENT, tor, net("10.65.1.0/26"), PLAIN) == "filter reject"


def test_a_filter_accept_admits_what_the_default_would_drop() -> None:
    tor = with_import(TOR, FilterRule(action="Accept", cidr=net("0.0.0.0/0"),
                                      match_operator="Equal"),
                      FilterRule(action="Accept", cidr=net("172.16.0.0/12"), match_operator="In"))
    assert import_verdict(INTENT, tor, net("0.0.0.0/0"), PLAIN) == "accept"
    assert import_verdict(INTENT, tor, net("172.16.5.0/24"), PLAIN) == "accept"


def test_the_first_matching_filter_rule_decides() -> None:
    tor = with_import(
        TOR,
        FilterRule(action="Reject", cidr=net("10.65.1.0/26"), match_operator="Equal"),
        FilterRule(action="Accept", cidr=net("10.65.0.0/16"), match_operator="In"),
    )
    assert import_verdict(INTENT, tor, net("10.65.1.0/26"), PLAIN) == "filter reject"
    assert import_verdict(INTENT, tor, net("10.65.2.0/26"), PLAIN) == "accept"


def test_no_matching_filter_rule_leaves_the_default_to_decide() -> None:
    tor = with_import(TOR, FilterRule(action="Accept", cidr=net("192.168.0.0/16"),
                                      match_operator="In"))
    assert import_verdict(INTENT, tor, net("172.16.0.0/24"), PLAIN) == "outside pools"
    assert import_verdict(INTENT, tor, net("10.65.1.0/26"), PLAIN) == "accept"


# -- rule matching ------------------------------------------------------------------------------
@pytest.mark.parametrize(("operator", "prefix", "hit"), [
    ("Equal", "10.65.0.0/16", True),
    ("Equal", "10.65.1.0/24", False),
    ("NotEqual", "10.65.0.0/16", False),
    ("NotEqual", "10.65.1.0/24", True),
    ("In", "10.65.1.0/24", True),
    ("In", "10.65.0.0/16", True),
    ("In", "10.0.0.0/8", False),
    ("In", "10.66.0.0/24", False),
    ("NotIn", "10.66.0.0/24", True),
    ("NotIn", "10.65.1.0/24", False),
])
def test_rule_match_operators(operator: str, prefix: str, hit: bool) -> None:
    rule = FilterRule(action="Accept", cidr=net("10.65.0.0/16"), match_operator=operator)
    assert rule_matches(rule, net(prefix)) is hit


@pytest.mark.parametrize("operator", ["Equal", "NotEqual", "In", "NotIn"])
def test_a_rule_never_matches_a_prefix_of_the_other_family(operator: str) -> None:
    rule = FilterRule(action="Accept", cidr=net("10.65.0.0/16"), match_operator=operator)
    assert not rule_matches(rule, net("fd00::/64"))


@pytest.mark.parametrize(("prefix", "hit"), [
    ("10.65.0.0/23", False), ("10.65.0.0/24", True), ("10.65.0.0/26", True),
    ("10.65.0.0/28", True), ("10.65.0.0/29", False),
])
def test_rule_prefix_length_bounds_are_inclusive(prefix: str, hit: bool) -> None:
    rule = FilterRule(action="Reject", cidr=net("10.65.0.0/16"), match_operator="In",
                      min_len=24, max_len=28)
    assert rule_matches(rule, net(prefix)) is hit


def test_a_rule_without_a_cidr_matches_everything() -> None:
    rule = FilterRule(action="Reject")
    assert rule_matches(rule, net("0.0.0.0/0")) and rule_matches(rule, net("fd00::/8"))


# -- export -------------------------------------------------------------------------------------
def test_export_is_allowed_unless_a_rule_rejects_it() -> None:
    tor = PeerIntent(address=ip("192.0.2.1"), peer_as=65100, local_as=64512, type="global",
                     export_rules=(
                         FilterRule(action="Accept", cidr=net("10.65.0.0/26"),
                                    match_operator="Equal"),
                         FilterRule(action="Reject", cidr=net("10.65.0.0/16"),
                                    match_operator="In"),
                     ))
    assert export_allowed(tor, net("10.65.0.0/26"))
    assert not export_allowed(tor, net("10.65.1.0/26"))
    assert export_allowed(tor, net("10.96.0.0/12"))
    assert export_allowed(TOR, net("10.65.1.0/26"))
