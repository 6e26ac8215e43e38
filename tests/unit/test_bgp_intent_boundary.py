"""BGPIntent.from_json: the boundary where the agent's JSON is checked for the sidecar."""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest

from bgp.intent import (
    Announcement,
    BGPIntent,
    FilterRule,
    IntentError,
    PeerIntent,
)

Edit = Callable[[dict[str, Any]], None]


def _full_intent() -> BGPIntent:
    """An intent with every field set to something other than its default."""
    return BGPIntent(
        node="node-1",
        router_id=ipaddress.IPv4Address("10.99.0.1"),
        local_as=64512,
        address=ipaddress.ip_address("10.99.0.1"),
        listen_port=1790,
        cluster_id=ipaddress.IPv4Address("244.0.0.1"),
        address6=ipaddress.IPv6Address("fd99::1"),
        peers=(
            PeerIntent(
                address=ipaddress.ip_address("10.99.0.2"), peer_as=65000, local_as=64513,
                type="global", name="tor", port=1791, passive=True, password="s3cret",
                source_address=ipaddress.ip_address("10.99.0.1"), restart_time=300,
                keepalive_time=20, ttl_security=2, next_hop_mode="Keep", rr_client=True,
                is_node=False,
                import_rules=(FilterRule(action="Accept",
                                         cidr=ipaddress.ip_network("10.200.0.0/16"),
                                         match_operator="In", min_len=16, max_len=26),),
                export_rules=(FilterRule(action="Reject"),),
            ),
            PeerIntent(address=ipaddress.ip_address("10.99.0.3"), peer_as=64512,
                       local_as=64512, type="node-to-node mesh", name="node-3", is_node=True),
        ),
        announce=(Announcement(prefix=ipaddress.ip_network("10.200.1.0/26"),
                               communities=("64512:100", "64512:1:2")),
                  Announcement(prefix=ipaddress.ip_network("fd00:200:1::/64"))),
        accept=(ipaddress.ip_network("10.200.0.0/16"), ipaddress.ip_network("10.96.0.0/12")),
        own=(ipaddress.ip_network("10.200.1.0/26"),),
    )


def _wire() -> dict[str, Any]:
    """The intent as it arrives: JSON text decoded."""
    raw: dict[str, Any] = json.loads(json.dumps(_full_intent().to_json()))
    return raw


def _edited(edit: Edit) -> dict[str, Any]:
    raw = copy.deepcopy(_wire())
    edit(raw)
    return raw


def _set(path: tuple[str | int, ...], value: Any) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        target: Any = raw
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _drop(path: tuple[str | int, ...]) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        target: Any = raw
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


# -- the good path -------------------------------------------------------------------------------
def test_wire_form_round_trips_every_field() -> None:
    intent = _full_intent()
    assert BGPIntent.from_json(_wire()) == intent


def test_optional_fields_may_be_null_or_absent() -> None:
    raw = _wire()
    raw.update(cluster_id=None, address6="")
    del raw["announce"], raw["accept"], raw["own"]
    peer = raw["peers"][1]
    peer.update(password=None, source_address=None, keepalive_time=None, name=None)
    del peer["passive"], peer["rr_client"], peer["next_hop_mode"], peer["import_rules"]
    intent = BGPIntent.from_json(raw)
    assert intent.cluster_id is None
    assert intent.address6 is None
    assert intent.announce == () and intent.accept == () and intent.own == ()
    mesh = intent.peers[1]
    assert (mesh.password, mesh.source_address, mesh.keepalive_time, mesh.name) == (
        None, None, None, "")
    assert (mesh.passive, mesh.rr_client, mesh.next_hop_mode) == (False, False, "Auto")
    assert mesh.import_rules == ()


def test_keepalive_zero_is_kept_apart_from_absent() -> None:
    intent = BGPIntent.from_json(_edited(_set(("peers", 0, "keepalive_time"), 0)))
    assert intent.peers[0].keepalive_time == 0


# -- bad input: IntentError naming the field ----------------------------------------------------
_BAD: list[tuple[str, Edit, str]] = [
    ("node missing", _drop(("node",)), "intent.node: missing"),
    ("node empty", _set(("node",), ""), "intent.node: expected a non-empty string"),
    ("router id not an address", _set(("router_id",), "node-1"), "intent.router_id"),
    ("router id IPv6", _set(("router_id",), "fd99::1"), "intent.router_id"),
    ("address not a string", _set(("address",), 167837953), "intent.address"),
    ("address6 IPv4", _set(("address6",), "10.99.0.1"), "intent.address6"),
    ("cluster id not an address", _set(("cluster_id",), "rr-1"), "intent.cluster_id"),
    ("local AS zero", _set(("local_as",), 0), "intent.local_as"),
    ("local AS above 32 bits", _set(("local_as",), 2**32), "intent.local_as"),
    ("local AS as text", _set(("local_as",), "64512"), "intent.local_as"),
    ("listen port zero", _set(("listen_port",), 0), "intent.listen_port"),
    ("listen port true", _set(("listen_port",), True), "intent.listen_port"),
    ("listen port missing", _drop(("listen_port",)), "intent.listen_port: missing"),
    ("peers not a list", _set(("peers",), {"10.99.0.2": {}}), "intent.peers: expected a list"),
    ("peer not an object", _set(("peers", 1), "10.99.0.3"), "intent.peers[1]: expected an object"),
    ("peer type unknown", _set(("peers", 1, "type"), "mesh"), "intent.peers[1].type"),
    ("peer address bad", _set(("peers", 0, "address"), "10.99.0.256"), "intent.peers[0].address"),
    ("peer AS missing", _drop(("peers", 0, "peer_as")), "intent.peers[0].peer_as: missing"),
    ("peer port too high", _set(("peers", 0, "port"), 65536), "intent.peers[0].port"),
    ("peer source address bad", _set(("peers", 0, "source_address"), "eth0"),
     "intent.peers[0].source_address"),
    ("peer restart time negative", _set(("peers", 0, "restart_time"), -1),
     "intent.peers[0].restart_time"),
    ("peer keepalive as text", _set(("peers", 0, "keepalive_time"), "20s"),
     "intent.peers[0].keepalive_time"),
    ("peer ttl security above 255", _set(("peers", 0, "ttl_security"), 256),
     "intent.peers[0].ttl_security"),
    ("peer password not text", _set(("peers", 0, "password"), 1234),
     "intent.peers[0].password"),
    ("peer passive as text", _set(("peers", 0, "passive"), "false"), "intent.peers[0].passive"),
    ("peer rr client as number", _set(("peers", 0, "rr_client"), 1), "intent.peers[0].rr_client"),
    ("peer next hop mode unknown", _set(("peers", 0, "next_hop_mode"), "Sideways"),
     "intent.peers[0].next_hop_mode"),
    ("rule action unknown", _set(("peers", 0, "import_rules", 0, "action"), "Drop"),
     "intent.peers[0].import_rules[0].action"),
    ("rule operator unknown", _set(("peers", 0, "import_rules", 0, "match_operator"), "Like"),
     "intent.peers[0].import_rules[0].match_operator"),
    ("rule cidr bad", _set(("peers", 0, "import_rules", 0, "cidr"), "10.200.0.1/16"),
     "intent.peers[0].import_rules[0].cidr"),
    ("rule max length too long", _set(("peers", 0, "import_rules", 0, "max_len"), 129),
     "intent.peers[0].import_rules[0].max_len"),
    ("rule not an object", _set(("peers", 0, "export_rules", 0), "Reject"),
     "intent.peers[0].export_rules[0]"),
    ("announce prefix bad", _set(("announce", 0, "prefix"), "10.200.1.0/33"),
     "intent.announce[0].prefix"),
    ("announce prefix missing", _drop(("announce", 1, "prefix")), "intent.announce[1].prefix"),
    ("announce communities not a list", _set(("announce", 0, "communities"), "64512:100"),
     "intent.announce[0].communities"),
    ("announce community not text", _set(("announce", 0, "communities"), [64512]),
     "intent.announce[0].communities[0]"),
    ("announce community without colon", _set(("announce", 0, "communities"), ["no-export"]),
     "intent.announce[0].communities[0]"),
    ("accept not a network", _set(("accept",), ["pool-1"]), "intent.accept"),
    ("own not a list", _set(("own",), "10.200.1.0/26"), "intent.own: expected a list"),
]


@pytest.mark.parametrize(("edit", "field"), [(e, f) for _, e, f in _BAD],
                         ids=[name for name, _, _ in _BAD])
def test_bad_field_raises_intent_error_naming_it(edit: Edit, field: str) -> None:
    with pytest.raises(IntentError) as caught:
        BGPIntent.from_json(_edited(edit))
    assert str(caught.value).startswith(field), str(caught.value)


@pytest.mark.parametrize("raw", [[], "intent", None, 42])
def test_intent_that_is_not_an_object_is_refused(raw: Any) -> None:
    with pytest.raises(IntentError, match=r"^intent: expected an object"):
        BGPIntent.from_json(raw)
