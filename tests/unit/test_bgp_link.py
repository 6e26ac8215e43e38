"""The agent's end of the BGP channel: the sidecar's full set and deltas become the routes the
agent programs; a bad message changes nothing.

Messages come from the sidecar's own encoders fed by a real `Rib`, so the two ends are held
to one format; no socket, no thread.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agent import bgp_link
from agent.agent import LearnedChanges, LearnedRoutes
from agent.bgp_link import BGPChannelLink
from agent.calc.cluster_state import ClusterState
from agent.calc.desired import DesiredDataplane
from bgp.channel import Conn, Listener
from bgp.exabgp_json import Attributes
from bgp.intent import BGPIntent, IPAddress, IPNetwork, PeerIntent
from bgp.sidecar import PUBLISH_AT, Sidecar, SidecarConfig

ip = ipaddress.ip_address
net = ipaddress.ip_network


def packed(prefix: str) -> int:
    """An IPv4 prefix in the channel's form, by hand: `address << 8 | length`."""
    address, length = prefix.split("/")
    return int(ipaddress.IPv4Address(address)) << 8 | int(length)
A, B = ip("10.0.0.2"), ip("10.0.0.3")


def peer(address: IPAddress) -> PeerIntent:
    return PeerIntent(address=address, peer_as=64512, local_as=64512,
                      type="node-to-node mesh", is_node=True)


INTENT = BGPIntent(node="me", router_id=ipaddress.IPv4Address("10.0.0.1"), local_as=64512,
                   address=ip("10.0.0.1"), peers=(peer(A), peer(B)),
                   accept=(net("10.65.0.0/16"), net("fd00:65::/48")))


class Ends:
    """A sidecar (its RIB and encoders) and an agent link, joined by hand."""

    def __init__(self, tmp: Path) -> None:
        self.sidecar = Sidecar(SidecarConfig(node_name="me", run_dir=tmp, exabgp=("exabgp",)))
        self.sidecar.intent = INTENT
        self.sidecar.rib.set_intent(INTENT)
        self.posted: list[object] = []
        self.state = ClusterState("me")  # the agent's side, as its loop applies what is posted
        self.link = BGPChannelLink(node_name="me", socket_path=tmp / "bgp.sock",
                                   post=self.post)

    def post(self, msg: object) -> None:
        self.posted.append(msg)
        if isinstance(msg, LearnedRoutes):
            self.state.set_learned(msg.routes)
        elif isinstance(msg, LearnedChanges):
            self.state.update_learned(msg.changes)

    def announce(self, source: IPAddress, *prefixes: str, hop: str | None = None) -> None:
        self.sidecar.rib.on_update(source, [(net(p), ip(hop) if hop else source)
                                            for p in prefixes], [], Attributes())

    def withdraw(self, source: IPAddress, *prefixes: str) -> None:
        self.sidecar.rib.on_update(source, [], [net(p) for p in prefixes], Attributes())

    def send_full(self) -> None:
        self.link._on_line(json.dumps(self.sidecar._routes_message()))

    def send_delta(self) -> None:
        self.link._on_line(json.dumps(self.sidecar._delta_message(
            self.sidecar.rib.take_changes(), complete=False)))

    def agent_holds(self) -> dict[IPNetwork, IPAddress]:
        return dict(self.state.learned)

    def sidecar_holds(self) -> dict[IPNetwork, IPAddress]:
        return {p: hop for p, (hop, _) in self.sidecar.rib.learned().items()}


@pytest.fixture
def ends(tmp_path: Path) -> Ends:
    return Ends(tmp_path)


def test_deltas_after_the_full_set_keep_the_agent_equal_to_the_sidecar(ends: Ends) -> None:
    ends.announce(A, "10.65.1.0/26", "10.65.2.0/26")
    ends.send_full()
    ends.sidecar.rib.take_changes()  # the full set already carried these
    assert ends.agent_holds() == ends.sidecar_holds() == {
        net("10.65.1.0/26"): A, net("10.65.2.0/26"): A}
    ends.announce(B, "10.65.3.0/26")
    ends.announce(B, "fd00:65:0:1::/64", hop="fd00::3")
    ends.announce(A, "10.65.2.0/26", hop="10.0.0.20")
    ends.withdraw(A, "10.65.1.0/26")
    ends.send_delta()
    assert ends.agent_holds() == ends.sidecar_holds() == {
        net("10.65.2.0/26"): ip("10.0.0.20"), net("10.65.3.0/26"): B,
        net("fd00:65:0:1::/64"): ip("fd00::3")}


def test_a_delta_applied_twice_changes_nothing_more(ends: Ends) -> None:
    ends.send_full()
    ends.announce(A, "10.65.1.0/26", "10.65.2.0/26")
    ends.withdraw(A, "10.65.2.0/26")
    line = json.dumps(ends.sidecar._delta_message(ends.sidecar.rib.take_changes(),
                                                  complete=False))
    ends.link._on_line(line)
    ends.link._on_line(line)
    assert ends.agent_holds() == ends.sidecar_holds() == {net("10.65.1.0/26"): A}


def test_the_agent_reads_grouped_and_per_route_forms_alike(ends: Ends) -> None:
    """A sidecar sends routes grouped by next hop ("via"); the per-route triples ("routes")
    an earlier sidecar sent are still read, also both in one message."""
    ends.link._on_line(json.dumps({"type": "routes", "via": [
        ["10.0.0.2", "10.0.0.2", ["10.65.1.0/26", "10.65.2.0/26"]],
        ["10.0.0.3", "10.0.0.3", ["10.65.3.0/26"]]],
        "routes": [["10.65.4.0/26", "10.0.0.3", "10.0.0.3"]]}))
    assert ends.agent_holds() == {net("10.65.1.0/26"): A, net("10.65.2.0/26"): A,
                                  net("10.65.3.0/26"): B, net("10.65.4.0/26"): B}


def test_ipv4_prefixes_travel_as_ints_and_ipv6_as_text(ends: Ends) -> None:
    """The sidecar packs an IPv4 prefix as `address << 8 | length` (read without parsing
    text); the agent takes ints, IPv4 text and IPv6 text in one list alike."""
    ends.announce(A, "10.65.1.0/26", "10.65.9.128/25")
    ends.announce(A, "fd00:65:0:1::/64", hop="fd00::2")
    ends.withdraw(A, "10.65.9.128/25")
    message = ends.sidecar._delta_message(ends.sidecar.rib.take_changes(), complete=False)
    assert packed("10.65.1.0/26") == 0x0A410100 << 8 | 26
    assert sorted(message["via"]) == [["10.0.0.2", "10.0.0.2", [packed("10.65.1.0/26")]],
                                      ["fd00::2", "10.0.0.2", ["fd00:65:0:1::/64"]]]
    assert message["withdrawn"] == [packed("10.65.9.128/25")]
    ends.link._on_line(json.dumps({"type": "routes", "via": [
        ["10.0.0.2", "10.0.0.2", [packed("10.65.1.0/26"), "10.65.2.0/26",
                                  packed("10.65.3.3/32"), "fd00:65:0:1::/64"]]]}))
    assert ends.agent_holds() == {net("10.65.1.0/26"): A, net("10.65.2.0/26"): A,
                                  net("10.65.3.3/32"): A, net("fd00:65:0:1::/64"): A}


def test_a_new_full_set_replaces_everything_held(ends: Ends) -> None:
    ends.announce(A, "10.65.1.0/26")
    ends.send_full()
    ends.link._on_line(json.dumps({"type": "routes", "routes": [["10.65.9.0/26", "10.0.0.3",
                                                                 "10.0.0.3"]]}))
    assert ends.agent_holds() == {net("10.65.9.0/26"): B}


GONE = ["10.65.1.0/26"]  # each bad message also withdraws this: applying it half would show


@pytest.mark.parametrize("bad", [
    {"routes": [["10.65.5.1/26", "10.0.0.2", "10.0.0.2"]], "withdrawn": GONE},  # host bits
    {"routes": [["10.65.5.0/", "10.0.0.2", "10.0.0.2"]], "withdrawn": GONE},  # no length
    {"routes": [["10.65.5.0/26", "nowhere", "10.0.0.2"]], "withdrawn": GONE},
    {"routes": [[7, "10.0.0.2", "10.0.0.2"]], "withdrawn": GONE},
    {"routes": [["10.65.5.0/26"]], "withdrawn": GONE},
    {"routes": [], "withdrawn": [*GONE, "10.65.1.0/99"]},
    {"routes": [], "withdrawn": GONE[0]},  # not a list
    {"via": [["10.0.0.2", "10.0.0.2", ["10.65.5.0/26", "10.65.6.1/26"]]], "withdrawn": GONE},
    {"via": [["nowhere", "10.0.0.2", ["10.65.5.0/26"]]], "withdrawn": GONE},
    {"via": [["10.0.0.2", "10.0.0.2", ["10.65.5.0/26", True]]], "withdrawn": GONE},
    {"via": [["10.0.0.2", "10.0.0.2", [None]]], "withdrawn": GONE},
    {"via": [["10.0.0.2", "10.0.0.2", [0x0A410100 << 8 | 26, 1.5]]], "withdrawn": GONE},
    {"via": [["10.0.0.2", "10.0.0.2", [0x0A410101 << 8 | 26]]], "withdrawn": GONE},  # host bits
    {"via": [["10.0.0.2", "10.0.0.2", [0x0A410100 << 8 | 33]]], "withdrawn": GONE},  # /33
    {"via": [["10.0.0.2", "10.0.0.2", [-1]]], "withdrawn": GONE},
    {"via": [["10.0.0.2", "10.0.0.2", [1 << 40 | 26]]], "withdrawn": GONE},  # > 32 bits
    {"routes": [], "withdrawn": [*GONE, 0x0A410101 << 8 | 26]},
    {"via": [["10.0.0.2", "10.0.0.2", "10.65.5.0/26"]], "withdrawn": GONE},  # not a list
    {"via": [["10.0.0.2", ["10.65.5.0/26"]]], "withdrawn": GONE},  # no peer
    {"via": {"10.0.0.2": ["10.65.5.0/26"]}, "withdrawn": GONE},
])
def test_a_bad_message_is_skipped_whole_and_changes_nothing(ends: Ends, bad: dict[str, object],
                                                            ) -> None:
    ends.announce(A, "10.65.1.0/26")
    ends.send_full()
    before = len(ends.posted)
    ends.link._on_line(json.dumps({"type": "routes", "delta": True, **bad}))
    ends.link._on_line(json.dumps({"type": "surprise"}))
    assert len(ends.posted) == before
    ends.send_delta()
    assert ends.agent_holds() == {net("10.65.1.0/26"): A}


def test_unchanged_routes_keep_the_same_next_hop_object(ends: Ends) -> None:
    """The calc compares learned routes by identity: a delta must not renew the others."""
    ends.announce(A, "10.65.1.0/26")
    ends.send_full()
    first = ends.agent_holds()[net("10.65.1.0/26")]
    ends.announce(A, "10.65.2.0/26")
    ends.send_delta()
    assert ends.agent_holds()[net("10.65.1.0/26")] is first
    assert ends.agent_holds()[net("10.65.2.0/26")] is first  # the same hop text, parsed once


def test_after_a_reconnect_kept_routes_stand_in_until_the_sidecar_is_complete(
        ends: Ends) -> None:
    """Routes kept from before the channel dropped stay, under the new ones, until the
    sidecar says it is complete; a withdrawn prefix falls back to its kept route."""
    ends.announce(A, "10.65.1.0/26", "10.65.2.0/26")
    ends.send_full()
    ends.sidecar.rib.take_changes()
    ends.link._on_lost()  # what the loop runs when the channel drops
    ends.link._on_line(json.dumps({"type": "routes", "complete": False,
                                   "via": [["10.0.0.3", "10.0.0.3", ["10.65.2.0/26"]]]}))
    assert ends.agent_holds() == {net("10.65.1.0/26"): A, net("10.65.2.0/26"): B}
    ends.link._on_line(json.dumps({"type": "routes", "complete": False, "delta": True,
                                   "via": [["10.0.0.3", "10.0.0.3", ["10.65.3.0/26"]]],
                                   "withdrawn": ["10.65.2.0/26"]}))
    assert ends.agent_holds() == {net("10.65.1.0/26"): A, net("10.65.2.0/26"): A,
                                  net("10.65.3.0/26"): B}
    ends.link._on_line(json.dumps({"type": "routes", "complete": True, "delta": True,
                                   "via": [], "withdrawn": []}))
    assert ends.agent_holds() == {net("10.65.3.0/26"): B}
    assert isinstance(ends.posted[-1], LearnedRoutes)  # dropping kept routes: the whole set


def test_deltas_reach_the_agent_as_changes_not_as_the_whole_set(ends: Ends) -> None:
    ends.announce(A, *(f"10.65.{i}.0/26" for i in range(50)))
    ends.send_full()
    ends.sidecar.rib.take_changes()
    ends.announce(B, "10.65.60.0/26")
    ends.withdraw(A, "10.65.0.0/26")
    ends.send_delta()
    last = ends.posted[-1]
    assert isinstance(last, LearnedChanges)
    assert last.changes == {net("10.65.60.0/26"): B, net("10.65.0.0/26"): None}
    assert ends.agent_holds() == ends.sidecar_holds()


def update_line(source: IPAddress, prefixes: list[str]) -> str:
    """ExaBGP's JSON for one UPDATE (compact NLRIs), as the relay passes it on."""
    return json.dumps({
        "exabgp": "5.0.0", "type": "update", "neighbor": {
            "address": {"local": "10.0.0.1", "peer": str(source)},
            "asn": {"local": 64512, "peer": 64512}, "direction": "receive",
            "message": {"update": {"attribute": {"origin": "igp", "local-preference": 100},
                                   "announce": {"ipv4 unicast": {str(source): prefixes}}}}}})


def test_a_backlog_of_updates_reaches_the_agent_in_parts_of_about_publish_at(
        ends: Ends) -> None:
    """The agent programs the first routes while the sidecar still reads the rest."""
    sidecar = ends.sidecar
    agent = AgentEnd()
    sidecar.handle(("agent", agent))
    nets = [str(n) for n in net("10.65.0.0/16").subnets(new_prefix=28)][:5 * 400]
    for k in range(5):
        sidecar.events.put(("line", None, update_line(A, nets[k * 400:(k + 1) * 400])))
    sizes = []
    while not sidecar.events.empty():
        sidecar._drain(timeout=0)
        sidecar._tick()
        groups: list[list[Any]] = agent.sent[-1]["via"]  # type: ignore[assignment]
        sizes.append(sum(len(group[2]) for group in groups))
    assert len(sizes) > 1 and all(size >= PUBLISH_AT for size in sizes[:-1])
    for message in agent.sent:
        ends.link._on_line(json.dumps(message))
    assert ends.agent_holds() == ends.sidecar_holds() and len(ends.agent_holds()) == len(nets)


class AgentEnd:
    """What the sidecar's loop sees of a connected agent: a `send` and a `close`."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def send(self, message: dict[str, object]) -> None:
        self.sent.append(json.loads(json.dumps(message)))

    def close(self) -> None:
        pass


def test_the_sidecar_sends_the_whole_set_on_connect_then_one_delta_per_change(
        ends: Ends) -> None:
    sidecar = ends.sidecar
    ends.announce(A, "10.65.1.0/26")
    agent = AgentEnd()
    sidecar.handle(("agent", agent))
    assert agent.sent == [{"type": "routes", "complete": False,
                           "via": [["10.0.0.2", "10.0.0.2", [packed("10.65.1.0/26")]]]}]
    sidecar._tick()  # the change before the connect goes out once more: harmless, absolute
    ends.announce(B, "10.65.2.0/26")
    ends.withdraw(A, "10.65.1.0/26")
    sidecar._tick()
    assert agent.sent[-1] == {"type": "routes", "complete": False, "delta": True,
                              "via": [["10.0.0.3", "10.0.0.3", [packed("10.65.2.0/26")]]],
                              "withdrawn": [packed("10.65.1.0/26")]}
    sent = len(agent.sent)
    sidecar._tick()
    assert len(agent.sent) == sent  # nothing changed, nothing sent
    for message in agent.sent:
        ends.link._on_line(json.dumps(message))
    assert ends.agent_holds() == ends.sidecar_holds() == {net("10.65.2.0/26"): B}


# -- the intent: recomputed when what it reads changed ------------------------------------------
NODE = {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "me"},
        "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}}
POOL = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
        "spec": {"cidr": "10.65.0.0/16"}}


def test_the_intent_is_recomputed_only_when_a_resource_it_reads_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[BGPIntent | None] = []

    def counting(inputs: bgp_link.BGPInputs, secret: Any) -> BGPIntent | None:
        computed.append(real(inputs, secret))
        return computed[-1]

    real = bgp_link.compute_intent
    monkeypatch.setattr(bgp_link, "compute_intent", counting)
    now = [0.0]
    link = BGPChannelLink(node_name="me", socket_path=Path("/nonexistent"),
                          post=lambda _: None, clock=lambda: now[0])
    state = ClusterState("me")
    state.apply("Node", "me", NODE)
    link.publish(state, DesiredDataplane())
    assert len(computed) == 1 and computed[0] is not None
    state.update_learned({net("10.66.1.0/26"): A})  # a learned route: not an intent input
    link.publish(state, DesiredDataplane())
    assert len(computed) == 1
    state.apply("IPPool", "p", POOL)
    link.publish(state, DesiredDataplane())
    assert len(computed) == 2 and computed[1] != computed[0]  # the pool is now accepted
    now[0] = bgp_link.SECRET_TTL  # a BGP password read then may have changed since
    link.publish(state, DesiredDataplane())
    assert len(computed) == 3


def test_the_generation_counts_changes_not_updates() -> None:
    state = ClusterState("me")
    kinds = ("Node", "IPPool")
    state.apply("Node", "me", NODE)
    first = state.generation(kinds)
    state.apply("Node", "me", {**NODE, "metadata": {"name": "me", "resourceVersion": "7"}})
    assert state.generation(kinds) == first  # a bare version bump changes nothing
    state.apply("IPPool", "p", POOL)
    assert state.generation(kinds) != first


def test_the_reader_thread_only_reads_and_the_agents_loop_parses_and_keeps_the_state(
        tmp_path: Path) -> None:
    """Parsing in the reader thread had the two threads take the interpreter lock from each
    other through a learn: lines and the drop of the channel reach the loop as work to do."""
    posted: list[object] = []
    cond = threading.Condition()

    def post(msg: object) -> None:
        with cond:
            posted.append(msg)
            cond.notify_all()

    served: list[Conn] = []

    def on_conn(conn: Conn) -> None:
        if not served:  # later reconnects find the channel closed at once
            conn.send({"type": "routes", "complete": True,
                       "via": [["10.0.0.2", "10.0.0.2", ["10.65.1.0/26"]]]})
        served.append(conn)
        conn.close()

    listener = Listener(tmp_path / "bgp.sock", on_conn, name="test-sidecar")
    listener.start()
    link = BGPChannelLink(node_name="me", socket_path=tmp_path / "bgp.sock", post=post)
    link.start()
    try:
        with cond:
            assert cond.wait_for(lambda: link._on_lost in posted, timeout=10)
    finally:
        listener.close()
        link.stop()
    first = posted[: posted.index(link._on_lost) + 1]
    assert isinstance(first[0], partial) and first[0].func == link._on_line
    assert not any(isinstance(m, LearnedRoutes | LearnedChanges) for m in first)
    for work in first:  # as the agent's loop runs them, in order
        assert callable(work)
        work()
    learned = [m for m in posted if isinstance(m, LearnedRoutes)]
    assert learned and learned[0].routes == {net("10.65.1.0/26"): A}
    assert link._stale == {net("10.65.1.0/26"): A}  # kept while the sidecar is away
