"""Pool modes on real kernels: VXLAN CrossSubnet picks direct vs tunnel by subnet, mode switches
at runtime converge without touching unrelated routes, and a kernel without IPIP is reported
while everything else is still programmed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.agent_support import agent_cluster, ip, routes, wait_for
from tests.integration.test_agent_vxlan import readiness

pytestmark = pytest.mark.integration


def all_pods_talk(c: object) -> bool:
    pods = c.pods  # type: ignore[attr-defined]
    return all(c.ping(a.netns, b.ip) for a in pods for b in pods if a != b)  # type: ignore[attr-defined]


def remote_route(ns: str, owner_block_prefix: str) -> str:
    return next((r for r in routes(ns) if r.startswith(owner_block_prefix)), "")


def test_vxlan_crosssubnet_then_always_then_back(tmp_path: Path) -> None:
    with agent_cluster("vxlan-crosssubnet", tmp_path, nodes=3) as c:
        for node in c.topo.nodes:
            c.add_pod(node, 1)
        wait_for(lambda: all_pods_talk(c), timeout=40, what="all pods to talk")
        n1 = c.topo.nodes[0]
        block_of = {p.node: ".".join(p.ip.split(".")[:3]) for p in c.pods}

        same = remote_route(n1.netns, block_of["n2"])
        across = remote_route(n1.netns, block_of["n3"])
        assert "via 10.0.1.12 dev eth0" in same, same  # same subnet: direct
        assert "dev vxlan.calico" in across, across  # other subnet: tunnelled
        workload = {r for r in routes(n1.netns) if "dev cali" in r or "blackhole" in r}

        always = json.dumps({"spec": {"vxlanMode": "Always"}})
        c.wrenctl("patch", "ippool", "lab-pool", "-p", always)
        wait_for(lambda: "dev vxlan.calico" in remote_route(n1.netns, block_of["n2"]),
                 timeout=20, what="the same-subnet route to move into the tunnel")
        wait_for(lambda: all_pods_talk(c), timeout=30, what="all pods to talk in Always mode")
        assert {r for r in routes(n1.netns) if "dev cali" in r or "blackhole" in r} == workload

        c.wrenctl("patch", "ippool", "lab-pool", "-p",
                  json.dumps({"spec": {"vxlanMode": "CrossSubnet"}}))
        wait_for(lambda: "via 10.0.1.12 dev eth0" in remote_route(n1.netns, block_of["n2"]),
                 timeout=20, what="the same-subnet route to go direct again")
        wait_for(lambda: all_pods_talk(c), timeout=30, what="all pods to talk again")


def test_kernel_without_ipip_is_reported_and_the_rest_is_programmed(tmp_path: Path) -> None:
    if Path("/sys/module/ipip").exists():
        pytest.skip("this kernel has IPIP; the qemu tier covers IPIP itself")
    with agent_cluster("ipip", tmp_path, nodes=2) as c:
        n1 = c.topo.nodes[0]
        c.add_pod(n1, 1)
        c.add_pod(n1, 2)
        wait_for(lambda: readiness(c, 0)[0] != 0, what="the health endpoint")
        wait_for(lambda: "ipip" in json.dumps(readiness(c, 0)[1]), timeout=30,
                 what="readiness to name the missing IPIP support")
        code, body = readiness(c, 0)
        assert code == 503
        detail = body["reporters"]["ipip"]["detail"]  # type: ignore[index]
        assert "kernel has no ipip support" in detail
        # Everything else is programmed: both pods talk, our block is blackholed.
        wait_for(lambda: c.ping(c.pods[0].netns, c.pods[1].ip), what="local pods to talk")
        assert any(r.startswith("blackhole") for r in routes(n1.netns))
        assert "tunl0" not in ip(n1.netns, "link", "show")
