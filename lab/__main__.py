"""`python -m lab up|status|down` — what `make lab` and `make lab-down` run.

    MODE=bgp|rr|vxlan|vxlan-crosssubnet|ipip|ipip-crosssubnet   (default bgp)
    NODES=4                                                      (2 per subnet)

`up` cleans any earlier lab first, builds the topology, starts etcd, the external BIRD router,
an agent and a BGP sidecar per node, creates pods through the CNI plugin, then prints the
topology, each node's `wrenctl node status` and pod routes, and the connectivity matrix. It
exits non-zero if any pair cannot talk. The lab stays up for poking at until `down`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lab.cluster import MODES, LabCluster, resources_for
from lab.topology import Topology

PREFIX = "wl-"
WORK = Path(__file__).resolve().parent / "run"


def _print_matrix(cluster: LabCluster, result: dict[tuple[str, str], bool]) -> None:
    names = [p.name for p in cluster.pods] + ["internet"]
    width = max(len(n) for n in names) + 1
    print(" " * width + " ".join(n[-8:].rjust(8) for n in names))
    for src in cluster.pods:
        cells = []
        for dst in names:
            if dst == src.name:
                cells.append("-".rjust(8))
            else:
                cells.append(("ok" if result.get((src.name, dst)) else "FAIL").rjust(8))
        print(src.name.ljust(width) + " ".join(cells))


def up(mode: str, nodes: int) -> int:
    started = time.monotonic()
    topo = Topology(prefix=PREFIX, node_count=nodes)
    cluster = LabCluster(topo=topo, mode=mode, work=WORK)
    cluster.down()  # a dirty machine: clean first
    if mode.startswith("ipip") and not Path("/sys/module/ipip").exists():
        rc = os.system("modprobe ipip >/dev/null 2>&1")
        if rc != 0:
            print(f"MODE={mode}: this kernel has no IPIP module. Run the IPIP lab inside the "
                  "qemu-booted Debian kernel: `make test-vm` runs the IPIP scenarios there.",
                  file=sys.stderr)
            return 2
    topo.create()
    cluster.start_etcd()
    if cluster.uses_bgp:
        cluster.start_router()
    cluster.configure(resources_for(mode, topo))
    for node in topo.nodes:
        cluster.start_node(node)
    for node in topo.nodes:
        for i in range(1, cluster.pods_per_node + 1):
            cluster.add_pod(node, i)
    _ok, converge, result = cluster.wait_converged()
    print(f"\n== Wren lab: MODE={mode}, {len(topo.nodes)} nodes on 10.0.1.0/24 and 10.0.2.0/24, "
          f"router {topo.router_ns}, internet host {topo.inet_host} ==")
    for node in topo.nodes:
        pods = ", ".join(f"{p.name}={p.ip}" for p in cluster.pods if p.node == node.name)
        print(f"  {node.name} ({node.netns}) {node.address}  pods: {pods}")
    for node in topo.nodes:
        print(f"\n-- {node.name}: wrenctl node status")
        print(cluster.node_status(node).rstrip())
        print(f"-- {node.name}: routes (proto 80)")
        print(cluster.pod_routes(node).rstrip())
    print("\n== connectivity matrix (row pings column) ==")
    _print_matrix(cluster, result)
    failed = [k for k, v in result.items() if not v]
    print(f"\nconverged in {converge:.1f} s; total {time.monotonic() - started:.1f} s; "
          f"{len(result) - len(failed)}/{len(result)} pairs ok")
    if failed:
        print("FAILED pairs: " + ", ".join(f"{a}->{b}" for a, b in failed), file=sys.stderr)
        for name, proc in cluster.procs.procs.items():
            if not proc.alive():
                print(f"{name} exited:\n{proc.tail()}", file=sys.stderr)
        return 1
    print(f"lab is up; logs in {WORK / 'logs'}; `make lab-down` removes it")
    return 0


def down() -> int:
    LabCluster(topo=Topology(prefix=PREFIX, node_count=0), work=WORK).down()
    print("lab removed")
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    mode = os.environ.get("MODE", "bgp")
    nodes = int(os.environ.get("NODES", "4"))
    if mode not in MODES:
        print(f"MODE={mode!r}: choose one of {', '.join(MODES)}", file=sys.stderr)
        return 2
    if command == "up":
        return up(mode, nodes)
    if command == "down":
        return down()
    print("usage: python -m lab up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
