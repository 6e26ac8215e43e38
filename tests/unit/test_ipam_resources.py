"""What IPAM and the CNI plugin write must be valid resources of the shared model, so
`wrenctl get`, the agent and the Kubernetes CRDs read them back."""

from __future__ import annotations

import ipaddress

from wren.cni.plugin import Workload, endpoint_body
from wren.cni.spec import CniEnv
from wren.ipam.block import Attribute, Block
from wren.ipam.resources import (
    AFFINITY_PENDING,
    Affinity,
    Handle,
    affinity_body,
    affinity_from_body,
    block_body,
    block_from_body,
    handle_body,
    handle_from_body,
)
from wren.model import parse

NET = ipaddress.ip_network("10.0.0.0/26")


def test_block_body_parses_and_round_trips() -> None:
    block, _ = Block.new(NET, affinity="host:n1").allocate(
        2, attribute=Attribute("k8s-pod-network.abc", {"pod": "p", "namespace": "default"}))
    body = block_body(block)
    res = parse(body)
    assert res.spec.cidr == NET and res.spec.allocations[:3] == (0, 0, None)
    again, _ = block_from_body(res.to_body())
    assert again == block


def test_affinity_and_handle_bodies_parse_and_round_trip() -> None:
    aff = Affinity(node="node-1", cidr=NET, state=AFFINITY_PENDING)
    assert parse(affinity_body(aff)).spec.state == "pending"
    assert affinity_from_body(affinity_body(aff)) == aff
    handle = Handle("k8s-pod-network.abc", {str(NET): 2})
    assert parse(handle_body(handle)).spec.block == {str(NET): 2}
    assert handle_from_body(handle_body(handle)) == handle


def test_workloadendpoint_body_parses() -> None:
    cni = CniEnv(command="ADD", container_id="abc123", netns="/var/run/netns/x", ifname="eth0",
                 path=(), args={"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web-0"})
    wl = Workload(node="n1", namespace="default", pod="web-0", container_id=cni.container_id,
                  ifname="eth0", netns=cni.netns, handle="k8s-pod-network.abc123")
    body = endpoint_body(wl, host_ifname=wl.host_ifname, mac="02:00:00:00:00:01",
                          addresses=[ipaddress.ip_interface("10.0.0.5/32")])
    res = parse(body)
    assert res.metadata.name == "n1-k8s-web--0-eth0"
    assert res.spec.interface_name == wl.host_ifname
