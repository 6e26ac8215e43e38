"""Pure block allocation: what Calico users expect from a block."""

from __future__ import annotations

import ipaddress

import pytest

from wren.ipam.block import (
    Attribute,
    Block,
    BlockFullError,
    Reservations,
    affinity_for_node,
    candidate_blocks,
    node_of_affinity,
)

A = Attribute("net.c1", {"pod": "p1", "namespace": "default", "node": "n1"})
B = Attribute("net.c2", {"pod": "p2", "namespace": "default", "node": "n1"})


def ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(s)


def new_block(cidr: str = "10.0.0.0/30") -> Block:
    return Block.new(ipaddress.ip_network(cidr), affinity=affinity_for_node("n1"))


def test_every_address_of_a_block_is_handed_out_including_first_and_last() -> None:
    block, ips = new_block("10.0.0.0/30").allocate(10, attribute=A)
    assert [str(i) for i in ips] == ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert block.free_count() == 0


def test_allocate_in_order_and_block_full_returns_nothing() -> None:
    block, first = new_block().allocate(3, attribute=A)
    block, second = block.allocate(3, attribute=B)
    assert len(first) == 3 and [str(i) for i in second] == ["10.0.0.3"]
    same, none = block.allocate(1, attribute=B)
    assert none == [] and same == block


def test_reserved_addresses_are_never_handed_out() -> None:
    res = Reservations((ipaddress.ip_network("10.0.0.0/31"),))
    block, ips = new_block().allocate(4, attribute=A, reservations=res)
    assert [str(i) for i in ips] == ["10.0.0.2", "10.0.0.3"]
    assert block.free_count(res) == 0 and block.free_count() == 2


def test_reservations_cover_a_block_only_when_their_union_covers_all_of_it() -> None:
    block = ipaddress.ip_network("10.0.0.0/26")
    net = ipaddress.ip_network
    halves = Reservations((net("10.0.0.0/27"), net("10.0.0.32/27")))
    assert halves.covers_all(block)
    assert Reservations((ipaddress.ip_network("10.0.0.0/8"),)).covers_all(block)
    gap = Reservations((ipaddress.ip_network("10.0.0.0/27"), ipaddress.ip_network("10.0.0.48/28")))
    assert not gap.covers_all(block)
    assert not Reservations().covers_all(block)


def test_one_attribute_per_handle_and_release_by_handle_frees_only_its_addresses() -> None:
    block, a_ips = new_block().allocate(2, attribute=A)
    block, b_ips = block.allocate(1, attribute=B)
    assert len(block.attributes) == 2
    assert block.ips_by_handle("net.c1") == a_ips
    block, freed = block.release_by_handle("net.c1")
    assert freed == a_ips
    assert block.in_use() == {b_ips[0]: B}
    assert block.attributes == (B,)  # unused attribute dropped, index renumbered
    assert block.is_consistent() == []


def test_released_addresses_go_to_the_back_of_the_free_list() -> None:
    block, ips = new_block().allocate(1, attribute=A)
    block, _ = block.release(ips)
    block, again = block.allocate(1, attribute=B)
    assert again == [ip("10.0.0.1")]


def test_release_by_address_skips_unallocated_and_foreign_handles() -> None:
    block, a_ips = new_block().allocate(1, attribute=A)
    block, b_ips = block.allocate(1, attribute=B)
    same, freed = block.release([*b_ips, ip("10.0.0.3")], handle_id="net.c1")
    assert freed == [] and same == block
    block, freed = block.release([a_ips[0], a_ips[0]])
    assert freed == a_ips


def test_assign_specific_address_refuses_an_allocated_one() -> None:
    block = new_block().assign(ip("10.0.0.2"), attribute=A)
    assert block.in_use() == {ip("10.0.0.2"): A}
    assert 2 not in block.unallocated
    with pytest.raises(BlockFullError, match="already allocated"):
        block.assign(ip("10.0.0.2"), attribute=B)
    with pytest.raises(ValueError, match="not in block"):
        block.assign(ip("10.0.1.2"), attribute=B)


def test_consistency_check_finds_an_address_both_free_and_allocated() -> None:
    block, _ = new_block().allocate(1, attribute=A)
    broken = Block(block.cidr, block.affinity, block.allocations, (0, *block.unallocated),
                   block.attributes)
    assert any("both allocated and free" in p for p in broken.is_consistent())


def test_candidate_blocks_cover_the_pool_once_from_a_node_specific_start() -> None:
    pool = ipaddress.ip_network("10.0.0.0/24")
    n1 = list(candidate_blocks(pool, block_prefix=26, node="n1"))
    assert sorted(n1, key=lambda n: int(n.network_address)) == list(pool.subnets(new_prefix=26))
    assert n1 == list(candidate_blocks(pool, block_prefix=26, node="n1"))
    starts = {next(candidate_blocks(pool, block_prefix=26, node=f"node{i}")) for i in range(20)}
    assert len(starts) > 1


def test_candidate_blocks_ipv6_keep_the_family() -> None:
    pool = ipaddress.ip_network("fd00::/120")
    blocks = list(candidate_blocks(pool, block_prefix=122, node="n1"))
    assert len(blocks) == 4 and all(b.version == 6 and b.subnet_of(pool) for b in blocks)


def test_affinity_strings_match_calico() -> None:
    assert affinity_for_node("n1") == "host:n1"
    assert node_of_affinity("host:n1") == "n1"
    assert node_of_affinity("virtual:lb") is None
