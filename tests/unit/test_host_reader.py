"""HostReader: host facts from a few targeted netlink requests, never a dump of every link."""

import ipaddress
from typing import Any

from agent.calc.cluster_state import ClusterState
from agent.host import HostReader
from agent.kernel.netlink import LinkInfo


class Msg:
    def __init__(self, fields: dict[str, Any], **attrs: Any) -> None:
        self._fields, self._attrs = fields, attrs

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def get_attr(self, name: str) -> Any:
        return self._attrs.get(name)


class FakeIPRoute:
    """Links by index (name, MTU), IPv4 addresses, next-hop gateways; records requests."""

    def __init__(self, links: dict[int, tuple[str, int]], addrs: dict[int, str],
                 gateways: dict[str, str] | None = None) -> None:
        self.links, self.addrs, self.gateways = links, addrs, gateways or {}
        self.calls: list[tuple[str, Any]] = []

    def get_addr(self, *, family: int) -> list[Msg]:
        self.calls.append(("get_addr", family))
        return [Msg({"index": i}, IFA_ADDRESS=a) for i, a in self.addrs.items()]

    def get_links(self, *indexes: int) -> list[Msg]:
        self.calls.append(("get_links", indexes))
        assert indexes, "a dump of every link"
        if indexes[0] not in self.links:
            raise OSError(19, "No such device")
        name, mtu = self.links[indexes[0]]
        return [Msg({"index": indexes[0]}, IFLA_IFNAME=name, IFLA_MTU=mtu)]

    def route(self, cmd: str, *, dst: str) -> list[Msg]:
        self.calls.append(("route", dst))
        gw = self.gateways.get(dst)
        if gw is None:
            raise OSError(101, "Network is unreachable")
        return [Msg({}, RTA_GATEWAY=gw)]


def state_with_node(address: str | None, address6: str | None = None) -> ClusterState:
    state = ClusterState("n1")
    spec: dict[str, Any] = {"bgp": {"ipv4Address": address}} if address else {}
    if address6:
        spec["bgp"]["ipv6Address"] = address6
    state.apply("Node", "n1", {"apiVersion": "projectcalico.org/v3", "kind": "Node",
                               "metadata": {"name": "n1"}, "spec": spec})
    return state


def no_link_dump() -> list[LinkInfo]:
    raise AssertionError("the links were dumped")


def veths(n: int) -> dict[int, tuple[str, int]]:
    return {100 + i: (f"cali{i:011d}", 1500) for i in range(n)}


def test_parent_and_mtu_from_the_interface_holding_the_node_address() -> None:
    ipr = FakeIPRoute({1: ("lo", 65536), 2: ("eth0", 9000), 3: ("eth1", 1400), **veths(1000)},
                      {1: "127.0.0.1", 2: "10.0.1.11", 3: "192.168.7.1"})
    facts = HostReader(ipr, no_link_dump)(state_with_node("10.0.1.11/24"))
    assert (facts.parent_iface, facts.host_mtu) == ("eth0", 9000)
    # one address dump, one link request: nothing in proportion to the pods' veths
    assert ipr.calls == [("get_addr", 2), ("get_links", (2,))]


def test_without_the_address_on_a_host_interface_the_mtu_pattern_decides() -> None:
    links = {1: ("lo", 65536), 2: ("eth0", 9000), 3: ("ens3", 1450), 4: ("docker0", 1400),
             **veths(50)}
    ipr = FakeIPRoute(links, {1: "127.0.0.1"})
    dumped = [LinkInfo(index=i, name=n, up=True) for i, (n, _) in links.items()]
    facts = HostReader(ipr, lambda: dumped)(state_with_node("10.0.1.11/24"))
    assert (facts.parent_iface, facts.host_mtu) == (None, 1450)
    asked = [c[1][0] for c in ipr.calls if c[0] == "get_links"]
    assert sorted(asked) == [2, 3]  # only the interfaces the pattern names


def test_no_node_yet_and_no_matching_interface_falls_back_to_1500() -> None:
    ipr = FakeIPRoute({1: ("lo", 65536)}, {1: "127.0.0.1"})
    facts = HostReader(ipr, lambda: [LinkInfo(index=1, name="lo", up=True)])(
        state_with_node(None))
    assert (facts.parent_iface, facts.host_mtu) == (None, 1500)


def test_interface_gone_between_the_two_requests_is_no_parent() -> None:
    ipr = FakeIPRoute({}, {7: "10.0.1.11"})
    facts = HostReader(ipr, lambda: [])(state_with_node("10.0.1.11/24"))
    assert (facts.parent_iface, facts.host_mtu) == (None, 1500)


def test_off_subnet_next_hops_resolve_through_the_host_route() -> None:
    ipr = FakeIPRoute({2: ("eth0", 1500)}, {2: "10.0.1.11"}, {"10.0.2.11": "10.0.1.1"})
    state = state_with_node("10.0.1.11/24")
    ip, net = ipaddress.ip_address, ipaddress.ip_network
    state.set_learned({net("10.65.2.0/26"): ip("10.0.2.11"), net("10.65.1.0/26"): ip("10.0.1.12"),
                       net("10.65.3.0/26"): ip("10.0.3.11")})
    facts = HostReader(ipr, lambda: [])(state)
    assert dict(facts.gateways) == {ip("10.0.2.11"): ip("10.0.1.1")}  # in-subnet hop: no lookup
    assert ("route", "10.0.1.12") not in ipr.calls


def test_off_subnet_ipv6_next_hops_resolve_through_the_host_route_too() -> None:
    ipr = FakeIPRoute({2: ("eth0", 1500)}, {2: "10.0.1.11"},
                      {"fd00:2::11": "fd00:1::1", "10.0.2.11": "10.0.1.1"})
    ip, net = ipaddress.ip_address, ipaddress.ip_network
    learned = {net("fd00:65::/122"): ip("fd00:1::12"), net("fd00:65::40/122"): ip("fd00:2::11"),
               net("10.65.2.0/26"): ip("10.0.2.11")}
    state = state_with_node("10.0.1.11/24", "fd00:1::11/64")
    state.set_learned(learned)
    facts = HostReader(ipr, lambda: [])(state)
    assert dict(facts.gateways) == {ip("fd00:2::11"): ip("fd00:1::1"),
                                    ip("10.0.2.11"): ip("10.0.1.1")}
    assert ("route", "fd00:1::12") not in ipr.calls  # on our IPv6 subnet: no lookup
    # Without an IPv6 address of our own there is no IPv6 subnet to be off.
    ipr.calls.clear()
    v4_only = state_with_node("10.0.1.11/24")
    v4_only.set_learned(learned)
    assert dict(HostReader(ipr, lambda: [])(v4_only).gateways) == {ip("10.0.2.11"): ip("10.0.1.1")}
    assert not [c for c in ipr.calls if c[0] == "route" and ":" in c[1]]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_facts_are_kept_for_a_second_while_address_and_next_hops_stay_the_same() -> None:
    ipr = FakeIPRoute({2: ("eth0", 1500)}, {2: "10.0.1.11"}, {"10.0.2.11": "10.0.1.1"})
    clock = Clock()
    reader = HostReader(ipr, lambda: [], clock=clock)
    state = state_with_node("10.0.1.11/24")
    ip, net = ipaddress.ip_address, ipaddress.ip_network
    state.set_learned({net("10.65.1.0/26"): ip("10.0.1.12")})
    first = reader(state)
    state.set_learned({net("10.65.1.0/26"): ip("10.0.1.12"), net("10.65.4.0/26"): ip("10.0.1.13")})
    clock.now += 0.5
    assert reader(state) is first  # in-subnet hops only: nothing new to ask the kernel
    asked = len(ipr.calls)
    state.set_learned({net("10.65.2.0/26"): ip("10.0.2.11")})  # a new off-subnet next hop
    assert dict(reader(state).gateways) == {ip("10.0.2.11"): ip("10.0.1.1")}
    assert len(ipr.calls) > asked
    asked = len(ipr.calls)
    ipr.links[2] = ("eth0", 9000)  # the host changed; seen once the facts are a second old
    clock.now += 0.5
    assert reader(state).host_mtu == 1500 and len(ipr.calls) == asked
    clock.now += 0.6
    assert reader(state).host_mtu == 9000
