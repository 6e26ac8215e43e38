"""`python -m lab up|status|down` — what `make lab` and `make lab-down` run.

    MODE=bgp|rr|vxlan|vxlan-crosssubnet|ipip|ipip-crosssubnet   (default bgp)
    NODES=4                                                      (2 per subnet)

`up` cleans any earlier lab first, builds the topology, starts etcd, the external BIRD router,
an agent and a BGP sidecar per node, creates pods through the CNI plugin, then prints the
topology, each node's `wrenctl node status` and pod routes, and the connectivity matrix. It
exits non-zero if any pair cannot talk. The lab stays up for poking at until `down`.

The IPIP modes on a kernel without IPIP (this machine's): the same `up` runs inside Debian's own
kernel booted under qemu (lab/vm.py, software emulation, so minutes instead of seconds), and
its output and exit code come back here; the lab ends with the VM.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

from lab.cluster import MODES, LabCluster, resources_for
from lab.topology import Topology

PREFIX = "wl-"
WORK = Path(os.environ.get("WREN_LAB_DIR") or Path(__file__).resolve().parent / "run")
VM_SCRIPT = Path(__file__).resolve().parent / "vm_lab.sh"
VM_TIMEOUT_S = float(os.environ.get("WREN_VM_TIMEOUT", "1800"))


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
            return up_in_vm(mode, nodes)
    topo.create()
    cluster.start_etcd()
    if cluster.uses_bgp:
        cluster.start_router()
    cluster.configure(resources_for(mode, topo))
    for node in topo.nodes:
        cluster.start_node(node)
    # Each CNI ADD is two Python starts; in parallel they cost one node's worth of waiting.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: cluster.add_pod(*job),
                      [(node, i) for node in topo.nodes
                       for i in range(1, cluster.pods_per_node + 1)]))
    cluster.pods.sort(key=lambda p: p.name)
    _ok, converge, result = cluster.wait_converged(
        float(os.environ.get("WREN_LAB_CONVERGE_TIMEOUT", "90")))
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
    if os.environ.get("WREN_IN_VM") == "1":
        print("lab was up inside the VM; it ends with the VM")
    else:
        print(f"lab is up; logs in {WORK / 'logs'}; `make lab-down` removes it")
    return 0


def up_in_vm(mode: str, nodes: int) -> int:
    from lab.vm import VmSetupError, boot

    print(f"MODE={mode}: this kernel has no IPIP module, so the lab runs inside Debian's own "
          "kernel booted under qemu (software emulation: expect several minutes; the lab ends "
          "with the VM, nothing stays up to poke at).", flush=True)
    with tempfile.TemporaryDirectory(prefix="wren-lab-vm-") as tmp:
        results = Path(tmp) / "results"
        results.mkdir()
        (results / "lab.env").write_text(f"MODE={mode}\nNODES={nodes}\n")
        try:
            run = boot(results_dir=results, console_log=Path(tmp) / "console.log",
                       timeout_s=VM_TIMEOUT_S, script=VM_SCRIPT)
        except VmSetupError as err:
            print(f"cannot start the VM: {err}", file=sys.stderr)
            return 2
        out = results / "lab.out"
        print(out.read_text(errors="replace") if out.exists() else run.console_tail(120))
        if run.timed_out:
            print(f"the VM did not finish in {VM_TIMEOUT_S:.0f} s", file=sys.stderr)
            return 1
        print(f"(inside qemu: {run.seconds:.0f} s from boot to power-off)")
        return run.guest_code if run.guest_code is not None else 1


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
