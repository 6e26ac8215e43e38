"""`wrenctl ipam check` / `show` computations over plain lists."""

from __future__ import annotations

import ipaddress

from wren.ipam.block import Attribute, Block
from wren.ipam.report import Endpoint, check, usage
from wren.ipam.resources import Handle

NET = ipaddress.ip_network("10.0.0.0/30")


def block_with(*holders: tuple[str, str, str], affinity: str = "host:n1") -> Block:
    b = Block.new(NET, affinity=affinity)
    for hid, ns, pod in holders:
        b, _ = b.allocate(1, attribute=Attribute(hid, {"namespace": ns, "pod": pod}))
    return b


def ep(pod: str, ip: str, ns: str = "default") -> Endpoint:
    return Endpoint(namespace=ns, pod=pod, name=f"n1-k8s-{pod}-eth0",
                    ips=(ipaddress.ip_address(ip),))


def test_a_healthy_store_has_no_problems() -> None:
    b = block_with(("net.a", "default", "a"))
    report = check(blocks=[b], handles=[Handle("net.a", {str(NET): 1})],
                   endpoints=[ep("a", "10.0.0.0")], nodes=["n1"])
    assert report.ok and report.allocations == 1


def test_address_of_a_pod_without_endpoint_is_a_leak() -> None:
    b = block_with(("net.a", "default", "gone"))
    report = check(blocks=[b], handles=[Handle("net.a", {str(NET): 1})], endpoints=[],
                   nodes=["n1"])
    assert [(p.kind, p.subject) for p in report.problems] == [("leaked", "10.0.0.0")]
    assert "default/gone" in report.problems[0].detail


def test_tunnel_address_of_a_removed_node_is_a_leak() -> None:
    b = Block.new(NET, affinity="host:n1")
    b, _ = b.allocate(1, attribute=Attribute("vxlan-tunnel-addr-n9", {"node": "n9"}))
    report = check(blocks=[b], handles=[Handle("vxlan-tunnel-addr-n9", {str(NET): 1})],
                   endpoints=[], nodes=["n1"])
    assert [p.kind for p in report.problems] == ["leaked"]


def test_two_endpoints_with_one_address_and_unallocated_use_are_double_use() -> None:
    b = block_with(("net.a", "default", "a"))
    report = check(blocks=[b], handles=[Handle("net.a", {str(NET): 1})],
                   endpoints=[ep("a", "10.0.0.0"), ep("b", "10.0.0.0"), ep("c", "10.0.0.3")],
                   nodes=["n1"])
    kinds = sorted((p.kind, p.subject) for p in report.problems)
    assert kinds == [("double-use", "10.0.0.0"), ("double-use", "10.0.0.3")]


def test_handle_counts_that_do_not_match_blocks_and_missing_handles() -> None:
    b = block_with(("net.a", "default", "a"), ("net.b", "default", "b"))
    report = check(blocks=[b], handles=[Handle("net.a", {str(NET): 2}), Handle("net.empty")],
                   endpoints=[ep("a", "10.0.0.0"), ep("b", "10.0.0.1")], nodes=["n1"])
    kinds = sorted((p.kind, p.subject) for p in report.problems)
    assert kinds == [("handle-mismatch", "net.a"), ("handle-mismatch", "net.empty"),
                     ("no-handle", "10.0.0.1")]


def test_block_of_a_removed_node_is_reported() -> None:
    report = check(blocks=[Block.new(NET, affinity="host:old")], handles=[], endpoints=[],
                   nodes=["n1"])
    assert [p.kind for p in report.problems] == ["orphan-block"]


def test_usage_per_pool_and_block() -> None:
    b = block_with(("net.a", "default", "a"), ("net.b", "default", "b"))
    (pool,) = usage([("p", ipaddress.ip_network("10.0.0.0/24"))], [b])
    assert (pool.size, pool.in_use, pool.free) == (256, 2, 254)
    assert [(u.node, u.size, u.in_use, u.free) for u in pool.blocks] == [("n1", 4, 2, 2)]
