"""wren-bgp in a real cluster: etcd, agents, ExaBGP per node, the lab's BIRD router.

Three nodes (n1, n2 on subnet A; n3 on subnet B), one pod each so each node owns a block. What
each sidecar hands its agent is read straight from the channel socket (a second client gets the
same routes messages as the agent), and what the agents made of it from the kernel.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgp.channel import connect
from bgp.status import read_status
from lab.cluster import BIN, LabCluster, resources_for
from lab.topology import LabNode
from tests.integration.agent_support import agent_cluster, routes, wait_for
from wren.prefix import unpack_prefix


def learned(cluster: LabCluster, node: LabNode) -> dict[str, tuple[str, str]]:
    """prefix → (next hop, peer) as the sidecar offers it to the agent right now."""
    path = Path(cluster.node_env(node)["WREN_RUN_DIR"]) / "bgp.sock"
    try:
        conn = connect(path, timeout=2)
    except OSError:
        return {}
    try:
        conn.sock.settimeout(5)
        for line in conn.lines():
            msg = json.loads(line)
            if msg.get("type") == "routes":
                return {str(unpack_prefix(prefix)): (hop, peer)
                        for hop, peer, prefixes in msg["via"] for prefix in prefixes}
        return {}
    finally:
        conn.close()


def blocks(cluster: LabCluster) -> dict[str, str]:
    """node name → its block CIDR, from the pods' addresses (blockSize 26)."""
    out = {}
    for pod in cluster.pods:
        out[pod.node] = str(ipaddress.ip_network(f"{pod.ip}/26", strict=False))
    return out


def everyone_learned_everyone(cluster: LabCluster) -> bool:
    owned = blocks(cluster)
    for node in cluster.topo.nodes:
        got = learned(cluster, node)
        for owner, block in owned.items():
            if owner != node.name and block not in got:
                return False
    return True


def address(cluster: LabCluster, name: str) -> str:
    return str(next(n for n in cluster.topo.nodes if n.name == name).address.ip)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    with agent_cluster("bgp", tmp_path_factory.mktemp("mesh"), nodes=3, bgp=True) as c:
        for node in c.topo.nodes:
            c.add_pod(node, 1)
        wait_for(lambda: everyone_learned_everyone(c), timeout=60,
                 what="every node to learn every other block")
        yield c


def test_full_mesh_gives_each_agent_the_other_blocks_with_the_owners_as_next_hops(
        mesh: LabCluster) -> None:
    owned = blocks(mesh)
    for node in mesh.topo.nodes:
        got = learned(mesh, node)
        for owner, block in owned.items():
            if owner == node.name:
                assert block not in got  # our own block never comes back to us
                continue
            next_hop, peer = got[block]
            assert next_hop == address(mesh, owner), (node.name, block, got[block])
            assert peer == address(mesh, owner)  # learned from the owner itself (mesh)


def test_agents_program_learned_blocks_direct_or_through_the_gateway(mesh: LabCluster) -> None:
    owned = blocks(mesh)
    n1 = mesh.topo.nodes[0]
    wait_for(lambda: any(r.startswith(owned["n3"]) for r in routes(n1.netns)), timeout=30,
             what="n1 to program n3's block")
    table = routes(n1.netns)
    same_subnet = next(r for r in table if r.startswith(owned["n2"]))
    other_subnet = next(r for r in table if r.startswith(owned["n3"]))
    assert f"via {address(mesh, 'n2')}" in same_subnet
    assert "via 10.0.1.1" in other_subnet  # n3 is not on our link: its gateway (recursive)
    assert all(mesh.ping(a.netns, b.ip) for a in mesh.pods for b in mesh.pods if a != b)


def test_node_status_shows_mesh_peers_established(mesh: LabCluster) -> None:
    n1 = mesh.topo.nodes[0]
    def both_up() -> bool:
        out = mesh.node_status(n1)
        rows = [line for line in out.splitlines()
                if any(f"| {address(mesh, n)} " in line for n in ("n2", "n3"))]
        return len(rows) == 2 and all("| up " in r for r in rows)

    wait_for(both_up, timeout=30, what="n1's status to show n2 and n3 up")
    out = mesh.node_status(n1)
    assert "Wren agent: running and ready." in out
    assert "PEER ADDRESS" in out and "node-to-node mesh" in out
    for name in ("n2", "n3"):
        row = next(line for line in out.splitlines() if f"| {address(mesh, name)} " in line)
        assert "| up " in row and "Established" in row


def test_sidecar_probes_pass_once_every_session_is_up(mesh: LabCluster) -> None:
    env = {**os.environ, **mesh.node_env(mesh.topo.nodes[0])}

    def probe(flag: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "wren-bgp"), flag], env=env, capture_output=True,
                              text=True, check=False, timeout=60)

    assert probe("--live").returncode == 0
    wait_for(lambda: probe("--ready").returncode == 0, timeout=60,
             what="n1's sidecar to be ready (mesh peers and the router established)")


def _watch_learned(cluster: LabCluster, node: LabNode, prefix: str,
                   stop: threading.Event, missing: list[float]) -> None:
    """Every 100 ms: is `prefix` still in what the sidecar offers the agent?"""
    while not stop.is_set():
        if prefix not in learned(cluster, node):
            missing.append(time.monotonic())
        stop.wait(0.1)


def _exabgp_pid(cluster: LabCluster, node: LabNode) -> int | None:
    status = read_status(Path(cluster.node_env(node)["WREN_RUN_DIR"]))
    return status.exabgp_pid if status else None


def test_exabgp_killed_on_one_node_its_routes_stay_everywhere_and_come_back(
        mesh: LabCluster) -> None:
    """Graceful restart: n2's ExaBGP dies (SIGKILL); n1 keeps n2's block as stale, the sidecar
    restarts ExaBGP, the sessions come back within the restart time: nothing is withdrawn."""
    n1, n2 = mesh.topo.nodes[0], mesh.topo.nodes[1]
    block = blocks(mesh)["n2"]
    old = _exabgp_pid(mesh, n2)
    assert old is not None
    stop = threading.Event()
    missing: list[float] = []
    watcher = threading.Thread(target=_watch_learned, args=(mesh, n1, block, stop, missing))
    kernel_gone: list[float] = []
    watcher.start()
    try:
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if not any(r.startswith(block) for r in routes(n1.netns)):
                kernel_gone.append(time.monotonic())
            new = _exabgp_pid(mesh, n2)
            if new not in (None, old) and everyone_learned_everyone(mesh):
                status = read_status(Path(mesh.node_env(n2)["WREN_RUN_DIR"]))
                if status and all(p.state == "up" for p in status.peers):
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("n2's sessions did not come back")
    finally:
        stop.set()
        watcher.join()
    assert not missing, "n1's sidecar withdrew n2's block while n2 restarted"
    assert not kernel_gone, "n1's kernel lost the route to n2's block"


def test_sidecar_killed_leaves_no_exabgp_behind_and_the_agent_keeps_its_routes(
        mesh: LabCluster) -> None:
    n3 = mesh.topo.nodes[2]
    owned = blocks(mesh)
    exabgp = _exabgp_pid(mesh, n3)
    assert exabgp is not None
    mesh.procs.stop("n3-bgp", sig=signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{exabgp}").exists(), timeout=10,
             what="ExaBGP to die with its sidecar")
    # The agent keeps what it learned while its sidecar is away.
    time.sleep(1.0)
    table = routes(n3.netns)
    assert any(r.startswith(owned["n1"]) for r in table)
    assert any(r.startswith(owned["n2"]) for r in table)
    mesh.procs.start("n3-bgp", n3.netns, [str(BIN / "wren-bgp")], env=mesh.node_env(n3))
    wait_for(lambda: everyone_learned_everyone(mesh), timeout=60, what="n3 to rejoin")
    table = routes(n3.netns)
    assert any(r.startswith(owned["n1"]) for r in table)


# -- route reflectors -----------------------------------------------------------------------
def rr_docs(cluster_topo: Any, reflectors: set[str]) -> list[dict[str, Any]]:
    docs = resources_for("rr", cluster_topo)
    for doc in docs:
        if doc["kind"] != "Node":
            continue
        name = doc["metadata"]["name"]
        labels = doc["metadata"]["labels"]
        bgp = doc["spec"]["bgp"]
        labels.pop("route-reflector", None)
        bgp.pop("routeReflectorClusterID", None)
        if name in reflectors:
            labels["route-reflector"] = "true"
            bgp["routeReflectorClusterID"] = "244.0.0.1"
    return docs


@pytest.mark.parametrize("reflectors", [{"n1"}, {"n1", "n3"}], ids=["one-rr", "two-rr"])
def test_route_reflectors_deliver_every_block_with_the_original_next_hop(
        tmp_path: Path, reflectors: set[str]) -> None:
    with agent_cluster("rr", tmp_path, nodes=3, bgp=False) as c:
        c.configure(rr_docs(c.topo, reflectors))
        c.start_router()
        for node in c.topo.nodes:
            c.procs.start(f"{node.name}-bgp", node.netns, [str(BIN / "wren-bgp")],
                          env=c.node_env(node))
        for node in c.topo.nodes:
            c.add_pod(node, 1)
        wait_for(lambda: everyone_learned_everyone(c), timeout=60,
                 what="every node to learn every block through the reflectors")
        owned = blocks(c)
        for node in c.topo.nodes:
            got = learned(c, node)
            for owner, block in owned.items():
                if owner != node.name:
                    assert got[block][0] == address(c, owner), (node.name, block, got[block])
        # Clients peer only with reflectors: no client-to-client sessions.
        routers = {str(r) for r in c.topo.router_ips}
        want = {address(c, r) for r in reflectors}

        def client_sessions_only_to_reflectors() -> bool:
            for node in c.topo.nodes:
                if node.name in reflectors:
                    continue
                status = read_status(Path(c.node_env(node)["WREN_RUN_DIR"]))
                peers = {p.address: p.state for p in (status.peers if status else [])
                         if p.address not in routers}
                if set(peers) != want or any(s != "up" for s in peers.values()):
                    return False
            return True

        wait_for(client_sessions_only_to_reflectors, timeout=20, what="client sessions")
        assert all(c.ping(a.netns, b.ip) for a in c.pods for b in c.pods if a != b)
