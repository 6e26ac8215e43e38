"""wren.client over the in-memory backend: validation before writes, optimistic concurrency."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wren.client import Client
from wren.datastore.memory import MemoryBackend
from wren.errors import AlreadyExists, Conflict, NotFound, ValidationError
from wren.kinds import kind_by_name
from wren.model import BGPPeer, IPPool, IPPoolSpec, Metadata, WorkloadEndpoint, parse


def pool_body(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, **spec},
    }


def make_pool(name: str, cidr: str, **spec: Any) -> IPPool:
    res = parse(pool_body(name, cidr, **spec))
    assert isinstance(res, IPPool)
    return res


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def client(backend: MemoryBackend) -> Client:
    return Client(backend)


def test_create_then_get_returns_the_typed_resource_with_its_store_version(client: Client) -> None:
    created = client.create(make_pool("p1", "10.0.0.0/16"))
    assert created.metadata.resource_version
    got = client.get("ippool", "p1")
    assert isinstance(got, IPPool)
    assert got == created
    assert client.get(IPPool, "p1").spec.block_size == 26


def test_create_of_an_existing_name_raises_already_exists(client: Client) -> None:
    client.create(make_pool("p1", "10.0.0.0/16"))
    with pytest.raises(AlreadyExists):
        client.create(make_pool("p1", "10.0.0.0/16"))


def test_overlapping_pool_is_rejected_naming_both_pools_and_nothing_is_written(
    client: Client, backend: MemoryBackend
) -> None:
    client.create(make_pool("first", "10.0.0.0/16"))
    with pytest.raises(ValidationError) as err:
        client.create(make_pool("second", "10.0.128.0/17"))
    assert err.value.field == "spec.cidr"
    assert "first" in str(err.value) and "second" in str(err.value)
    assert [p.name for p in client.list(IPPool)] == ["first"]
    assert len(backend.list(kind_by_name("IPPool")).items) == 1


def test_apply_of_overlapping_pool_is_rejected(client: Client) -> None:
    client.create(make_pool("first", "10.0.0.0/16"))
    with pytest.raises(ValidationError, match="overlaps"):
        client.apply(make_pool("second", "10.0.0.0/8"))


def test_pools_of_different_families_never_overlap(client: Client) -> None:
    client.create(make_pool("v4", "10.0.0.0/16"))
    client.create(make_pool("v6", "fd00::/48"))
    assert {p.name for p in client.list(IPPool)} == {"v4", "v6"}


def test_hand_built_invalid_resource_is_validated_before_write(client: Client) -> None:
    bad = IPPool(
        metadata=Metadata("v6"),
        spec=IPPoolSpec(cidr=ipaddress.ip_network("fd00::/48"), ipip_mode="Always"),
    )
    with pytest.raises(ValidationError) as err:
        client.create(bad)
    assert err.value.field == "spec.ipipMode"
    with pytest.raises(NotFound):
        client.get(IPPool, "v6")


def test_update_with_the_version_read_succeeds(client: Client) -> None:
    created = client.create(make_pool("p1", "10.0.0.0/16"))
    changed = dataclasses.replace(
        created, spec=dataclasses.replace(created.spec, nat_outgoing=True)
    )
    updated = client.update(changed)
    assert updated.spec.nat_outgoing is True
    assert updated.metadata.resource_version != created.metadata.resource_version


def test_update_with_a_stale_version_raises_conflict(client: Client) -> None:
    created = client.create(make_pool("p1", "10.0.0.0/16"))
    client.update(dataclasses.replace(
        created, spec=dataclasses.replace(created.spec, nat_outgoing=True)))
    stale = dataclasses.replace(created, spec=dataclasses.replace(created.spec, disabled=True))
    with pytest.raises(Conflict):
        client.update(stale)
    assert client.get(IPPool, "p1").spec.disabled is False


def test_update_without_a_resource_version_is_refused(client: Client) -> None:
    client.create(make_pool("p1", "10.0.0.0/16"))
    with pytest.raises(ValidationError, match="resourceVersion"):
        client.update(make_pool("p1", "10.0.0.0/16", natOutgoing=True))


def test_update_of_a_missing_resource_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        client.update(make_pool("p1", "10.0.0.0/16").with_metadata(resource_version="7"))


def test_apply_creates_then_overwrites_regardless_of_stored_version(client: Client) -> None:
    first = client.apply(make_pool("p1", "10.0.0.0/16"))
    second = client.apply(
        make_pool("p1", "10.0.0.0/16", vxlanMode="CrossSubnet").with_metadata(
            resource_version="999"
        )
    )
    assert second.spec.vxlan_mode == "CrossSubnet"
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)


def test_apply_retries_when_another_writer_races_it(
    client: Client, backend: MemoryBackend
) -> None:
    client.create(make_pool("p1", "10.0.0.0/16"))
    raced: list[bool] = []

    def sneak_in_one_write(op: str, body: dict[str, Any]) -> None:
        if op == "update" and not raced:
            raced.append(True)
            backend.fault = None
            stored = backend.get(kind_by_name("IPPool"), "p1")
            stored["spec"]["disabled"] = True
            backend.update(stored)
            backend.fault = sneak_in_one_write

    backend.fault = sneak_in_one_write
    applied = client.apply(make_pool("p1", "10.0.0.0/16", natOutgoing=True))
    assert raced == [True]
    assert applied.spec.nat_outgoing is True and applied.spec.disabled is False


def test_pool_cidr_cannot_be_changed(client: Client) -> None:
    client.create(make_pool("p1", "10.0.0.0/16"))
    with pytest.raises(ValidationError) as err:
        client.apply(make_pool("p1", "10.1.0.0/16"))
    assert err.value.field == "spec.cidr"


def test_pool_block_size_cannot_be_changed(client: Client) -> None:
    client.create(make_pool("p1", "10.0.0.0/16"))
    with pytest.raises(ValidationError) as err:
        client.replace(make_pool("p1", "10.0.0.0/16", blockSize=28))
    assert err.value.field == "spec.blockSize"


def test_new_pool_conflicting_with_existing_blocks_of_other_size_is_rejected(
    client: Client, backend: MemoryBackend
) -> None:
    backend.create({
        "apiVersion": "projectcalico.org/v3", "kind": "IPAMBlock",
        "metadata": {"name": "10-0-0-0-28"},
        "spec": {"cidr": "10.0.0.0/28", "allocations": [None] * 16,
                 "unallocated": list(range(16)), "attributes": []},
    })
    with pytest.raises(ValidationError, match="conflicts with existing block"):
        client.create(make_pool("p1", "10.0.0.0/16"))
    client.create(make_pool("p1", "10.0.0.0/16", blockSize=28))


def test_replace_requires_the_resource_to_exist(client: Client) -> None:
    with pytest.raises(NotFound):
        client.replace(make_pool("p1", "10.0.0.0/16"))


def test_list_skips_invalid_stored_objects_and_reports_them(
    client: Client, backend: MemoryBackend
) -> None:
    client.create(make_pool("good", "10.0.0.0/16"))
    backend.create(pool_body("bad", "10.1.0.0/16", ipipMode="Sometimes"))
    assert [p.name for p in client.list("IPPool")] == ["good"]
    valid, invalid = client.list_with_errors("IPPool")
    assert [p.name for p in valid] == ["good"]
    assert [(i.name, i.error.field) for i in invalid] == [("bad", "spec.ipipMode")]


def test_get_of_invalid_stored_object_raises_validation_error(
    client: Client, backend: MemoryBackend
) -> None:
    backend.create(pool_body("bad", "10.1.0.0/33"))
    with pytest.raises(ValidationError):
        client.get(IPPool, "bad")


def test_delete_removes_and_returns_the_resource(client: Client) -> None:
    client.create(make_pool("p1", "10.0.0.0/16"))
    deleted = client.delete("pools", "p1")
    assert isinstance(deleted, IPPool)
    with pytest.raises(NotFound):
        client.get(IPPool, "p1")
    with pytest.raises(NotFound):
        client.delete(IPPool, "p1")


def test_delete_with_stale_version_raises_conflict(client: Client) -> None:
    created = client.create(make_pool("p1", "10.0.0.0/16"))
    client.apply(make_pool("p1", "10.0.0.0/16", natOutgoing=True))
    with pytest.raises(Conflict):
        client.delete(IPPool, "p1", resource_version=created.metadata.resource_version)


def test_namespaced_workload_endpoints_are_listed_per_namespace(client: Client) -> None:
    for ns, name in (("default", "n1-k8s-a-eth0"), ("prod", "n1-k8s-b-eth0")):
        wep = parse({
            "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"node": "n1", "interfaceName": "cali1234", "ipNetworks": ["10.0.0.1/32"]},
        })
        client.create(wep)
    assert [w.name for w in client.list(WorkloadEndpoint, "prod")] == ["n1-k8s-b-eth0"]
    assert len(client.list(WorkloadEndpoint)) == 2
    assert client.get(WorkloadEndpoint, "n1-k8s-a-eth0", "default").spec.node == "n1"
    assert client.get(WorkloadEndpoint, "n1-k8s-a-eth0").metadata.namespace == "default"
    with pytest.raises(NotFound):
        client.get(WorkloadEndpoint, "n1-k8s-b-eth0")


def test_cluster_scoped_get_ignores_a_namespace_argument(client: Client) -> None:
    client.create(parse({
        "apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "rr"},
        "spec": {"peerSelector": "route-reflector == 'true'"},
    }))
    assert isinstance(client.get(BGPPeer, "rr", "kube-system"), BGPPeer)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(8, 20)), min_size=1, max_size=8))
def test_stored_pools_never_overlap_whatever_order_they_are_created_in(
    specs: list[tuple[int, int]],
) -> None:
    client = Client(MemoryBackend())
    for i, (octet, prefix) in enumerate(specs):
        cidr = ipaddress.ip_network(f"10.{octet}.0.0/{prefix}", strict=False)
        stored = client.list(IPPool)
        clash = any(p.spec.cidr.overlaps(cidr) for p in stored)
        try:
            client.create(make_pool(f"p{i}", str(cidr)))
        except ValidationError:
            assert clash
        else:
            assert not clash
    pools = client.list(IPPool)
    for a in pools:
        for b in pools:
            assert a is b or not a.spec.cidr.overlaps(b.spec.cidr)
