"""End to end with BGP, as `make lab` runs by default: four nodes on two subnets, etcd, an agent
and a wren-bgp (ExaBGP) per node, the external BIRD router, pods made by the real CNI plugin.

The restart time is set to 8 s (BGPConfiguration `nodeMeshMaxRestartTime`, or `maxRestartTime` on
the route-reflector BGPPeer) so that
"routes go away when the sidecar does not come back within the restart time" is observable
quickly; everything else is the lab's configuration.
"""

from __future__ import annotations

import ipaddress
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cluster import BIN, LabCluster, resources_for
from lab.topology import Topology
from tests.integration.agent_support import routes, tear_down, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESTART_TIME = 8


def _docs(mode: str, topo: Topology) -> list[dict[str, object]]:
    docs = resources_for(mode, topo)
    for doc in docs:
        spec = doc["spec"]
        assert isinstance(spec, dict)
        if doc["kind"] == "BGPConfiguration" and spec["nodeToNodeMeshEnabled"]:
            spec["nodeMeshMaxRestartTime"] = f"{RESTART_TIME}s"
        if doc["kind"] == "BGPPeer" and "peerSelector" in spec:  # the route-reflector sessions
            spec["maxRestartTime"] = f"{RESTART_TIME}s"
    return docs


@pytest.fixture(scope="module", params=["bgp", "rr"])
def lab(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    mode = request.param
    topo = Topology(prefix=f"wt-eb{secrets.token_hex(2)}-", node_count=4)
    cluster = LabCluster(topo=topo, mode=mode, work=tmp_path_factory.mktemp(mode) / "lab",
                         pods_per_node=1)
    try:
        topo.create()
        cluster.start_etcd()
        cluster.start_router()
        cluster.configure(_docs(mode, topo))
        for node in topo.nodes:
            cluster.start_node(node)
        for node in topo.nodes:
            cluster.add_pod(node, 1)
        yield cluster
    finally:
        tear_down(cluster)


def converged(lab: LabCluster, timeout: float = 90) -> None:
    ok, _, result = lab.wait_converged(timeout=timeout)
    assert ok, [k for k, v in result.items() if not v]


def block_of(lab: LabCluster, node: str) -> str:
    pod = next(p for p in lab.pods if p.node == node)
    return str(ipaddress.ip_network(f"{pod.ip}/26", strict=False))


def has_route(lab: LabCluster, node_index: int, prefix: str) -> bool:
    return any(r.startswith(prefix) for r in routes(lab.topo.nodes[node_index].netns))


def test_full_matrix_over_bgp_including_the_internet_host(lab: LabCluster) -> None:
    converged(lab)
    status = lab.node_status(lab.topo.nodes[1])
    assert "Wren BGP (wren-bgp) is running" in status
    assert "| up " in status


def test_bgp_sidecar_killed_traffic_keeps_flowing_and_it_rejoins(lab: LabCluster) -> None:
    """Graceful restart: the node's sidecar (and with it ExaBGP) dies; peers keep its block as
    stale; the agent keeps what it learned; pods keep talking; the sidecar rejoins in time."""
    converged(lab)
    a = next(p for p in lab.pods if p.node == "n1")
    b = next(p for p in lab.pods if p.node == "n4")  # the other subnet
    ping = subprocess.Popen(["ip", "netns", "exec", a.netns, "ping", "-i", "0.1", "-c", "60",
                             "-W", "1", b.ip], stdout=subprocess.PIPE, text=True)
    n4 = lab.topo.nodes[3]
    lab.procs.stop("n4-bgp", sig=signal.SIGKILL)
    time.sleep(1.0)
    lab.procs.start("n4-bgp", n4.netns, [str(BIN / "wren-bgp")], env=lab.node_env(n4))
    out, _ = ping.communicate(timeout=60)
    assert " 0% packet loss" in out, out.splitlines()[-2:]
    converged(lab)


def test_bgp_sidecar_gone_longer_than_the_restart_time_its_routes_go(lab: LabCluster) -> None:
    converged(lab)
    n2 = lab.topo.nodes[1]
    block = block_of(lab, "n2")
    assert has_route(lab, 0, block) and has_route(lab, 3, block)
    lab.procs.stop("n2-bgp", sig=signal.SIGKILL)
    started = time.monotonic()
    time.sleep(RESTART_TIME / 2)
    assert has_route(lab, 3, block), "withdrawn before the restart time ran out"
    wait_for(lambda: not has_route(lab, 3, block), timeout=RESTART_TIME + 30,
             what="n4 to drop n2's block after the restart time")
    assert time.monotonic() - started >= RESTART_TIME - 1
    lab.procs.start("n2-bgp", n2.netns, [str(BIN / "wren-bgp")], env=lab.node_env(n2))
    wait_for(lambda: has_route(lab, 3, block), timeout=60, what="n2's block to come back")
    converged(lab)


def test_route_deleted_by_hand_is_repaired(lab: LabCluster) -> None:
    converged(lab)
    n1 = lab.topo.nodes[0]
    block = block_of(lab, "n3")
    subprocess.run(["ip", "-n", n1.netns, "route", "del", block], check=True)
    wait_for(lambda: has_route(lab, 0, block), timeout=20, what="the agent to repair the route")
    converged(lab)


def test_ready_status_file_lists_every_peer(lab: LabCluster) -> None:
    run_dir = Path(lab.node_env(lab.topo.nodes[0])["WREN_RUN_DIR"])
    assert (run_dir / "bgp-status.json").exists()
    assert (run_dir / "bgp.sock").exists()
