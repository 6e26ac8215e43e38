"""parse_line: ExaBGP 5 API lines into typed events.

The fixture lines are messages ExaBGP 5.0.15 really wrote to its API process on this machine
(BIRD 2 as the peer), kept verbatim from the shared notes so that the quirks we depend on — the
API version in `exabgp`, the as-path object, community pairs, add-path `path-information`, IPv6
NLRIs repeated under a link-local next hop, End-of-RIB as an update — stay pinned.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from bgp.exabgp_json import (
    API_VERSION,
    Ack,
    Attributes,
    EndOfRib,
    MessageError,
    NeighborInfo,
    NeighborList,
    Notification,
    OpenReceived,
    PeerState,
    RouteUpdate,
    parse_line,
)

# -- measured ExaBGP 5.0.15 output ------------------------------------------------------------
_HEAD = '"exabgp": "5.0.0", "time": 1795327809.3, "host" : "vm", "pid" : 12799, "ppid" : 1'
_NEIGHBOR_2 = ('"address": { "local": "10.99.0.1", "peer": "10.99.0.2" }, '
               '"asn": { "local": 64512, "peer": 64512 }, "router-id": "10.99.0.1"')

STATE_UP = ('{ ' + _HEAD + ', "counter": 3, "type": "state", "neighbor": { ' + _NEIGHBOR_2
            + ' , "state": "up" } }')
STATE_DOWN = ('{ ' + _HEAD + ', "counter": 6, "type": "state", "neighbor": { ' + _NEIGHBOR_2
              + ' , "state": "down", "reason": "stop, message [shutting down]" } }')
OPEN_RECEIVE = (
    '{ ' + _HEAD + ', "counter": 2, "type": "open", "neighbor": { ' + _NEIGHBOR_2
    + ' , "direction": "receive", "open": { "version": 4, "asn": 64512, "hold_time": 90, '
    '"router_id": "10.99.0.2", "capabilities": { '
    '"1": { "name": "multiprotocol", "families": [ "ipv4/unicast" ] }, '
    '"2": { "name": "route-refresh", "variant": "RFC" }, '
    '"64": { "name": "graceful restart", "time": 120, '
    '"address-family-flags": { "ipv4/unicast": [ ] }, "restart-flags": [ ]  }, '
    '"65": { "name": "asn4", "asn4": 64512 }, '
    '"69": { "name": "addpath", "ipv4/unicast": "receive" }, '
    '"70": { "name": "enhanced-route-refresh" }, '
    '"71": { "name": "unknown", "iana": "unassigned", "value": 71, "raw": "" } } } } }'
)
ANNOUNCE_FROM_BIRD = (
    '{ ' + _HEAD + ', "counter": 4, "type": "update", "neighbor": { ' + _NEIGHBOR_2
    + ' , "direction": "receive", "message": { "update": { '
    '"attribute": { "origin": "igp", "local-preference": 100 }, '
    '"announce": { "ipv4 unicast": { "10.99.0.2": [ { "nlri": "10.200.2.0/26" } ] } } } } } }'
)
WITHDRAW_FROM_BIRD = (
    '{ ' + _HEAD + ', "counter": 6, "type": "update", "neighbor": { ' + _NEIGHBOR_2
    + ' , "direction": "receive", "message": { "update": { '
    '"withdraw": { "ipv4 unicast": [ { "nlri": "10.200.2.0/26" } ] } } } } }'
)
END_OF_RIB = (
    '{ ' + _HEAD + ', "counter": 5, "type": "update", "neighbor": { ' + _NEIGHBOR_2
    + ' , "direction": "receive", "message": { "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }'
)
ANNOUNCE_IPV6 = (
    '{ ' + _HEAD + ', "counter": 3, "type": "update", "neighbor": { '
    '"address": { "local": "fd99::1", "peer": "fd99::2" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "10.99.0.1" , '
    '"direction": "receive", "message": { "update": { '
    '"attribute": { "origin": "igp", "local-preference": 100 }, '
    '"announce": { "ipv6 unicast": { "fd99::2": [ { "nlri": "fd00:200:2::/64" } ], '
    '"fe80::e087:1dff:fecf:c012": [ { "nlri": "fd00:200:2::/64" } ] } } } } } }'
)
ANNOUNCE_REFLECTED_ADDPATH = (
    '{ ' + _HEAD + ', "counter": 6, "type": "update", "neighbor": { '
    '"address": { "local": "10.99.0.4", "peer": "10.99.0.1" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "10.99.0.4" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", '
    '"local-preference": 100, "originator-id": "10.99.0.3", "cluster-list": [ "10.99.0.1" ] }, '
    '"announce": { "ipv4 unicast": { "10.99.0.3": [ '
    '{ "nlri": "10.200.3.0/26", "path-information": "0.0.0.0" } ] } } } } } }'
)
ANNOUNCE_RICH_ATTRS = (
    '{ ' + _HEAD + ', "counter": 14, "type": "update", "neighbor": { '
    '"address": { "local": "10.99.0.1", "peer": "10.99.0.4" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "10.99.0.1" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", '
    '"as-path": {"0": {"element": "as-sequence", "value": [65001, 65002]}}, "med": 50, '
    '"local-preference": 150, "community": [ [ 64512, 1 ], [ 65535, 65281 ] ], '
    '"originator-id": "10.99.0.9", "cluster-list": [ "10.99.0.8", "10.99.0.7" ], '
    '"large-community": [ [ 64512, 1 , 2 ] ] }, '
    '"announce": { "ipv4 unicast": { "10.99.0.4": [ '
    '{ "nlri": "10.210.0.0/26", "path-information": "0.0.0.0" } ] } } } } } }'
)
NOTIFICATION_RECEIVE = (
    '{ ' + _HEAD + ', "counter": 6, "type": "notification", "neighbor": { '
    '"address": { "local": "10.99.0.1", "peer": "10.99.0.3" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "10.99.0.1" , '
    '"direction": "receive", "notification": { "code": 6, "subcode": 6, "data": "0x", '
    '"message": "" }  } }'
)
SHUTDOWN = '{ ' + _HEAD + ', "type": "notification", "notification": "shutdown" }'

PEER_2 = ip_address("10.99.0.2")


def _edit(line: str, change: Callable[[dict[str, Any]], None]) -> str:
    """A fixture line with one thing changed, re-encoded as one line."""
    msg: dict[str, Any] = json.loads(line)
    change(msg)
    return json.dumps(msg)


def _update_body(msg: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = msg["neighbor"]["message"]["update"]
    return body


# -- acknowledgements and noise ------------------------------------------------------------------
@pytest.mark.parametrize(("line", "ok"), [("done", True), ("error", False),
                                          ("done\n", True), ("  error \r\n", False)])
def test_plain_done_and_error_lines_are_acks(line: str, ok: bool) -> None:
    assert parse_line(line) == Ack(ok=ok)


@pytest.mark.parametrize("line", ["", "\n", "reload in progress", "shutdown in progress\n"])
def test_blank_and_in_progress_lines_are_ignored(line: str) -> None:
    assert parse_line(line) is None


# -- API version pin ----------------------------------------------------------------------------
def test_exabgp_field_is_the_api_version_we_pin() -> None:
    assert API_VERSION == "5.0.0"
    assert isinstance(parse_line(STATE_UP), PeerState)


@pytest.mark.parametrize("version", ["4.0.1", "5.0.15", None])
def test_other_api_version_is_refused_with_the_version_named(version: str | None) -> None:
    line = _edit(STATE_UP, lambda m: m.__setitem__("exabgp", version))
    with pytest.raises(MessageError, match="API version"):
        parse_line(line)


def test_missing_api_version_is_refused() -> None:
    line = _edit(STATE_UP, lambda m: m.pop("exabgp"))
    with pytest.raises(MessageError, match="API version"):
        parse_line(line)


# -- state ---------------------------------------------------------------------------------------
def test_state_up_is_a_peer_state_for_the_peer_address() -> None:
    assert parse_line(STATE_UP) == PeerState(peer=PEER_2, state="up", reason="")


def test_state_down_carries_the_reason() -> None:
    assert parse_line(STATE_DOWN) == PeerState(
        peer=PEER_2, state="down", reason="stop, message [shutting down]")


@pytest.mark.parametrize("state", ["connected", "fsm"])
def test_connected_and_fsm_state_events_are_noise(state: str) -> None:
    line = _edit(STATE_UP, lambda m: m["neighbor"].__setitem__("state", state))
    assert parse_line(line) is None


def test_unknown_state_is_reported() -> None:
    line = _edit(STATE_UP, lambda m: m["neighbor"].__setitem__("state", "sideways"))
    with pytest.raises(MessageError, match="unknown state 'sideways'"):
        parse_line(line)


# -- open ----------------------------------------------------------------------------------------
def test_received_open_gives_router_id_asn_and_graceful_restart_time() -> None:
    assert parse_line(OPEN_RECEIVE) == OpenReceived(
        peer=PEER_2, router_id="10.99.0.2", asn=64512, restart_time=120)


def test_open_without_graceful_restart_capability_has_restart_time_zero() -> None:
    line = _edit(OPEN_RECEIVE,
                 lambda m: m["neighbor"]["open"]["capabilities"].pop("64"))
    event = parse_line(line)
    assert isinstance(event, OpenReceived)
    assert event.restart_time == 0


def test_open_we_sent_is_ignored() -> None:
    line = _edit(OPEN_RECEIVE, lambda m: m["neighbor"].__setitem__("direction", "send"))
    assert parse_line(line) is None


# -- updates -------------------------------------------------------------------------------------
def test_announce_from_bird_gives_prefix_with_its_next_hop_and_local_pref() -> None:
    assert parse_line(ANNOUNCE_FROM_BIRD) == RouteUpdate(
        peer=PEER_2,
        announced=((ip_network("10.200.2.0/26"), PEER_2),),
        withdrawn=(),
        attributes=Attributes(local_pref=100, origin="igp"),
    )


def test_withdraw_gives_prefix_without_announcements() -> None:
    event = parse_line(WITHDRAW_FROM_BIRD)
    assert isinstance(event, RouteUpdate)
    assert event.peer == PEER_2
    assert event.withdrawn == (ip_network("10.200.2.0/26"),)
    assert event.announced == ()


def test_compact_nlris_read_like_the_object_form() -> None:
    """`exabgp_api_compact` (which wren-bgp sets) writes plain strings for unicast NLRIs."""
    compact = ANNOUNCE_FROM_BIRD.replace('{ "nlri": "10.200.2.0/26" }', '"10.200.2.0/26"')
    assert compact != ANNOUNCE_FROM_BIRD
    assert parse_line(compact) == parse_line(ANNOUNCE_FROM_BIRD)
    compact = WITHDRAW_FROM_BIRD.replace('{ "nlri": "10.200.2.0/26" }', '"10.200.2.0/26"')
    assert compact != WITHDRAW_FROM_BIRD
    assert parse_line(compact) == parse_line(WITHDRAW_FROM_BIRD)


def test_end_of_rib_update_is_parsed_as_eor_not_as_route() -> None:
    assert parse_line(END_OF_RIB) == EndOfRib(peer=PEER_2, family="ipv4 unicast")


def test_ipv6_nlri_repeated_under_link_local_next_hop_is_taken_once_with_global_hop() -> None:
    event = parse_line(ANNOUNCE_IPV6)
    assert isinstance(event, RouteUpdate)
    assert event.peer == ip_address("fd99::2")
    assert event.announced == ((ip_network("fd00:200:2::/64"), ip_address("fd99::2")),)


def test_add_path_nlri_with_path_information_is_read_as_plain_prefix() -> None:
    event = parse_line(ANNOUNCE_REFLECTED_ADDPATH)
    assert isinstance(event, RouteUpdate)
    assert event.peer == ip_address("10.99.0.1")
    assert event.announced == ((ip_network("10.200.3.0/26"), ip_address("10.99.0.3")),)


def test_reflected_route_keeps_originator_id_and_cluster_list() -> None:
    event = parse_line(ANNOUNCE_REFLECTED_ADDPATH)
    assert isinstance(event, RouteUpdate)
    assert event.attributes.originator_id == "10.99.0.3"
    assert event.attributes.cluster_list == ("10.99.0.1",)


def test_rich_attributes_as_path_object_community_pairs_and_large_communities() -> None:
    event = parse_line(ANNOUNCE_RICH_ATTRS)
    assert isinstance(event, RouteUpdate)
    assert event.attributes == Attributes(
        local_pref=150,
        med=50,
        as_path=(65001, 65002),
        communities=("64512:1", "65535:65281", "64512:1:2"),
        originator_id="10.99.0.9",
        cluster_list=("10.99.0.8", "10.99.0.7"),
        origin="igp",
    )


def test_as_path_segments_are_joined_in_numeric_segment_order() -> None:
    # "10" sorts before "2" as text; segments must follow their index.
    def two_segments(m: dict[str, Any]) -> None:
        _update_body(m)["attribute"]["as-path"] = {
            "10": {"element": "as-sequence", "value": [65010]},
            "2": {"element": "as-sequence", "value": [65002, 65003]},
        }
    event = parse_line(_edit(ANNOUNCE_RICH_ATTRS, two_segments))
    assert isinstance(event, RouteUpdate)
    assert event.attributes.as_path == (65002, 65003, 65010)


def test_route_without_attributes_gets_defaults() -> None:
    line = _edit(ANNOUNCE_FROM_BIRD, lambda m: _update_body(m).pop("attribute"))
    event = parse_line(line)
    assert isinstance(event, RouteUpdate)
    assert event.attributes == Attributes()


def test_non_unicast_families_are_skipped_but_unicast_in_same_update_kept() -> None:
    def add_flow(m: dict[str, Any]) -> None:
        _update_body(m)["announce"]["ipv4 flow"] = {"no-nexthop": [{"destination": "x"}]}
        _update_body(m)["withdraw"] = {"ipv4 flow": [{"destination": "y"}],
                                       "ipv4 unicast": [{"nlri": "10.200.9.0/26"}]}
    event = parse_line(_edit(ANNOUNCE_FROM_BIRD, add_flow))
    assert isinstance(event, RouteUpdate)
    assert event.announced == ((ip_network("10.200.2.0/26"), PEER_2),)
    assert event.withdrawn == (ip_network("10.200.9.0/26"),)


def test_update_we_sent_is_ignored() -> None:
    line = _edit(ANNOUNCE_FROM_BIRD, lambda m: m["neighbor"].__setitem__("direction", "send"))
    assert parse_line(line) is None


# -- notifications and other types ---------------------------------------------------------------
def test_received_notification_gives_code_subcode_and_data() -> None:
    assert parse_line(NOTIFICATION_RECEIVE) == Notification(
        peer=ip_address("10.99.0.3"), code=6, subcode=6, data="0x")


def test_exabgp_shutdown_notice_without_neighbor_is_not_reported_as_bad() -> None:
    assert parse_line(SHUTDOWN) is None


@pytest.mark.parametrize("kind", ["keepalive", "signal", "negotiated", "operational", "refresh"])
def test_message_types_we_do_not_use_are_ignored(kind: str) -> None:
    line = _edit(STATE_UP, lambda m: m.__setitem__("type", kind))
    assert parse_line(line) is None


def test_unknown_message_type_is_reported() -> None:
    line = _edit(STATE_UP, lambda m: m.__setitem__("type", "teleport"))
    with pytest.raises(MessageError, match="unknown message type 'teleport'"):
        parse_line(line)


# -- `show neighbor json` --------------------------------------------------------------------------
def test_show_neighbor_reply_lists_every_peer_with_its_fsm_state() -> None:
    reply = json.dumps([
        {"state": "up", "fsm": "ESTABLISHED",
         "local": {"address": "10.99.0.1", "as": 64512, "id": "10.99.0.1"},
         "peer": {"address": "10.99.0.2", "as": 64512, "id": "10.99.0.2"}},
        {"state": "down", "fsm": "ACTIVE",
         "local": {"address": "10.99.0.1", "as": 64512, "id": "10.99.0.1"},
         "peer": {"address": "fd99::3", "as": 64512, "id": None}},
    ])
    assert parse_line(reply) == NeighborList(neighbors=(
        NeighborInfo(peer=PEER_2, up=True, fsm="ESTABLISHED", router_id="10.99.0.2"),
        NeighborInfo(peer=ip_address("fd99::3"), up=False, fsm="ACTIVE", router_id=""),
    ))


def test_show_neighbor_reply_with_no_peers_is_an_empty_list() -> None:
    assert parse_line("[]") == NeighborList(neighbors=())


# -- malformed input: reported as MessageError, never another exception --------------------------
def _set_update(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: _update_body(m).__setitem__(key, value)


def _set_attr(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: _update_body(m)["attribute"].__setitem__(key, value)


def _note_in_message_as_text(msg: dict[str, Any]) -> None:
    del msg["neighbor"]["notification"]
    msg["neighbor"]["message"] = "x"


_MALFORMED: list[tuple[str, str]] = [
    ("not json", "neighbor 10.0.0.1 up"),
    ("cut off", ANNOUNCE_FROM_BIRD[:80]),
    ("json string", '"done"'),
    ("json number", "42"),
    ("no neighbor", _edit(STATE_UP, lambda m: m.pop("neighbor"))),
    ("bad peer address",
     _edit(STATE_UP, lambda m: m["neighbor"]["address"].__setitem__("peer", "10.99.0.300"))),
    ("no peer address", _edit(STATE_UP, lambda m: m["neighbor"]["address"].pop("peer"))),
    ("bad nlri", _edit(ANNOUNCE_FROM_BIRD, lambda m: _update_body(m)["announce"]["ipv4 unicast"]
                       .__setitem__("10.99.0.2", [{"nlri": "10.200.2.0/99"}]))),
    ("nlri with host bits", _edit(ANNOUNCE_FROM_BIRD, lambda m: _update_body(m)["announce"]
                                  ["ipv4 unicast"].__setitem__("10.99.0.2",
                                                               [{"nlri": "10.200.2.1/26"}]))),
    ("nlri item without nlri", _edit(ANNOUNCE_FROM_BIRD, lambda m: _update_body(m)["announce"]
                                     ["ipv4 unicast"].__setitem__("10.99.0.2", [{}]))),
    ("bad next hop", _edit(ANNOUNCE_FROM_BIRD, lambda m: _update_body(m).__setitem__(
        "announce", {"ipv4 unicast": {"nowhere": [{"nlri": "10.200.2.0/26"}]}}))),
    ("family not an object", _edit(ANNOUNCE_FROM_BIRD, lambda m: _update_body(m).__setitem__(
        "announce", {"ipv4 unicast": ["10.200.2.0/26"]}))),
    ("nlri list not a list", _edit(WITHDRAW_FROM_BIRD, _set_update(
        "withdraw", {"ipv4 unicast": {"nlri": "10.200.2.0/26"}}))),
    ("announce is a list", _edit(ANNOUNCE_FROM_BIRD, _set_update("announce", [1]))),
    ("withdraw is a list", _edit(WITHDRAW_FROM_BIRD, _set_update("withdraw", ["10.0.0.0/8"]))),
    ("attribute not an object", _edit(ANNOUNCE_FROM_BIRD, _set_update("attribute", "igp"))),
    ("as-path element not a number", _edit(ANNOUNCE_RICH_ATTRS, _set_attr(
        "as-path", {"0": {"element": "as-sequence", "value": ["AS65001"]}}))),
    ("as-path value not a list", _edit(ANNOUNCE_RICH_ATTRS, _set_attr(
        "as-path", {"0": {"element": "as-sequence", "value": 65001}}))),
    ("community not a list", _edit(ANNOUNCE_RICH_ATTRS, _set_attr("community", 64512))),
    ("eor not an object", _edit(END_OF_RIB, lambda m: m["neighbor"]["message"].__setitem__(
        "eor", "ipv4 unicast"))),
    ("update without message", _edit(ANNOUNCE_FROM_BIRD, lambda m: m["neighbor"].pop("message"))),
    ("notification code not a number", _edit(NOTIFICATION_RECEIVE, lambda m: m["neighbor"]
                                             ["notification"].__setitem__("code", "cease"))),
    ("notification message not an object", _edit(NOTIFICATION_RECEIVE, _note_in_message_as_text)),
    ("open asn null", _edit(OPEN_RECEIVE, lambda m: m["neighbor"]["open"].__setitem__(
        "asn", None))),
    ("graceful restart time not a number", _edit(OPEN_RECEIVE, lambda m: m["neighbor"]["open"]
                                                 ["capabilities"]["64"].__setitem__("time", "x"))),
    ("open body missing", _edit(OPEN_RECEIVE, lambda m: m["neighbor"].pop("open"))),
    ("neighbor list item without peer", '[{"fsm": "ESTABLISHED"}]'),
    ("neighbor list bad address", '[{"fsm": "IDLE", "peer": {"address": "peer-1"}}]'),
]


@pytest.mark.parametrize("line", [line for _, line in _MALFORMED],
                         ids=[name for name, _ in _MALFORMED])
def test_malformed_line_is_reported_as_message_error_and_nothing_else(line: str) -> None:
    # MessageError is the one exception the sidecar logs and skips; anything else escapes.
    with pytest.raises(MessageError) as caught:
        parse_line(line)
    assert type(caught.value) is MessageError
