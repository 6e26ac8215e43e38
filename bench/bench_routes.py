#!/usr/bin/env python3
"""Programming a node's routes through the agent's kernel tables, against `ip -batch`.

Each run starts from an empty namespace with 100 `cali*` veths, an `eth0` and a VXLAN device
`vxlan.calico`, and programs:
  * N workload routes `10.x.y.z/32 dev caliNNNN scope link proto 80` (spread over the veths),
  * 1,000 remote-block routes `10.200.a.b/26 via 10.1.c.d dev eth0 onlink proto 80`,
  * 1,000 permanent neighbour entries on `vxlan.calico` (remote VTEPs, as VXLAN mode writes).
Needs root. `.venv/bin/python bench/bench_routes.py [--sizes 1000,10000,50000] [--runs 5]`.

Columns (milliseconds; median and min-max over the runs):
  ip-batch  `ip -n NS -batch FILE` of the same routes and neighbours, process start included
  tables    RouteTable + NeighTable from nothing: replace_all + apply (dumps, diff, writes)
  ratio     tables / ip-batch, per run, then the median (the JSON also has routes and
            neighbours apart: each is its own `ip -batch` and its own table)
  restart   fresh tables over the programmed kernel: replace_all + apply (must write nothing)
  resync    the periodic resync of the running tables (dump + diff; asserted to write nothing)
  build     making the Route/Neighbour objects (not in the other columns)
The agent calls gc.freeze() once its first full state is programmed; so does this script
before `restart` and `resync` (unfrozen again at the end of each run).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import subprocess
import tempfile
import time
from typing import Any

from common import fmt, namespace, summary, write_result

from agent.kernel.neigh_table import Neighbour, NeighTable
from agent.kernel.netlink import RouteSocket
from agent.kernel.netns import in_netns
from agent.kernel.route_table import Route, RouteTable

IFACES = 100
REMOTE = 1000
VXLAN = "vxlan.calico"


def setup_lines() -> list[str]:
    lines = [f"link add cali{i:04d} type veth peer name pcali{i:04d}" for i in range(IFACES)]
    lines += [f"link set cali{i:04d} up" for i in range(IFACES)]
    lines += ["link add eth0 type veth peer name peth0", "link set peth0 up",
              "addr add 10.0.1.11/24 dev eth0", "link set eth0 up",
              f"link add {VXLAN} type vxlan id 4096 dstport 4789 local 10.0.1.11 dev eth0",
              f"link set {VXLAN} up"]
    return lines


def workloads(n: int) -> list[tuple[str, str]]:
    return [(f"10.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32", f"cali{i % IFACES:04d}")
            for i in range(n)]


def remote_blocks() -> list[tuple[str, str]]:
    base = int(ipaddress.IPv4Address("10.200.0.0"))
    return [(f"{ipaddress.IPv4Address(base + 64 * i)}/26", f"10.1.{i // 250}.{i % 250 + 2}")
            for i in range(REMOTE)]


def vteps() -> list[tuple[str, str]]:
    return [(f"10.201.{i // 256}.{i % 256}", f"66:00:00:00:{i // 256:02x}:{i % 256:02x}")
            for i in range(REMOTE)]


def run_ip_batch(n: int) -> dict[str, float]:
    """Routes, then neighbours, each one `ip -batch` (so each part has its own ratio)."""
    with (namespace(setup_lines()) as ns,
          tempfile.NamedTemporaryFile("w", suffix=".batch") as routes,
          tempfile.NamedTemporaryFile("w", suffix=".batch") as neigh):
        routes.write("".join(f"route add {dst} dev {dev} scope link proto 80\n"
                             for dst, dev in workloads(n)))
        routes.write("".join(f"route add {dst} via {gw} dev eth0 onlink proto 80\n"
                             for dst, gw in remote_blocks()))
        neigh.write("".join(f"neigh replace {ip} lladdr {mac} dev {VXLAN} nud permanent\n"
                            for ip, mac in vteps()))
        routes.flush()
        neigh.flush()
        start = time.perf_counter()
        subprocess.run(["ip", "-n", ns, "-batch", routes.name], check=True)
        middle = time.perf_counter()
        subprocess.run(["ip", "-n", ns, "-batch", neigh.name], check=True)
        end = time.perf_counter()
        return {"ip_batch": end - start, "ip_batch_routes": middle - start,
                "ip_batch_neigh": end - middle}


def desired(n: int) -> tuple[list[Route], list[Neighbour]]:
    routes = [Route.workload(ipaddress.IPv4Network(dst), dev) for dst, dev in workloads(n)]
    routes += [Route.via(ipaddress.IPv4Network(dst), ipaddress.IPv4Address(gw), iface="eth0",
                         onlink=True) for dst, gw in remote_blocks()]
    neigh = [Neighbour(iface=VXLAN, ip=ipaddress.IPv4Address(ip), mac=mac) for ip, mac in vteps()]
    return routes, neigh


def run_tables(n: int) -> dict[str, float]:
    from pyroute2 import IPRoute

    with namespace(setup_lines()) as ns:
        with in_netns(ns):
            sock = RouteSocket()
            ipr = IPRoute()
        try:
            start = time.perf_counter()
            routes, neigh = desired(n)
            out = {"build": time.perf_counter() - start}

            start = time.perf_counter()
            table, ntable = RouteTable(sock), NeighTable(ipr, sock)
            table.replace_all(routes)
            result = table.apply()
            out["tables_routes"] = time.perf_counter() - start
            assert result.ok and result.updated == n + REMOTE, result
            start = time.perf_counter()
            ntable.replace_all(neigh)
            nresult = ntable.apply()
            out["tables_neigh"] = time.perf_counter() - start
            assert nresult.ok and nresult.updated == REMOTE, nresult
            out["tables"] = out["tables_routes"] + out["tables_neigh"]

            gc.freeze()  # as the agent does after its first full sync
            start = time.perf_counter()
            again, nagain = RouteTable(sock), NeighTable(ipr, sock)
            again.replace_all(routes)
            nagain.replace_all(neigh)
            r, nr = again.apply(), nagain.apply()
            out["restart"] = time.perf_counter() - start
            assert (r.updated, r.deleted, nr.updated, nr.deleted) == (0, 0, 0, 0), (r, nr)

            start = time.perf_counter()
            table.queue_resync()
            r = table.apply()
            out["resync_routes"] = time.perf_counter() - start
            start = time.perf_counter()
            ntable.queue_resync()
            nr = ntable.apply()
            out["resync_neigh"] = time.perf_counter() - start
            out["resync"] = out["resync_routes"] + out["resync_neigh"]
            assert (r.updated, r.deleted, nr.updated, nr.deleted) == (0, 0, 0, 0), (r, nr)
            assert r.ok and nr.ok, (r, nr)
            return out
        finally:
            gc.unfreeze()
            sock.close()
            ipr.close()


COLUMNS = ("ip_batch", "ip_batch_routes", "ip_batch_neigh", "tables", "ratio", "ratio_routes",
           "ratio_neigh", "tables_routes", "tables_neigh", "restart", "resync",
           "resync_routes", "resync_neigh", "build")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="routes", help="results/<out>.json")
    args = parser.parse_args()
    print(f"{'routes':>7} | {'ip-batch ms':>18} | {'tables ms':>18} | {'ratio':>6} | "
          f"{'restart ms':>18} | {'resync ms':>18} | {'build ms':>18}")
    results: dict[str, Any] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        samples: dict[str, list[float]] = {c: [] for c in COLUMNS}
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            batch = run_ip_batch(n)
            tables = run_tables(n)
            samples["ratio"].append(tables["tables"] / batch["ip_batch"])
            samples["ratio_routes"].append(tables["tables_routes"] / batch["ip_batch_routes"])
            samples["ratio_neigh"].append(tables["tables_neigh"] / batch["ip_batch_neigh"])
            for key, value in (batch | tables).items():
                samples[key].append(value)
        row = {c: summary(v, scale=1.0 if c.startswith("ratio") else 1000.0)
               for c, v in samples.items()}
        results[str(n)] = row
        print(f"{n:>7} | {fmt(row['ip_batch']):>18} | {fmt(row['tables']):>18} | "
              f"{row['ratio']['median']:6.2f} | {fmt(row['restart']):>18} | "
              f"{fmt(row['resync']):>18} | {fmt(row['build']):>18}", flush=True)
    path = write_result(args.out, {
        "benchmark": "kernel tables vs ip -batch",
        "workload": {"workload_routes": "N x /32 dev cali* scope link (100 veths)",
                     "remote_routes": f"{REMOTE} x /26 via GW dev eth0 onlink",
                     "neighbours": f"{REMOTE} permanent on {VXLAN}"},
        "units": "ms (ratio: tables/ip-batch, per run)", "runs": args.runs, "sizes": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
