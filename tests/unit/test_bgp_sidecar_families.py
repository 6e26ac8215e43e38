"""The sidecar on a dual-stack node: each session gets only the prefixes of its own family,
with the next hop of that family, and IPv6 routes learned from ExaBGP reach the agent.

A real `Sidecar` driven through its loop's handlers with ExaBGP's own JSON lines (as
`tests/unit/test_exabgp_json.py` holds them); the commands it would write to ExaBGP are
captured from its pacer. No ExaBGP, no socket.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from pathlib import Path

import pytest

from agent.bgp_link import BGPChannelLink
from bgp.commands import Pacer
from bgp.intent import Announcement, BGPIntent, PeerIntent
from bgp.sidecar import BIND_RECHECK, Sidecar, SidecarConfig, _bind_of, can_bind
from bgp.status import read_status
from tests.unit.test_exabgp_json import _HEAD, ANNOUNCE_IPV6

ip = ipaddress.ip_address
net = ipaddress.ip_network


def _peer(address: str) -> PeerIntent:
    return PeerIntent(address=ip(address), peer_as=64512, local_as=64512,
                      type="node-to-node mesh", is_node=True)


INTENT = BGPIntent(
    node="me", router_id=ipaddress.IPv4Address("10.99.0.1"), local_as=64512,
    address=ip("10.99.0.1"), address6=ipaddress.IPv6Address("fd99::1"),
    peers=(_peer("10.99.0.2"), _peer("fd99::2")),
    announce=(Announcement(prefix=net("10.200.1.0/26")),
              Announcement(prefix=net("fd00:200:1::/64"))),
    accept=(net("10.200.0.0/16"), net("fd00:200::/40")),
    own=(net("10.200.1.0/26"), net("fd00:200:1::/64")),
)


class Captured:
    def __init__(self, tmp: Path) -> None:
        self.sidecar = Sidecar(SidecarConfig(node_name="me", run_dir=tmp, exabgp=("exabgp",)))
        self.sidecar.intent = INTENT
        self.sidecar.rib.set_intent(INTENT)
        self.sidecar._sync_status()
        self.commands: list[str] = []

        def write(lines: list[str]) -> None:
            self.commands += lines
            for _ in lines:  # ExaBGP acknowledges each command
                self.sidecar.pacer.on_ack(True)

        self.sidecar.pacer = Pacer(write)

    def up(self, peer: str) -> list[str]:
        self.commands.clear()
        line = ('{ ' + _HEAD + ', "counter": 3, "type": "state", "neighbor": { '
                f'"address": {{ "local": "{"fd99::1" if ":" in peer else "10.99.0.1"}", '
                f'"peer": "{peer}" }}, "asn": {{ "local": 64512, "peer": 64512 }} , '
                '"state": "up" } }')
        self.sidecar._on_line(line)
        return list(self.commands)


@pytest.fixture
def side(tmp_path: Path) -> Captured:
    return Captured(tmp_path)


def test_an_ipv6_session_gets_our_ipv6_block_with_our_ipv6_next_hop_and_an_ipv6_eor(
        side: Captured) -> None:
    assert side.up("fd99::2") == [
        "neighbor fd99::2 announce attributes next-hop fd99::1 origin igp nlri fd00:200:1::/64",
        "neighbor fd99::2 announce eor ipv6 unicast",
    ]


def test_an_ipv4_session_gets_only_the_ipv4_block(side: Captured) -> None:
    assert side.up("10.99.0.2") == [
        "neighbor 10.99.0.2 announce attributes next-hop 10.99.0.1 origin igp "
        "nlri 10.200.1.0/26",
        "neighbor 10.99.0.2 announce eor ipv4 unicast",
    ]


def test_a_new_announcement_goes_to_the_session_of_its_family_only(side: Captured) -> None:
    side.up("10.99.0.2")
    side.up("fd99::2")
    side.commands.clear()
    more = replace(INTENT, announce=(*INTENT.announce,
                                     Announcement(prefix=net("fd00:200:1:1::/64"))))
    side.sidecar.intent = more  # what `_on_intent` does, short of (re)starting ExaBGP
    side.sidecar.rib.set_intent(more)
    side.sidecar._export_all()  # both families up: a mixed set of addresses to walk
    assert side.commands == [
        "neighbor fd99::2 announce attributes next-hop fd99::1 origin igp "
        "nlri fd00:200:1:1::/64"]


def test_ipv6_routes_learned_from_exabgp_reach_the_agent_with_their_ipv6_next_hop(
        side: Captured, tmp_path: Path) -> None:
    side.up("fd99::2")
    side.sidecar._on_line(ANNOUNCE_IPV6)  # fd00:200:2::/64, also under a link-local hop
    message = side.sidecar._routes_message()
    assert message["via"] == [["fd99::2", "fd99::2", ["fd00:200:2::/64"]]]
    posted: list[object] = []
    link = BGPChannelLink(node_name="me", socket_path=tmp_path / "bgp.sock", post=posted.append)
    link._on_line(json.dumps(message))
    [learned] = posted
    assert learned.routes == {net("fd00:200:2::/64"): ip("fd99::2")}  # type: ignore[attr-defined]


def test_exabgp_listens_on_both_addresses_and_restarts_when_the_ipv6_one_changes() -> None:
    def everywhere(_address: object) -> bool:
        return True

    assert _bind_of(INTENT, everywhere) == (("10.99.0.1", "fd99::1"), 179)
    v4_only = replace(INTENT, address6=None)
    assert _bind_of(v4_only, everywhere) == (("10.99.0.1",), 179)
    assert _bind_of(v4_only, everywhere) != _bind_of(INTENT, everywhere)


def test_an_ipv6_address_not_on_the_host_is_left_out_of_the_bind_list() -> None:
    # ExaBGP exits when it cannot bind an address: IPv4 sessions must not die of that.
    assert _bind_of(INTENT, lambda a: a.version == 4) == (("10.99.0.1",), 179)
    assert can_bind(ip("127.0.0.1"))
    assert not can_bind(ip("192.0.2.1")) and not can_bind(ip("2001:db8::1"))  # on no host


def test_exabgp_is_started_listening_only_where_it_can_bind(tmp_path: Path) -> None:
    present: set[str] = set()
    sidecar = Sidecar(SidecarConfig(node_name="me", run_dir=tmp_path, exabgp=("exabgp",)),
                      usable=lambda a: a.version == 4 or str(a) in present)
    sidecar.intent = INTENT
    assert sidecar._exabgp_env()["exabgp_tcp_bind"] == "10.99.0.1"
    assert sidecar._bind == (("10.99.0.1",), 179)
    present.add("fd99::1")
    assert sidecar._exabgp_env()["exabgp_tcp_bind"] == "10.99.0.1 fd99::1"
    assert sidecar._bind == (("10.99.0.1", "fd99::1"), 179)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_exabgp_is_restarted_once_the_missing_ipv6_address_appears(tmp_path: Path) -> None:
    present: set[str] = set()
    clock = Clock()
    sidecar = Sidecar(SidecarConfig(node_name="me", run_dir=tmp_path, exabgp=("exabgp",)),
                      clock=clock, usable=lambda a: a.version == 4 or str(a) in present)
    sidecar.intent = INTENT
    sidecar.proc = object()  # type: ignore[assignment]  # ExaBGP running, as far as this goes
    sidecar._bind = _bind_of(INTENT, sidecar._usable)
    assert sidecar._bind == (("10.99.0.1",), 179)
    assert not sidecar._rebind_due(clock.now)
    present.add("fd99::1")
    clock.now += BIND_RECHECK / 2
    assert not sidecar._rebind_due(clock.now)  # not looked at again yet
    clock.now += BIND_RECHECK
    assert sidecar._rebind_due(clock.now)
    sidecar._bind = _bind_of(INTENT, sidecar._usable)  # what the restart binds
    clock.now += BIND_RECHECK * 2
    assert not sidecar._rebind_due(clock.now)  # listening on it: nothing more to do


class _Started:
    """What `subprocess.Popen` gave the sidecar: the command, and a process that is done."""

    pid = 4242

    def __init__(self, args: list[str], **_: object) -> None:
        self.args = args

    def wait(self) -> int:
        return 0


def _record_starts(monkeypatch: pytest.MonkeyPatch) -> list[_Started]:
    started: list[_Started] = []

    def popen(args: list[str], **kw: object) -> _Started:
        started.append(_Started(args, **kw))
        return started[-1]

    monkeypatch.setattr("bgp.sidecar.subprocess.Popen", popen)
    return started


def test_exabgp_waits_for_a_node_address_not_on_the_host_instead_of_crash_looping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _record_starts(monkeypatch)
    present: set[str] = set()
    clock = Clock()
    sidecar = Sidecar(SidecarConfig(node_name="me", run_dir=tmp_path, exabgp=("exabgp",)),
                      clock=clock, usable=lambda a: str(a) in present)
    sidecar.intent = INTENT
    sidecar._sync_status()
    sidecar._start_exabgp()
    assert started == [] and sidecar.proc is None
    assert sidecar._restart_at == clock.now + BIND_RECHECK
    info = sidecar.status[ip("10.99.0.2")].info
    assert "10.99.0.1" in info and "spec.bgp.ipv4Address" in info
    sidecar._write_status()  # `wrenctl node status` and the readiness probe say why, too
    written = read_status(tmp_path)
    assert written is not None and written.exabgp_pid is None
    waiting = written.exabgp_waiting
    assert "10.99.0.1" in waiting and "spec.bgp.ipv4Address" in waiting
    clock.now += BIND_RECHECK
    sidecar._tick()  # looked for again: still missing
    assert started == [] and sidecar._restart_at == clock.now + BIND_RECHECK
    present.add("10.99.0.1")
    clock.now += BIND_RECHECK
    sidecar._tick()
    assert len(started) == 1 and sidecar.proc is started[0]
    assert sidecar._restart_at is None
    sidecar._write_status()
    written = read_status(tmp_path)
    assert written is not None and written.exabgp_waiting == ""


def test_a_corrected_node_address_starts_exabgp_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _record_starts(monkeypatch)
    clock = Clock()
    sidecar = Sidecar(SidecarConfig(node_name="me", run_dir=tmp_path, exabgp=("exabgp",)),
                      clock=clock, usable=lambda a: str(a) == "10.99.0.9")
    sidecar._on_intent(INTENT)
    assert started == []
    sidecar._on_intent(replace(INTENT, peers=(*INTENT.peers, _peer("10.99.0.3"))))
    assert started == []
    assert "is not on this host" in sidecar.status[ip("10.99.0.3")].info  # a peer added since
    sidecar._on_intent(replace(INTENT, address=ip("10.99.0.9")))
    assert len(started) == 1  # no wait for the next look
