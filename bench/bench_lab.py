#!/usr/bin/env python3
"""The real lab (lab.cluster.LabCluster): pod convergence over BGP, and scale.

convergence  a 4-node lab (2 nodes per subnet, one pod each) in full mesh (MODE=bgp) and with
             route reflectors (MODE=rr: n1 and n3 reflect, n2 and n4 are clients). Pods are made
             on n2 one at a time by the real CNI plugin (`cluster.add_pod`); for each:
               * first reply   CNI ADD started → first echo reply seen by `ping -D -i 0.01`
                               from the new pod to the pod on n4 (the other subnet)
               * route on n4   CNI ADD started → the new pod's block in n4's kernel (netlink
                               monitor in n4's namespace): the mesh / reflector path alone
               * route on all  ... in the kernel of every other node (the last one)
             The pool uses /31 blocks here (the lab's own pool: /26), so every other pod is the
             first of a new block that BGP must carry ("new block"); the pod after it lands in
             that block, whose route is everywhere already ("existing block").
scale        N nodes (full mesh 10 and 20, route reflectors: 2 reflectors + 50 clients), one pod
             each made by the CNI plugin before the agents start (so every node owns a block),
             then every agent and sidecar started at once:
               * converge      start → every node has every other node's block in its kernel
               * per process   CPU s (utime+stime, /proc/PID/stat) and VmRSS (/proc/PID/status)
                               at convergence and after a settle time, for each agent and each
                               sidecar (wren-bgp + its ExaBGP + ExaBGP's API process)
Needs root. Everything lives in namespaces named `wb-<hex>-*` and a work dir under /tmp; every
process and namespace is removed at the end, also on error, SIGTERM or Ctrl-C.

    .venv/bin/python bench/bench_lab.py [--pods 20] [--scale bgp:10,bgp:20,rr:52] [--settle 30]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import errno
import ipaddress
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from common import percentile, write_result

from agent.kernel.netlink import RouteSocket, decode_route, iter_messages
from agent.kernel.netns import in_netns
from lab.cluster import BIN, LabCluster, Pod, resources_for, route_reflectors
from lab.topology import LabNode, Topology

RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RT_TABLE_MAIN = 254
PROTO_WREN = 80
CONVERGENCE_BLOCK_SIZE = 31
LAB_BLOCK_SIZE = 26
PING_INTERVAL = 0.01


def prefix() -> str:
    return f"wb-{secrets.token_hex(2)}-"


# -- kernel routes of many namespaces, event driven ------------------------------------------
class RouteWatch:
    """The proto-80 IPv4 routes of the main table in each namespace, kept current from netlink
    notifications (a dump again if the kernel dropped some), with the monotonic time each
    destination first appeared in each namespace."""

    def __init__(self, namespaces: Sequence[str]) -> None:
        self.routes: dict[str, set[str]] = {ns: set() for ns in namespaces}
        self.first_seen: dict[tuple[str, str], float] = {}
        self.stamp = time.monotonic()  # when the current state was last changed
        self.cond = threading.Condition()
        self._sel = selectors.DefaultSelector()
        self._dumpers: dict[str, RouteSocket] = {}
        self._socks: list[socket.socket] = []
        self._stop = False
        for ns in namespaces:
            with in_netns(ns):
                mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                    socket.NETLINK_ROUTE)
                self._dumpers[ns] = RouteSocket()
            mon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            mon.bind((0, RTMGRP_IPV4_ROUTE))
            mon.setblocking(False)
            self._socks.append(mon)
            self._sel.register(mon, selectors.EVENT_READ, ns)
            self._resync(ns, time.monotonic())  # after subscribing: nothing falls in between
        self._thread = threading.Thread(target=self._run, daemon=True, name="route-watch")
        self._thread.start()

    def _resync(self, ns: str, now: float) -> None:
        dumped = {str(r.dst) for r in self._dumpers[ns].dump_routes(
            family=socket.AF_INET, protocol=PROTO_WREN) if r.table == RT_TABLE_MAIN}
        with self.cond:
            for dst in dumped - self.routes[ns]:
                self.first_seen.setdefault((ns, dst), now)
            self.routes[ns] = dumped
            self.stamp = now
            self.cond.notify_all()

    def _run(self) -> None:
        buf = bytearray(1 << 20)
        while not self._stop:
            for key, _ in self._sel.select(timeout=0.2):
                ns: str = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                while True:
                    try:
                        n = sock.recv_into(buf)
                    except BlockingIOError:
                        break
                    except OSError as err:
                        if err.errno == errno.ENOBUFS:
                            self._resync(ns, time.monotonic())
                            continue
                        raise
                    now = time.monotonic()
                    with self.cond:
                        for msg in iter_messages(buf, n):
                            if msg.type not in (RTM_NEWROUTE, RTM_DELROUTE):
                                continue
                            route = decode_route(buf, msg.start, msg.end)
                            if (route is None or route.protocol != PROTO_WREN
                                    or route.table != RT_TABLE_MAIN):
                                continue
                            dst = str(route.dst)
                            if msg.type == RTM_NEWROUTE:
                                self.routes[ns].add(dst)
                                self.first_seen.setdefault((ns, dst), now)
                            else:
                                self.routes[ns].discard(dst)
                        self.stamp = now
                        self.cond.notify_all()

    def wait(self, pred: Callable[[], bool], timeout: float) -> float | None:
        """Wait until `pred()` (called under the lock) holds; the monotonic time of the change
        that made it true, or None on timeout."""
        with self.cond:
            if self.cond.wait_for(pred, timeout=timeout):
                return self.stamp
            return None

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        for sock in self._socks:
            sock.close()
        for dumper in self._dumpers.values():
            dumper.close()
        self._sel.close()


# -- processes -----------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_sample(pid: int) -> dict[str, Any]:
    """CPU seconds (utime+stime) and VmRSS/VmHWM (KiB) of one process; its command name."""
    fields = _stat(pid)
    out: dict[str, Any] = {"pid": pid, "cpu_s": (int(fields[11]) + int(fields[12])) / CLK_TCK}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0].lower() + "_kb"] = int(line.split()[1])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    out["cmd"] = " ".join(Path(a.decode()).name for a in cmdline[:3] if a)[:60]
    return out


def group_sample(pid: int, kids: dict[int, list[int]]) -> dict[str, Any]:
    """A process and its descendants: summed CPU and RSS, plus each member."""
    members = []
    for p in tree(pid, kids):
        with contextlib.suppress(OSError, IndexError, ValueError):
            members.append(proc_sample(p))
    return {"cpu_s": round(sum(m["cpu_s"] for m in members), 2),
            "rss_kb": sum(m.get("vmrss_kb", 0) for m in members),
            "members": members}


def sample_cluster(cluster: LabCluster) -> dict[str, Any]:
    kids = children_map()
    out: dict[str, Any] = {"t": time.monotonic(), "agents": {}, "sidecars": {}, "other": {}}
    for name, proc in cluster.procs.procs.items():
        if not proc.alive():
            continue
        if name.endswith("-agent"):
            out["agents"][name[:-6]] = group_sample(proc.pid, kids)
        elif name.endswith("-bgp"):
            out["sidecars"][name[:-4]] = group_sample(proc.pid, kids)
        else:
            out["other"][name] = group_sample(proc.pid, kids)
    return out


def stats(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    vals = sorted(values)
    if not vals:
        return {}
    return {"n": len(vals), "median": round(statistics.median(vals), digits),
            "p95": round(percentile(vals, 95), digits), "min": round(vals[0], digits),
            "max": round(vals[-1], digits), "mean": round(statistics.fmean(vals), digits)}


def bgp_sessions(cluster: LabCluster, node: LabNode) -> dict[str, int]:
    path = Path(cluster.node_env(node)["WREN_RUN_DIR"]) / "bgp-status.json"
    try:
        peers = json.loads(path.read_text()).get("peers", [])
    except (OSError, ValueError):
        return {"up": 0, "peers": 0}
    return {"up": sum(1 for p in peers if p.get("state") == "up"), "peers": len(peers)}


# -- one lab -------------------------------------------------------------------------------
KEEP_LOGS: Path | None = None  # --keep-logs: each lab's logs are copied there before `down`


@contextlib.contextmanager
def lab(mode: str, nodes: int, work: Path, *, block_size: int = LAB_BLOCK_SIZE
        ) -> Iterator[LabCluster]:
    """Topology, etcd, the external BIRD router and the lab's resources (agents not started).
    Everything it made is removed on the way out, whatever happens."""
    topo = Topology(prefix=prefix(), node_count=nodes)
    cluster = LabCluster(topo=topo, mode=mode, work=work / f"{mode}-{nodes}", pods_per_node=1)
    try:
        topo.create()
        cluster.start_etcd()
        cluster.start_router()
        docs = resources_for(mode, topo)
        for doc in docs:
            if doc["kind"] == "IPPool":
                doc["spec"]["blockSize"] = block_size
        cluster.configure(docs)
        yield cluster
    finally:
        for name, proc in cluster.procs.procs.items():
            if not proc.alive():
                print(f"--- {name} exited early:\n{proc.tail(20)}", flush=True)
        if KEEP_LOGS is not None:
            shutil.copytree(cluster.work / "logs", KEEP_LOGS / f"{mode}-{nodes}-{topo.prefix}",
                            dirs_exist_ok=True, ignore_dangling_symlinks=True)
        cluster.down()


def block_of(ip: str, size: int) -> str:
    return str(ipaddress.ip_network(f"{ip}/{size}", strict=False))


def add_pods(cluster: LabCluster, nodes: Sequence[LabNode], index: int = 1,
             workers: int = 4) -> list[Pod]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda n: cluster.add_pod(n, index), nodes))


# -- 1. convergence ------------------------------------------------------------------------
_PING_TS = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")


def first_reply(src_ns: str, dst: str, timeout: float, started: list[int]) -> float | None:
    """Wall-clock time of the first echo reply of a 10 ms ping loop (None: none in time)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", src_ns, "ping", "-D", "-n", "-i", str(PING_INTERVAL),
         "-W", "1", "-w", str(int(timeout)), dst],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started.append(proc.pid)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = _PING_TS.match(line)
            if m:
                return float(m.group(1))
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        started.remove(proc.pid)


def convergence(mode: str, pods: int, work: Path, pings: list[int]) -> dict[str, Any]:
    with lab(mode, 4, work, block_size=CONVERGENCE_BLOCK_SIZE) as cluster:
        topo = cluster.topo
        n1, n2, _n3, n4 = topo.nodes
        for node in topo.nodes:
            cluster.start_node(node)
        base = add_pods(cluster, topo.nodes)
        remote = next(p for p in base if p.node == n4.name)
        others = [n.netns for n in topo.nodes if n is not n2]
        watch = RouteWatch([n2.netns, *others])
        try:
            blocks = {block_of(p.ip, CONVERGENCE_BLOCK_SIZE): p.node for p in base}
            # Warm up: the lab converged (every node has every block) and n2 reaches n4's pod.
            t = watch.wait(lambda: all(
                b in watch.routes[n.netns] for n in topo.nodes if n is not n2
                for b, owner in blocks.items() if owner != n.name), timeout=180)
            if t is None:
                raise RuntimeError(f"{mode}: 4-node lab did not converge in 180 s")
            ok, took, _ = cluster.wait_converged(timeout=120)
            if not ok:
                raise RuntimeError(f"{mode}: pods cannot reach each other after {took:.0f} s")
            runs: list[dict[str, Any]] = []
            index = 100
            new_blocks = 0
            while new_blocks < pods:
                index += 1
                t0_wall, t0 = time.time(), time.monotonic()
                pod = cluster.add_pod(n2, index)
                cni = time.monotonic() - t0
                block = block_of(pod.ip, CONVERGENCE_BLOCK_SIZE)
                fresh = block not in blocks
                blocks[block] = n2.name
                reply_wall = first_reply(pod.netns, remote.ip, 30, pings)

                def everywhere(b: str = block) -> bool:
                    return all(b in watch.routes[ns] for ns in others)

                on_all = watch.wait(everywhere, timeout=60)
                run: dict[str, Any] = {
                    "pod": pod.name, "ip": pod.ip, "block": block, "new_block": fresh,
                    "cni_s": round(cni, 3),
                    "first_reply_s": (round(reply_wall - t0_wall, 3)
                                      if reply_wall is not None else None),
                    "reply_after_cni_s": (round(reply_wall - t0_wall - cni, 3)
                                          if reply_wall is not None else None),
                }
                with watch.cond:
                    seen = {ns: watch.first_seen.get((ns, block)) for ns in [n2.netns, *others]}
                if fresh:
                    # n2's agent programs the blackhole of its new block in the same step in
                    # which it sends the sidecar the new intent: the start of the BGP path.
                    own = seen[n2.netns]
                    run["blackhole_on_n2_s"] = round(own - t0, 3) if own is not None else None
                    s4 = seen[n4.netns]
                    run["route_on_n4_s"] = round(s4 - t0, 3) if s4 is not None else None
                    s1 = seen[n1.netns]
                    run["route_on_n1_s"] = round(s1 - t0, 3) if s1 is not None else None
                    run["route_on_all_s"] = round(on_all - t0, 3) if on_all is not None else None
                    new_blocks += 1
                runs.append(run)
                print(f"  {mode} {run}", flush=True)
                time.sleep(0.5)  # quiet between pods
        finally:
            watch.close()
    return {"mode": mode, "nodes": 4, "reflectors": ["n1", "n3"] if mode == "rr" else [],
            "block_size": CONVERGENCE_BLOCK_SIZE, "new_pods_on": "n2", "ping_to": "pod on n4",
            "runs": runs, "summary": convergence_summary(runs)}


def convergence_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, fresh in (("new_block", True), ("existing_block", False)):
        sel = [r for r in runs if r["new_block"] is fresh]
        d: dict[str, Any] = {"pods": len(sel)}
        for r in sel:
            if r.get("blackhole_on_n2_s") is not None and r.get("route_on_all_s") is not None:
                r["bgp_path_s"] = round(r["route_on_all_s"] - r["blackhole_on_n2_s"], 3)
        for key in ("cni_s", "first_reply_s", "reply_after_cni_s", "blackhole_on_n2_s",
                    "route_on_n4_s", "route_on_n1_s", "route_on_all_s", "bgp_path_s"):
            vals = [r[key] for r in sel if r.get(key) is not None]
            if vals:
                d[key] = stats(vals, 3)
            missing = sum(1 for r in sel if key in r and r[key] is None)
            if missing:
                d[f"{key}_missing"] = missing
        out[kind] = d
    return out


# -- 2. scale ------------------------------------------------------------------------------
def scale(mode: str, nodes: int, work: Path, settle: float, timeout: float) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": mode, "nodes": nodes, "loadavg_before": os.getloadavg()}
    with lab(mode, nodes, work) as cluster:
        topo = cluster.topo
        rrs = sorted(route_reflectors(topo)) if mode == "rr" else []
        if rrs:
            result["reflectors"] = rrs
            result["clients"] = nodes - len(rrs)
        start = time.monotonic()
        pods = add_pods(cluster, topo.nodes)
        result["pods_before_start_s"] = round(time.monotonic() - start, 2)
        owner = {block_of(p.ip, LAB_BLOCK_SIZE): p.node for p in pods}
        want = {n.netns: {b for b, o in owner.items() if o != n.name} for n in topo.nodes}
        watch = RouteWatch([n.netns for n in topo.nodes])
        try:
            before = sample_cluster(cluster)
            t0 = time.monotonic()
            for node in topo.nodes:
                cluster.start_node(node)
            result["start_all_s"] = round(time.monotonic() - t0, 2)

            def done() -> bool:
                return all(want[ns] <= watch.routes[ns] for ns in want)

            deadline = t0 + timeout
            t_conv = None
            while time.monotonic() < deadline:
                t_conv = watch.wait(done, timeout=10)
                if t_conv is not None:
                    break
                with watch.cond:
                    complete = sum(1 for ns in want if want[ns] <= watch.routes[ns])
                dead = [n for n, p in cluster.procs.procs.items() if not p.alive()]
                print(f"  {mode}-{nodes}: {time.monotonic() - t0:.0f} s, "
                      f"{complete}/{nodes} nodes complete, dead: {dead}", flush=True)
            if t_conv is None:
                with watch.cond:
                    have = {ns: len(want[ns] & watch.routes[ns]) for ns in want}
                result["converged"] = False
                result["blocks_seen_per_node"] = stats(list(have.values()), 0)
                result["at_timeout"] = summarize(sample_cluster(cluster), before, rrs)
                return result
            result["converged"] = True
            result["converge_s"] = round(t_conv - t0, 2)
            with watch.cond:  # when each node's last block arrived (first appearance)
                complete_at = [max((watch.first_seen.get((ns, b), t_conv) for b in want[ns]),
                                   default=t0) for ns in want]
            result["node_complete_s"] = stats([t - t0 for t in complete_at])
            at_conv = sample_cluster(cluster)
            result["at_convergence"] = summarize(at_conv, before, rrs)
            result["sessions_at_convergence"] = sessions(cluster)
            time.sleep(settle)
            settled = sample_cluster(cluster)
            result["settle_s"] = settle
            result["after_settle"] = summarize(settled, before, rrs)
            result["idle_cpu_percent"] = idle_rates(at_conv, settled)
            result["sessions_after_settle"] = sessions(cluster)
            with watch.cond:
                result["still_complete_after_settle"] = done()
            a, b = pods[0], pods[-1]
            result["ping_first_to_last_pod"] = cluster.ping(a.netns, b.ip)
            result["loadavg_after"] = os.getloadavg()
            return result
        finally:
            watch.close()


def scale_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per topology over its rounds: convergence time, and the per-node medians and maxima of
    each round pooled (median of the rounds' medians, max of their maxima)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["mode"], r["nodes"]), []).append(r)
    out = []
    for (mode, nodes), rs in groups.items():
        ok = [r for r in rs if r.get("converged")]
        d: dict[str, Any] = {"mode": mode, "nodes": nodes, "rounds": len(rs),
                             "converged": len(ok)}
        for key in ("reflectors", "clients"):
            if key in rs[0]:
                d[key] = rs[0][key]
        if ok:
            d["converge_s"] = stats([r["converge_s"] for r in ok])
            d["sessions_all_up"] = all(r["sessions_after_settle"]["all_up"] for r in ok)
            d["sessions"] = f"{ok[0]['sessions_after_settle']['up_total']}/" \
                            f"{ok[0]['sessions_after_settle']['peers_total']}"
            for sample in ("at_convergence", "after_settle"):
                for part in ("agent", "sidecar", "agent_clients", "sidecar_clients",
                             "agent_reflectors", "sidecar_reflectors"):
                    if part not in ok[0][sample]:
                        continue
                    for key in ("cpu_s", "rss_mib"):
                        per = [r[sample][part][key] for r in ok]
                        d[f"{sample}.{part}.{key}"] = {
                            "median": round(statistics.median(p["median"] for p in per), 2),
                            "max": round(max(p["max"] for p in per), 2)}
            d["total_rss_mib"] = round(statistics.median(
                r["after_settle"]["agent"]["total_rss_mib"]
                + r["after_settle"]["sidecar"]["total_rss_mib"] for r in ok), 1)
            for key in ("agents", "sidecars"):
                d[f"idle_cpu_percent.{key}"] = round(statistics.median(
                    r["idle_cpu_percent"][key]["median"] for r in ok), 2)
            d["loadavg_before"] = [round(r["loadavg_before"][0], 1) for r in ok]
        out.append(d)
    return out


def sessions(cluster: LabCluster) -> dict[str, Any]:
    per = {n.name: bgp_sessions(cluster, n) for n in cluster.topo.nodes}
    return {"all_up": all(s["up"] == s["peers"] and s["peers"] > 0 for s in per.values()),
            "up_total": sum(s["up"] for s in per.values()),
            "peers_total": sum(s["peers"] for s in per.values()),
            "per_node": per}


def summarize(sample: dict[str, Any], before: dict[str, Any],
              reflectors: Sequence[str] = ()) -> dict[str, Any]:
    """Per-process values and their median/p95/max (over every node, and in RR mode over the
    clients alone and the reflectors alone)."""
    out: dict[str, Any] = {"agent": {}, "sidecar": {}, "other": {}}
    for kind, key in (("agent", "agents"), ("sidecar", "sidecars")):
        groups = sample[key]
        if reflectors:
            for part, names in (("clients", [n for n in groups if n not in reflectors]),
                                ("reflectors", [n for n in groups if n in reflectors])):
                out[f"{kind}_{part}"] = {
                    "cpu_s": stats([groups[n]["cpu_s"] for n in names]),
                    "rss_mib": stats([groups[n]["rss_kb"] / 1024 for n in names], 1)}
        out[kind] = {
            "cpu_s": stats([g["cpu_s"] for g in groups.values()]),
            "rss_mib": stats([g["rss_kb"] / 1024 for g in groups.values()], 1),
            "total_rss_mib": round(sum(g["rss_kb"] for g in groups.values()) / 1024, 1),
            "total_cpu_s": round(sum(g["cpu_s"] for g in groups.values()), 1),
            "per_node": {n: {"cpu_s": g["cpu_s"], "rss_mib": round(g["rss_kb"] / 1024, 1),
                             "members": [{k: m[k] for k in ("cmd", "cpu_s", "vmrss_kb")
                                          if k in m} for m in g["members"]]}
                         for n, g in groups.items()},
        }
    for name, g in sample["other"].items():
        cpu0 = before["other"].get(name, {}).get("cpu_s", 0.0)
        out["other"][name] = {"cpu_s_during": round(g["cpu_s"] - cpu0, 2),
                              "rss_mib": round(g["rss_kb"] / 1024, 1)}
    return out


def idle_rates(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """CPU % of one core per process between two samples (steady state after convergence)."""
    dt = b["t"] - a["t"]
    out: dict[str, Any] = {"window_s": round(dt, 1)}
    for key in ("agents", "sidecars"):
        rates = [100 * (b[key][n]["cpu_s"] - a[key][n]["cpu_s"]) / dt
                 for n in b[key] if n in a[key]]
        out[key] = stats(rates, 2)
    return out


# -- main ----------------------------------------------------------------------------------
def code_version() -> dict[str, Any]:
    """The commit measured, and whether the code the lab runs differed from it."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--", "agent", "bgp", "wren", "lab").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_in_agent_bgp_wren_lab": [line.split(maxsplit=1)[-1] for line in dirty]}


def bytecode_cache(cache: Path) -> dict[str, Any]:
    """Agents, sidecars and ExaBGP write and reuse .pyc files under `cache` (a deployed image
    has them; with PYTHONDONTWRITEBYTECODE=1 in the environment, as on this machine, every
    process start compiles the project's sources again: seconds per agent on a busy host).
    The entry points are imported once here so the first lab does not pay for it."""
    had = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    started = time.monotonic()
    subprocess.run([str(BIN / "python"), "-c",
                    "import agent.daemon, agent.wiring, bgp.sidecar, bgp.relay, wren.cli.main, "
                    "wren.cni.plugin, exabgp.application.main"], check=True)
    return {"PYTHONPYCACHEPREFIX": str(cache), "PYTHONDONTWRITEBYTECODE_in_env": had,
            "warm_up_s": round(time.monotonic() - started, 2),
            "note": "agents, sidecars and ExaBGP use a .pyc cache; the CNI plugin and wrenctl "
                    "run with LabCluster's own environment (the source tree's __pycache__)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pods", type=int, default=20,
                        help="new-block pods per mode in the convergence runs")
    parser.add_argument("--modes", default="bgp,rr", help="convergence modes ('' to skip)")
    parser.add_argument("--scale", default="bgp:10,bgp:20,rr:52",
                        help="MODE:NODES,... for the scale runs ('' to skip); rr:52 is 2 "
                             "reflectors and 50 clients")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the scale runs (each a fresh cluster)")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="seconds after convergence before the steady-state sample")
    parser.add_argument("--timeout", type=float, default=900.0, help="scale convergence limit")
    parser.add_argument("--out", default="lab")
    parser.add_argument("--keep-logs", type=Path,
                        help="copy every lab's logs (agents, sidecars, etcd, BIRD) here")
    parser.add_argument("--no-pyc-cache", action="store_true",
                        help="leave PYTHONDONTWRITEBYTECODE as the environment has it")
    args = parser.parse_args()

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)  # so every `finally` cleans up

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    global KEEP_LOGS  # noqa: PLW0603 (a flag for the context manager, set once)
    KEEP_LOGS = args.keep_logs
    data: dict[str, Any] = {
        "benchmark": "lab: pod convergence over BGP and scale",
        "method": {
            "convergence": (
                "4 nodes (2 per subnet), one pod each; pods made on n2 by the CNI plugin one at "
                "a time; t0 = CNI ADD started. first_reply: first echo reply of ping -D -i "
                f"{PING_INTERVAL} from the new pod to the pod on n4 (other subnet, via the "
                "router, which also learns the block over BGP from n2). route_on_n4 / n1 / "
                "all: the new block in that node's kernel (netlink monitor). Pool blockSize "
                f"/{CONVERGENCE_BLOCK_SIZE}: every other pod opens a new block."),
            "scale": (
                "one pod per node via the CNI plugin before the agents start; t0 = first "
                "agent/sidecar started (all started at once); converge = every node has every "
                "other node's /26 in its kernel (netlink monitors). cpu_s = utime+stime since "
                "process start; rss = VmRSS; sidecar = wren-bgp + ExaBGP + ExaBGP's API "
                "process. idle_cpu_percent: CPU % of one core during the settle window."),
        },
        "convergence": {}, "scale": [], "code": code_version(),
    }
    pings: list[int] = []
    with tempfile.TemporaryDirectory(prefix="wb-bench-lab-") as tmp:
        work = Path(tmp)
        if not args.no_pyc_cache:
            data["bytecode"] = bytecode_cache(work / "pycache")
        try:
            for mode in [m for m in args.modes.split(",") if m]:
                print(f"== convergence {mode}", flush=True)
                data["convergence"][mode] = convergence(mode, args.pods, work, pings)
                print(json.dumps(data["convergence"][mode]["summary"]), flush=True)
                print(f"wrote {write_result(args.out, data)}", flush=True)
            specs = [s.split(":") for s in args.scale.split(",") if s]
            for rep in range(args.repeat):  # interleaved: each size once per round
                for mode, n in specs:
                    print(f"== scale {mode} {n} nodes (round {rep + 1}/{args.repeat})",
                          flush=True)
                    started = time.monotonic()
                    try:
                        res = scale(mode, int(n), work, args.settle, args.timeout)
                    except (RuntimeError, OSError) as err:
                        res = {"mode": mode, "nodes": int(n), "error": str(err)[-2000:]}
                    res["round"] = rep + 1
                    res["wall_s"] = round(time.monotonic() - started, 1)
                    data["scale"].append(res)
                    data["scale_summary"] = scale_summary(data["scale"])
                    print(json.dumps({k: v for k, v in res.items()
                                      if k in ("mode", "nodes", "converged", "converge_s",
                                               "error", "wall_s")}), flush=True)
                    print(f"wrote {write_result(args.out, data)}", flush=True)
        finally:
            for pid in list(pings):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
