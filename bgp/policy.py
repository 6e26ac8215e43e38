"""Import and export policy: which learned paths we keep, which of our prefixes a peer gets.

Calico's BIRD filters are the reference: from the cluster's own peers we take only prefixes
inside the IP pools (and the service ranges), never our own blocks or a default route; a
BGPFilter on a peer decides first (first matching rule wins), the default decides the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

from bgp.exabgp_json import Attributes
from bgp.intent import BGPIntent, FilterRule, IPNetwork, PeerIntent
from wren.prefix import inside

__all__ = [
    "Verdict", "attributes_problem", "export_allowed", "import_verdict", "prefix_verdict",
    "rule_matches",
]

Verdict = str  # "accept" or the reason the path was dropped


def rule_matches(rule: FilterRule, prefix: IPNetwork) -> bool:
    if rule.cidr is not None and rule.match_operator is not None:
        if rule.cidr.version != prefix.version:
            return False
        inside_ = inside(prefix, rule.cidr)
        equal = prefix == rule.cidr
        hit = {"Equal": equal, "NotEqual": not equal, "In": inside_,
               "NotIn": not inside_}[rule.match_operator]
        if not hit:
            return False
    if rule.min_len is not None and prefix.prefixlen < rule.min_len:
        return False
    return not (rule.max_len is not None and prefix.prefixlen > rule.max_len)


def _first_rule(rules: Iterable[FilterRule], prefix: IPNetwork) -> str | None:
    for rule in rules:
        if rule_matches(rule, prefix):
            return rule.action
    return None


def import_verdict(intent: BGPIntent, peer: PeerIntent, prefix: IPNetwork,
                   attrs: Attributes) -> Verdict:
    return prefix_verdict(intent, peer, prefix, attributes_problem(intent, peer, attrs))


def attributes_problem(intent: BGPIntent, peer: PeerIntent, attrs: Attributes) -> Verdict | None:
    """The part of the verdict that depends on the path attributes alone: one UPDATE carries
    hundreds of prefixes with the same attributes, so this is judged once for all of them."""
    if attrs.originator_id == str(intent.router_id):
        return "originator is us"  # RFC 4456 loop prevention
    if intent.cluster_id is not None and str(intent.cluster_id) in attrs.cluster_list:
        return "cluster loop"
    if peer.ebgp and peer.local_as in attrs.as_path:
        return "AS path loop"
    return None


def prefix_verdict(intent: BGPIntent, peer: PeerIntent, prefix: IPNetwork,
                   problem: Verdict | None) -> Verdict:
    """The verdict on `prefix`, given what `attributes_problem` found."""
    # Our blocks and anything inside them; a route covering a block (a default route, a pool
    # aggregate) is not ours and is judged like any other (Calico's `net ~ block`).
    for own in intent.own:
        if inside(prefix, own):
            return "own block"
    if problem is not None:
        return problem
    decided = _first_rule(peer.import_rules, prefix) if peer.import_rules else None
    if decided == "Reject":
        return "filter reject"
    if decided == "Accept":
        return "accept"
    if prefix.prefixlen == 0:
        return "default route"
    for net in intent.accept:
        if inside(prefix, net):
            return "accept"
    return "outside pools"


def export_allowed(peer: PeerIntent, prefix: IPNetwork) -> bool:
    return _first_rule(peer.export_rules, prefix) != "Reject"
