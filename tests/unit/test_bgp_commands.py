"""ExaBGP API commands for our routes, and the Pacer that keeps ExaBGP's queue short."""

from __future__ import annotations

import ipaddress

from bgp.commands import (
    GROUP,
    WINDOW,
    Pacer,
    announce_commands,
    diff_commands,
    withdraw_commands,
)
from bgp.intent import IPNetwork
from bgp.rib import OutRoute

PEER = ipaddress.ip_address("10.99.0.2")
HOP = ipaddress.ip_address("10.99.0.1")


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def _route(prefix: str, **attrs: object) -> OutRoute:
    return OutRoute(prefix=_net(prefix), next_hop=HOP, **attrs)  # type: ignore[arg-type]


def _blocks(count: int) -> list[IPNetwork]:
    subnets = ipaddress.IPv4Network("10.200.0.0/16").subnets(new_prefix=26)
    return [net for net, _ in zip(subnets, range(count), strict=False)]


def _nlri(command: str) -> list[str]:
    tail = command.partition(" nlri ")[2]
    assert tail, command
    return tail.split(" ")


# -- announce ------------------------------------------------------------------------------------
def test_routes_sharing_attributes_go_in_one_grouped_command() -> None:
    routes = [_route("10.200.1.0/26"), _route("10.200.2.0/26"), _route("10.200.3.0/26")]
    assert announce_commands(PEER, routes) == [
        "neighbor 10.99.0.2 announce attributes next-hop 10.99.0.1 origin igp "
        "nlri 10.200.1.0/26 10.200.2.0/26 10.200.3.0/26"
    ]


def test_a_group_larger_than_group_size_is_split_in_order() -> None:
    prefixes = _blocks(2 * GROUP + 50)
    routes = [OutRoute(prefix=p, next_hop=HOP) for p in prefixes]
    commands = announce_commands(PEER, routes)
    assert [len(_nlri(c)) for c in commands] == [GROUP, GROUP, 50]
    assert [n for c in commands for n in _nlri(c)] == [str(p) for p in prefixes]
    head = {c.partition(" nlri ")[0] for c in commands}
    assert head == {"neighbor 10.99.0.2 announce attributes next-hop 10.99.0.1 origin igp"}


def test_routes_with_different_attributes_get_separate_commands() -> None:
    routes = [_route("10.200.1.0/26"), _route("10.200.2.0/26", local_pref=200),
              _route("10.200.3.0/26")]
    commands = announce_commands(PEER, routes)
    assert len(commands) == 2
    by_nlri = {tuple(_nlri(c)): c for c in commands}
    assert "local-preference" not in by_nlri[("10.200.1.0/26", "10.200.3.0/26")]
    assert " local-preference 200 " in by_nlri[("10.200.2.0/26",)]


def test_standard_and_large_communities_are_rendered_apart() -> None:
    (command,) = announce_commands(PEER, [
        _route("10.200.1.0/26", communities=("64512:100", "64512:1:2", "65535:65281"))])
    assert " community [ 64512:100 65535:65281 ] " in command
    assert " large-community [ 64512:1:2 ] " in command


def test_reflected_route_carries_as_path_originator_and_cluster_list() -> None:
    (command,) = announce_commands(PEER, [
        _route("10.200.1.0/26", as_path=(65001, 65002), originator_id="10.99.0.3",
               cluster_list=("10.99.0.1", "10.99.0.9"), local_pref=100)])
    assert command == (
        "neighbor 10.99.0.2 announce attributes next-hop 10.99.0.1 origin igp "
        "local-preference 100 as-path [ 65001 65002 ] originator-id 10.99.0.3 "
        "cluster-list [ 10.99.0.1 10.99.0.9 ] nlri 10.200.1.0/26"
    )


def test_next_hop_is_part_of_the_group_key() -> None:
    other = OutRoute(prefix=_net("10.200.2.0/26"), next_hop=ipaddress.ip_address("10.99.0.7"))
    commands = announce_commands(PEER, [_route("10.200.1.0/26"), other])
    assert sorted(c.split(" next-hop ")[1].split(" ")[0] for c in commands) == [
        "10.99.0.1", "10.99.0.7"]


def test_ipv6_routes_are_announced_to_an_ipv6_peer() -> None:
    peer6 = ipaddress.ip_address("fd99::2")
    route = OutRoute(prefix=_net("fd00:200:1::/64"), next_hop=ipaddress.ip_address("fd99::1"))
    assert announce_commands(peer6, [route]) == [
        "neighbor fd99::2 announce attributes next-hop fd99::1 origin igp nlri fd00:200:1::/64"]


def test_no_routes_no_commands() -> None:
    assert announce_commands(PEER, []) == []
    assert withdraw_commands(PEER, []) == []


# -- withdraw and diff ---------------------------------------------------------------------------
def test_withdraw_is_one_command_per_prefix_for_that_peer_only() -> None:
    assert withdraw_commands(PEER, [_net("10.200.1.0/26"), _net("10.200.2.0/26")]) == [
        "neighbor 10.99.0.2 withdraw route 10.200.1.0/26",
        "neighbor 10.99.0.2 withdraw route 10.200.2.0/26",
    ]


def test_diff_withdraws_what_went_before_announcing_what_is_new() -> None:
    gone, kept, new = _route("10.200.1.0/26"), _route("10.200.2.0/26"), _route("10.200.3.0/26")
    sent = {gone.prefix: gone, kept.prefix: kept}
    wanted = {kept.prefix: kept, new.prefix: new}
    assert diff_commands(PEER, sent, wanted) == [
        "neighbor 10.99.0.2 withdraw route 10.200.1.0/26",
        "neighbor 10.99.0.2 announce attributes next-hop 10.99.0.1 origin igp nlri 10.200.3.0/26",
    ]


def test_diff_reannounces_a_changed_route_without_withdrawing_it() -> None:
    before = _route("10.200.1.0/26")
    after = _route("10.200.1.0/26", communities=("64512:7",))
    commands = diff_commands(PEER, {before.prefix: before}, {after.prefix: after})
    assert len(commands) == 1
    assert " announce attributes " in commands[0]
    assert " community [ 64512:7 ] " in commands[0]


def test_diff_of_identical_sets_is_empty() -> None:
    routes = {r.prefix: r for r in (_route("10.200.1.0/26"), _route("10.200.2.0/26"))}
    assert diff_commands(PEER, routes, dict(routes)) == []


# -- Pacer ---------------------------------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, batch: list[str]) -> None:
        self.batches.append(batch)

    @property
    def written(self) -> list[str]:
        return [c for b in self.batches for c in b]


def _commands(count: int) -> list[str]:
    return [f"c{i}" for i in range(count)]


def test_default_window_is_100_unacknowledged_commands() -> None:
    writer = _Writer()
    pacer = Pacer(writer)
    pacer.send(_commands(250))
    assert WINDOW == 100
    assert writer.batches == [_commands(100)]
    assert pacer.pending == 250


def test_each_ack_lets_one_more_command_out_in_order() -> None:
    writer = _Writer()
    pacer = Pacer(writer, window=3)
    pacer.send(_commands(5))
    assert writer.written == ["c0", "c1", "c2"]
    pacer.on_ack(True)
    assert writer.batches[-1] == ["c3"]
    pacer.on_ack(True)
    assert writer.written == _commands(5)
    pacer.on_ack(True)
    assert len(writer.batches) == 3  # nothing left to write


def test_commands_sent_later_wait_behind_a_full_window() -> None:
    writer = _Writer()
    pacer = Pacer(writer, window=2)
    pacer.send(["a", "b"])
    pacer.send(["c"])
    assert writer.written == ["a", "b"]
    pacer.on_ack(True)
    assert writer.written == ["a", "b", "c"]


def test_a_small_send_is_written_at_once_as_one_batch() -> None:
    writer = _Writer()
    pacer = Pacer(writer)
    pacer.send(["a", "b", "c"])
    assert writer.batches == [["a", "b", "c"]]


def test_pacer_is_idle_once_every_command_is_acknowledged() -> None:
    writer = _Writer()
    pacer = Pacer(writer, window=2)
    assert pacer.idle
    pacer.send(_commands(3))
    assert not pacer.idle
    for _ in range(3):
        pacer.on_ack(True)
    assert pacer.idle
    assert pacer.pending == 0
    assert pacer.errors == 0


def test_error_ack_is_counted_and_the_queue_moves_on() -> None:
    writer = _Writer()
    pacer = Pacer(writer, window=1)
    pacer.send(["bad", "good"])
    pacer.on_ack(False)
    assert pacer.errors == 1
    assert writer.written == ["bad", "good"]
    pacer.on_ack(True)
    assert pacer.errors == 1
    assert pacer.idle


def test_reset_forgets_queued_and_in_flight_commands() -> None:
    writer = _Writer()
    pacer = Pacer(writer, window=2)
    pacer.send(_commands(5))
    pacer.reset()
    assert pacer.idle
    assert pacer.pending == 0
    pacer.send(["after"])
    assert writer.batches[-1] == ["after"]  # the window is free again


def test_unexpected_ack_with_nothing_in_flight_does_not_raise() -> None:
    writer = _Writer()
    pacer = Pacer(writer)
    pacer.on_ack(False)
    assert pacer.errors == 1
    assert writer.batches == []
