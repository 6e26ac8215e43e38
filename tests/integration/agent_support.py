"""A small cluster for agent tests: the lab topology, etcd in the router namespace, real agents
(no BGP sidecar unless asked), pods made by the real CNI plugin. Cleans up even on failure."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.cluster import BIN, LabCluster, resources_for
from lab.topology import LabNode, Topology


def two_subnet_topology(prefix: str, nodes: int = 2) -> Topology:
    """n1.. on subnet A, the last node on subnet B (so CrossSubnet and routing matter)."""
    topo = Topology(prefix=prefix, node_count=nodes)
    last = topo.nodes[-1]
    topo.nodes[-1] = LabNode(name=last.name, netns=last.netns,
                             address=ipaddress.IPv4Interface("10.0.2.11/24"), subnet_index=1,
                             gateway=ipaddress.IPv4Address("10.0.2.1"))
    return topo


@contextlib.contextmanager
def agent_cluster(mode: str, tmp: Path, *, nodes: int = 2, bgp: bool = False,
                  extra: Sequence[Mapping[str, Any]] | None = None, mesh: bool = True,
                  agent_env: Mapping[str, str] | None = None) -> Iterator[LabCluster]:
    """`mesh=False` turns the node-to-node mesh off from the start; `agent_env` adds to the
    agents' environment (etcd-datastore secrets live there)."""
    topo = two_subnet_topology(f"wt-ag{secrets.token_hex(2)}-", nodes)
    cluster = LabCluster(topo=topo, mode=mode, work=tmp / "lab")
    try:
        topo.create()
        cluster.start_etcd()
        if bgp:
            cluster.start_router()
        docs = resources_for(mode, topo)
        for doc in docs:
            if doc["kind"] == "BGPConfiguration" and not mesh:
                doc["spec"]["nodeToNodeMeshEnabled"] = False
        cluster.configure([*docs, *(dict(d) for d in extra or ())])
        for node in topo.nodes:
            start_agent(cluster, node, env=agent_env)
            if bgp:
                cluster.procs.start(f"{node.name}-bgp", node.netns, [str(BIN / "wren-bgp")],
                                    env=cluster.node_env(node))
        yield cluster
    finally:
        tear_down(cluster)


def tear_down(cluster: LabCluster) -> None:
    """Remove the cluster, first printing the log tail of any process that died early: in a
    failed test that is usually the cause."""
    for name, proc in cluster.procs.procs.items():
        if not proc.alive():
            print(f"--- {name} exited early:\n{proc.tail(40)}")
    cluster.down()


def start_agent(cluster: LabCluster, node: LabNode,
                env: Mapping[str, str] | None = None) -> None:
    node_env = cluster.node_env(node)
    for key in ("WREN_RUN_DIR", "WREN_STATE_DIR"):
        Path(node_env[key]).mkdir(parents=True, exist_ok=True)
    cluster.procs.start(f"{node.name}-agent", node.netns, [str(BIN / "wren-agent")],
                        env={**node_env, **(env or {})})


def wait_for(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def ip(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True,
                          check=False).stdout


def routes(ns: str) -> set[str]:
    return {line.strip() for line in ip(ns, "route", "show", "proto", "80").splitlines()
            if line.strip()}
