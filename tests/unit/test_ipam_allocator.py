"""The IPAM allocator against the in-memory backend: claims, borrowing, conflicts, rollback."""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import pytest

from wren.datastore.memory import MemoryBackend
from wren.errors import Conflict, DatastoreUnavailable
from wren.ipam.allocator import Ipam, NoFreeAddressesError, tunnel_handle_id
from wren.ipam.resources import affinity_name
from wren.kinds import kind_by_name

K_BLOCK = kind_by_name("IPAMBlock")
K_AFF = kind_by_name("BlockAffinity")
K_HANDLE = kind_by_name("IPAMHandle")


def pool(name: str, cidr: str, block_size: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": block_size, **spec}}


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": name, "labels": labels}, "spec": {}}


@pytest.fixture
def db() -> MemoryBackend:
    b = MemoryBackend()
    b.create(node("n1", zone="a"))
    b.create(node("n2", zone="b"))
    return b


def ipam(db: MemoryBackend) -> Ipam:
    return Ipam(db, sleep=lambda s: None)


def handles(db: MemoryBackend) -> dict[str, dict[str, int]]:
    return {h["spec"]["handleID"]: h["spec"]["block"] for h in db.list(K_HANDLE).items}


def test_first_allocation_claims_a_confirmed_affine_block(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/24", 26))
    ips = ipam(db).auto_assign(handle_id="net.c1", node="n1", attrs={"pod": "p1"})
    assert len(ips) == 1
    (blk,) = db.list(K_BLOCK).items
    assert blk["spec"]["affinity"] == "host:n1"
    assert ips[0] in ipaddress.ip_network(blk["spec"]["cidr"])
    (aff,) = db.list(K_AFF).items
    assert aff["spec"] == {"state": "confirmed", "node": "n1", "cidr": blk["spec"]["cidr"],
                           "deleted": False}
    assert handles(db) == {"net.c1": {blk["spec"]["cidr"]: 1}}


def test_full_block_makes_the_node_claim_another(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/24", 30))
    a = ipam(db)
    ips = a.auto_assign(handle_id="net.c1", node="n1", num4=6)
    assert len(set(ips)) == 6
    blocks = db.list(K_BLOCK).items
    assert len(blocks) == 2 and all(b["spec"]["affinity"] == "host:n1" for b in blocks)


def test_borrows_from_another_nodes_block_when_no_block_is_free(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/29", 30))
    a = ipam(db)
    a.auto_assign(handle_id="net.a", node="n1", num4=1)
    a.auto_assign(handle_id="net.b", node="n2", num4=1)
    # Both /30 blocks are claimed; n1 needs 4 more than its own block has left (3).
    got = a.auto_assign(handle_id="net.c", node="n1", num4=4)
    assert len(set(got)) == 4
    assert {b["spec"]["affinity"] for b in db.list(K_BLOCK).items} == {"host:n1", "host:n2"}


def test_strict_affinity_forbids_borrowing_and_leaves_nothing(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/29", 30))
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration",
               "metadata": {"name": "default"},
               "spec": {"strictAffinity": True, "autoAllocateBlocks": True}})
    a = ipam(db)
    a.auto_assign(handle_id="net.b", node="n2", num4=1)
    a.auto_assign(handle_id="net.a", node="n1", num4=4)
    with pytest.raises(NoFreeAddressesError, match="strictAffinity"):
        a.auto_assign(handle_id="net.c", node="n1", num4=1)
    assert "net.c" not in handles(db)


def test_exhausted_pool_raises_and_rolls_back_a_partial_allocation(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/30", 30))
    a = ipam(db)
    with pytest.raises(NoFreeAddressesError, match=r"no free IPv4 address .* p \(10.0.0.0/30\)"):
        a.auto_assign(handle_id="net.big", node="n1", num4=5)
    assert handles(db) == {}
    (blk,) = db.list(K_BLOCK).items
    assert blk["spec"]["allocations"] == [None] * 4


def test_only_enabled_pools_for_the_use_that_select_the_node(db: MemoryBackend) -> None:
    db.create(pool("off", "10.1.0.0/24", 26, disabled=True))
    db.create(pool("tun", "10.2.0.0/24", 26, allowedUses=["Tunnel"]))
    db.create(pool("zone-b", "10.3.0.0/24", 26, nodeSelector="zone == 'b'"))
    db.create(pool("zone-a", "10.4.0.0/24", 26, nodeSelector="zone == 'a'"))
    a = ipam(db)
    (ip,) = a.auto_assign(handle_id="net.c1", node="n1")
    assert ip in ipaddress.ip_network("10.4.0.0/24")
    tun = a.tunnel_address(node="n1", kind="vxlan")
    assert tun in ipaddress.ip_network("10.2.0.0/24") or tun in ipaddress.ip_network(
        "10.4.0.0/24")


def test_no_pool_for_the_node_says_so(db: MemoryBackend) -> None:
    db.create(pool("zone-b", "10.3.0.0/24", 26, nodeSelector="zone == 'b'"))
    with pytest.raises(NoFreeAddressesError, match="selects node 'n1'"):
        ipam(db).auto_assign(handle_id="net.c1", node="n1")


def test_reserved_addresses_are_skipped(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/30", 30))
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPReservation",
               "metadata": {"name": "r"}, "spec": {"reservedCIDRs": ["10.0.0.0/31"]}})
    got = ipam(db).auto_assign(handle_id="net.c1", node="n1", num4=2)
    assert sorted(str(i) for i in got) == ["10.0.0.2", "10.0.0.3"]
    with pytest.raises(NoFreeAddressesError):
        ipam(db).auto_assign(handle_id="net.c2", node="n1")


@pytest.mark.parametrize("state", ["pending", "confirmed"])
def test_a_stale_affinity_for_another_nodes_block_is_skipped_and_removed(
    db: MemoryBackend, state: str
) -> None:
    db.create(pool("p", "10.0.0.0/29", 30))
    a = ipam(db)
    a.auto_assign(handle_id="net.x", node="n2")
    (other,) = db.list(K_BLOCK).items
    # n1 gets an affinity for n2's block (e.g. a stale one): it must not allocate from it.
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
               "metadata": {"name": affinity_name("n1", ipaddress.ip_network(
                   other["spec"]["cidr"]))},
               "spec": {"state": state, "node": "n1", "cidr": other["spec"]["cidr"],
                        "deleted": False}})
    (ip,) = a.auto_assign(handle_id="net.y", node="n1")
    assert ip not in ipaddress.ip_network(other["spec"]["cidr"])
    assert [b["spec"]["node"] for b in db.list(K_AFF).items
            if b["spec"]["cidr"] == other["spec"]["cidr"]] == ["n2"]


def test_concurrent_allocations_never_hand_out_an_address_twice(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/24", 28))
    a = ipam(db)
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(8):
                results.extend(a.auto_assign(handle_id=f"net.t{n}-{i}", node=f"n{1 + n % 2}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 48 and len(set(results)) == 48
    counted = sum(sum(v.values()) for v in handles(db).values())
    in_blocks = sum(sum(a is not None for a in b["spec"]["allocations"])
                    for b in db.list(K_BLOCK).items)
    assert counted == in_blocks == 48


def test_injected_conflicts_are_retried_and_counts_stay_exact(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/24", 26))
    a = ipam(db)
    a.auto_assign(handle_id="net.first", node="n1")
    left = {"n": 5}

    def fault(op: str, body: dict[str, Any]) -> None:
        if op == "update" and body["kind"] == "IPAMBlock" and left["n"] > 0:
            left["n"] -= 1
            raise Conflict("IPAMBlock", body["metadata"]["name"])

    db.fault = fault
    (ip,) = a.auto_assign(handle_id="net.c1", node="n1")
    assert left["n"] == 0
    assert list(handles(db)["net.c1"].values()) == [1]
    assert a.ips_by_handle("net.c1") == [ip]


def test_datastore_failure_on_block_write_leaves_no_handle(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/24", 26))
    a = ipam(db)
    a.auto_assign(handle_id="net.first", node="n1")

    def fault(op: str, body: dict[str, Any]) -> None:
        if op == "update" and body["kind"] == "IPAMBlock":
            raise DatastoreUnavailable("etcd down")

    db.fault = fault
    with pytest.raises(DatastoreUnavailable):
        a.auto_assign(handle_id="net.c1", node="n1")
    db.fault = None
    assert "net.c1" not in handles(db)
    assert a.ips_by_handle("net.c1") == []


def test_release_by_handle_and_by_address_are_idempotent(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/24", 26))
    a = ipam(db)
    ips = a.auto_assign(handle_id="net.c1", node="n1", num4=2)
    other = a.auto_assign(handle_id="net.c2", node="n1", num4=2)
    assert sorted(a.release_by_handle("net.c1")) == sorted(ips)
    assert a.release_by_handle("net.c1") == []
    assert "net.c1" not in handles(db)
    assert a.release_ips([other[0]]) == [other[0]]
    assert list(handles(db)["net.c2"].values()) == [1]
    assert a.release_ips([other[0]]) == []
    a.release_ips([other[1]])
    assert handles(db) == {}


def test_release_by_handle_finds_addresses_whose_handle_object_was_lost(
    db: MemoryBackend,
) -> None:
    db.create(pool("p", "10.0.0.0/24", 26))
    a = ipam(db)
    ips = a.auto_assign(handle_id="net.c1", node="n1")
    db.delete(K_HANDLE, "net.c1")
    assert a.release_by_handle("net.c1") == ips


def test_tunnel_address_is_stable_and_uses_calicos_handle(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/24", 26))
    a = ipam(db)
    first = a.tunnel_address(node="n1", kind="ipip")
    assert a.tunnel_address(node="n1", kind="ipip") == first
    assert tunnel_handle_id("n1", "ipip") == "ipip-tunnel-addr-n1"
    assert a.ips_by_handle("ipip-tunnel-addr-n1") == [first]


def test_ipv6_allocation_from_a_v6_pool(db: MemoryBackend) -> None:
    db.create(pool("p6", "fd00:10::/120", 122))
    db.create(pool("p4", "10.0.0.0/24", 26))
    ips = ipam(db).auto_assign(handle_id="net.c1", node="n1", num4=1, num6=1)
    assert sorted(i.version for i in ips) == [4, 6]


def test_max_blocks_per_host_stops_claims_and_borrowing_is_then_the_only_way(
    db: MemoryBackend,
) -> None:
    db.create(pool("p", "10.0.0.0/28", 30))
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration",
               "metadata": {"name": "default"},
               "spec": {"strictAffinity": True, "autoAllocateBlocks": True,
                        "maxBlocksPerHost": 1}})
    a = ipam(db)
    a.auto_assign(handle_id="net.a", node="n1", num4=4)
    with pytest.raises(NoFreeAddressesError):
        a.auto_assign(handle_id="net.b", node="n1", num4=1)
    assert len(db.list(K_BLOCK).items) == 1


def test_a_pending_affinity_left_by_a_crash_is_completed(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/24", 26))
    # A claimer died after writing its pending affinity and before creating the block.
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
               "metadata": {"name": "n1-10-0-0-64-26"},
               "spec": {"state": "pending", "node": "n1", "cidr": "10.0.0.64/26",
                        "deleted": False}})
    (ip,) = ipam(db).auto_assign(handle_id="net.a", node="n1")
    assert ip in ipaddress.ip_network("10.0.0.64/26")
    (aff,) = db.list(K_AFF).items
    assert aff["spec"]["state"] == "confirmed"


def test_a_fully_reserved_block_is_never_claimed(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/29", 30))
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPReservation",
               "metadata": {"name": "r"}, "spec": {"reservedCIDRs": ["10.0.0.0/30"]}})
    got = ipam(db).auto_assign(handle_id="net.a", node="n1", num4=4)
    assert all(ip in ipaddress.ip_network("10.0.0.4/30") for ip in got)
    assert [b["spec"]["cidr"] for b in db.list(K_BLOCK).items] == ["10.0.0.4/30"]


def test_empty_blocks_of_another_node_are_reclaimed_only_after_a_minute(
    db: MemoryBackend,
) -> None:
    db.create(pool("p", "10.0.0.0/29", 30))
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration",
               "metadata": {"name": "default"},
               "spec": {"strictAffinity": True, "autoAllocateBlocks": True}})
    ipam(db).auto_assign(handle_id="net.old", node="n2", num4=5)
    ipam(db).release_by_handle("net.old")
    assert {b["spec"]["affinity"] for b in db.list(K_BLOCK).items} == {"host:n2"}
    with pytest.raises(NoFreeAddressesError):
        ipam(db).auto_assign(handle_id="net.new", node="n1")
    later = Ipam(db, sleep=lambda s: None, clock=lambda: time.time() + 120)
    (ip,) = later.auto_assign(handle_id="net.new", node="n1")
    owners = {b["spec"]["cidr"]: b["spec"]["affinity"] for b in db.list(K_BLOCK).items}
    assert sorted(owners.values()) == ["host:n1", "host:n2"]
    mine = next(ipaddress.ip_network(c) for c, o in owners.items() if o == "host:n1")
    assert ip in mine
    assert {(a["spec"]["node"], a["spec"]["cidr"]) for a in db.list(K_AFF).items} == {
        (o.removeprefix("host:"), c) for c, o in owners.items()}


def test_manual_pools_are_used_only_when_asked_for(db: MemoryBackend) -> None:
    db.create(pool("manual", "10.9.0.0/24", 26, assignmentMode="Manual"))
    with pytest.raises(NoFreeAddressesError):
        ipam(db).auto_assign(handle_id="net.a", node="n1")
    (ip,) = ipam(db).auto_assign(handle_id="net.a", node="n1", ipv4_pools=["manual"])
    assert ip in ipaddress.ip_network("10.9.0.0/24")


def test_an_invalid_stored_pool_is_skipped(db: MemoryBackend) -> None:
    db.create(pool("bad", "10.9.0.0/24", 99))
    db.create(pool("good", "10.8.0.0/24", 26))
    (ip,) = ipam(db).auto_assign(handle_id="net.a", node="n1")
    assert ip in ipaddress.ip_network("10.8.0.0/24")


def test_an_inconsistent_block_is_never_allocated_from(db: MemoryBackend) -> None:
    db.create(pool("p", "10.0.0.0/29", 30))
    a = ipam(db)
    (first,) = a.auto_assign(handle_id="net.a", node="n1")
    (body,) = db.list(K_BLOCK).items
    ordinal = int(first) - int(ipaddress.ip_network(body["spec"]["cidr"]).network_address)
    body["spec"]["unallocated"].insert(0, ordinal)  # listed free while allocated
    db.update(body)
    got = a.auto_assign(handle_id="net.b", node="n1", num4=4)
    assert first not in got
    assert all(ip not in ipaddress.ip_network(body["spec"]["cidr"]) for ip in got)
