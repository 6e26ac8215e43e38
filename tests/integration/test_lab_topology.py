import secrets
from collections.abc import Iterator

import pytest

from lab.topology import Topology, netns_exec, run

pytestmark = pytest.mark.integration


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology(prefix=f"wt-lt{secrets.token_hex(2)}-", node_count=4)
    t.create()
    try:
        yield t
    finally:
        t.destroy()


def ping(ns: str, dst: object) -> bool:
    out = run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", str(dst)], check=False)
    return " 0% packet loss" in out


def test_nodes_on_two_subnets_reach_each_other_through_the_router(topo: Topology) -> None:
    a, b = topo.nodes[0], topo.nodes[-1]
    assert a.address.network != b.address.network
    assert ping(a.netns, b.address.ip)


def test_internet_host_reaches_node_subnets_but_has_no_route_to_pods(topo: Topology) -> None:
    assert ping(topo.nodes[0].netns, topo.inet_host)
    routes = netns_exec(topo.inet_ns, "ip", "route", "get", "10.65.0.5", check=False)
    assert "unreachable" in routes or routes == ""


def test_destroy_removes_every_namespace_it_made(topo: Topology) -> None:
    topo.destroy()
    left = run(["ip", "netns", "list"])
    assert topo.prefix not in left
