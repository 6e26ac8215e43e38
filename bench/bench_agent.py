#!/usr/bin/env python3
"""The real `wren-agent` against a real etcd: time to program a node, RSS, and event latency.

One lab node namespace (lab.topology) with etcd in the router namespace. Before the agent
starts, the datastore holds E WorkloadEndpoints of this node (each with its own `cali*` veth,
created up front, as the CNI plugin would) and 1,000 IPAM blocks of 10 other nodes in a VXLAN
pool, so those become `via VTEP dev vxlan.calico onlink` routes from the datastore. Then:
  * sync      agent start → all E + 1,000 routes in the kernel (netlink route monitor)
  * rss       /proc/PID/status VmRSS (and VmHWM, the peak) once in sync and settled
  * latency   K endpoints written one at a time (WEP bodies straight into etcd, as the CNI
              plugin does; their veths exist already) → their route seen by a netlink monitor
              in the node's namespace; p50/p99
Needs root. `.venv/bin/python bench/bench_agent.py --endpoints 10000 [--events 100]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, RouteMonitor, cpu_seconds, percentile, summary, write_result

from agent.kernel.netns import in_netns
from lab.cluster import BIN, LabCluster
from lab.topology import Topology
from wren.datastore.connect import backend_from_env

REMOTE_NODES = 10
REMOTE_BLOCKS = 1000


def kernel_route_count(ns: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "route", "show", "proto", "80"], capture_output=True,
                         text=True, check=True).stdout
    return out.count("\n")


def wep_body(node: str, i: int, *, iface: str, ip: str) -> dict[str, Any]:
    pod = f"bench-{i}"
    return {
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": f"{node}-k8s-{pod.replace('-', '--')}-eth0", "namespace": "bench",
                     "labels": {"projectcalico.org/namespace": "bench",
                                "projectcalico.org/orchestrator": "k8s"}},
        "spec": {"orchestrator": "k8s", "node": node, "pod": pod,
                 "containerID": f"{i:016x}", "endpoint": "eth0", "interfaceName": iface,
                 "mac": f"ee:ee:ee:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                 "ipNetworks": [f"{ip}/32"], "profiles": ["kns.bench"]},
    }


def wep_ip(i: int) -> str:
    return str(ipaddress.IPv4Address("10.16.0.0") + i)


def cluster_docs(node: str, address: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "local"},
         "spec": {"cidr": "10.16.0.0/16", "blockSize": 26, "vxlanMode": "Always",
                  "ipipMode": "Never", "nodeSelector": "all()"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "remote"},
         "spec": {"cidr": "10.200.0.0/16", "blockSize": 26, "vxlanMode": "Always",
                  "ipipMode": "Never", "nodeSelector": "all()"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": node},
         "spec": {"bgp": {"ipv4Address": address}}},
    ]
    for r in range(REMOTE_NODES):
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                     "metadata": {"name": f"remote{r}"},
                     "spec": {"bgp": {"ipv4Address": f"10.0.1.{100 + r}/24"},
                              "ipv4VXLANTunnelAddr": f"10.201.0.{r + 1}",
                              "vxlanTunnelMACAddr": f"66:00:00:00:00:{r + 1:02x}"}})
    return docs


def block_body(i: int) -> dict[str, Any]:
    cidr = ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.200.0.0")) + 64 * i, 26))
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPAMBlock",
            "metadata": {"name": str(cidr).replace(".", "-").replace("/", "-")},
            "spec": {"cidr": str(cidr), "affinity": f"host:remote{i % REMOTE_NODES}",
                     "strictAffinity": False, "allocations": [None] * 64,
                     "unallocated": list(range(64)), "attributes": []}}


def veths(ns: str, names: list[str], *, peers_ns: str) -> None:
    """The pods' ends go to one other namespace, so the node sees one link per pod, as a real
    node does (its pods' ends live in the pods' own namespaces)."""
    lines = [f"link add {n} type veth peer name p{n[4:]} netns {peers_ns}" for n in names]
    lines += [f"link set {n} up" for n in names]
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n", text=True,
                   check=True)


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def run(endpoints: int, events: int, work: Path, *, profile: bool) -> dict[str, Any]:
    topo = Topology(prefix=f"wt-bn{secrets.token_hex(2)}-", node_count=1)
    node = topo.nodes[0]
    cluster = LabCluster(topo=topo, mode="vxlan", work=work / "lab")
    result: dict[str, Any] = {"endpoints": endpoints, "remote_blocks": REMOTE_BLOCKS,
                              "remote_nodes": REMOTE_NODES, "events": events}
    monitor: RouteMonitor | None = None
    try:
        topo.create()
        cluster.start_etcd()
        cluster.configure(cluster_docs(node.name, str(node.address)))
        start = time.monotonic()
        pods_ns = f"{topo.prefix}pods"  # topo.destroy() removes it with the rest of the prefix
        subprocess.run(["ip", "netns", "add", pods_ns], check=True)
        veths(node.netns, [f"cali{i:05d}" for i in range(endpoints + events)], peers_ns=pods_ns)
        result["veth_setup_s"] = round(time.monotonic() - start, 2)
        env = cluster.node_env(node)
        start = time.monotonic()
        with in_netns(topo.router_ns):  # etcd listens inside the router namespace
            backend = backend_from_env(env)
            for i in range(REMOTE_BLOCKS):
                backend.create(block_body(i))
            for i in range(endpoints):
                backend.create(wep_body(node.name, i, iface=f"cali{i:05d}", ip=wep_ip(i)))
        result["datastore_write_s"] = round(time.monotonic() - start, 2)

        monitor = RouteMonitor(node.netns)
        for key in ("WREN_RUN_DIR", "WREN_STATE_DIR"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        proc = cluster.procs.start("agent", node.netns, [str(BIN / "wren-agent")], env=env)
        want = endpoints + REMOTE_BLOCKS
        deadline = start + 600
        while time.monotonic() < deadline:
            time.sleep(0.25)
            if kernel_route_count(node.netns) >= want:
                polled = time.monotonic()
                break
        else:
            raise RuntimeError(f"agent did not program {want} routes; "
                               f"kernel has {kernel_route_count(node.netns)}")
        # The monitor's time is exact unless a burst overflowed its socket (ENOBUFS); then the
        # dump that saw them all is the upper bound.
        last = monitor.last
        done = last if monitor.count >= want and last is not None else polled
        result["sync_s"] = round(done - start, 3)
        result["sync_from_monitor"] = monitor.count >= want
        time.sleep(3.0)  # let it settle (upkeep, health, the first gc.freeze())
        pid = proc.popen.pid
        result["rss_kb"] = status(pid)
        result["agent_cpu_s_at_sync"] = round(cpu_seconds(pid), 2)
        profiler = None
        if profile and shutil.which("py-spy", path=str(BIN)):
            out = RESULTS / f"profile-agent-{endpoints}.svg"
            profiler = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(pid),
                                         "--output", str(out), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        samples: list[float] = []
        missed = 0
        with in_netns(topo.router_ns):
            for k in range(events):
                i = endpoints + k
                body = wep_body(node.name, i, iface=f"cali{i:05d}", ip=wep_ip(i))
                t0 = time.monotonic()
                backend.create(body)
                seen = monitor.wait_for(f"{wep_ip(i)}/32", timeout=60.0)
                if seen is None:
                    missed += 1
                else:
                    samples.append(seen - t0)
                time.sleep(0.02)
        result["latency_ms"] = {**summary(samples), "p50": round(percentile(samples, 50) * 1e3, 3),
                                "p99": round(percentile(samples, 99) * 1e3, 3),
                                "missed": missed}
        del result["latency_ms"]["samples"]
        result["rss_after_events_kb"] = status(pid)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its flame graph on SIGINT
            profiler.wait(timeout=60)
        backend.close()
        return result
    finally:
        if monitor is not None:
            monitor.close()
        cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--endpoints", default="100,10000")
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--events-large", type=int, default=20,
                        help="events for runs above 1,000 endpoints (each is slow there)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy flame graph of the agent during the events")
    parser.add_argument("--out", default="agent")
    args = parser.parse_args()

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)  # so `finally` cleans up

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runs = []
    with tempfile.TemporaryDirectory(prefix="wt-bn-") as tmp:
        for e in (int(s) for s in args.endpoints.split(",")):
            events = args.events if e <= 1000 else args.events_large
            res = run(e, events, Path(tmp) / str(e), profile=args.profile)
            print(res, flush=True)
            runs.append(res)
            path = write_result(args.out, {"benchmark": "wren-agent against etcd",
                                           "runs": runs})
            print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
