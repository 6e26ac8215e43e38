#!/usr/bin/env python3
"""Time programming N workload routes: RouteTable (raw netlink) against `ip -batch`.

Each run uses a fresh network namespace with 100 `cali*` veths; the routes are
`10.x.y.z/32 dev caliNNNN scope link proto 80` spread over them. Prints medians (and min-max)
in milliseconds. Needs root. Run: `.venv/bin/python bench/bench_routes.py [--sizes 1000,10000]`.

Columns:
  ip-batch   `ip -n NS -batch FILE` wall time, process start included
  table      RouteTable: replace_all + apply (link dump, route dump, encode, send, ACKs)
  restart    a second RouteTable over the programmed kernel: replace_all + apply (no writes)
  resync     that table's periodic resync: queue_resync + apply (dump + diff, no writes)
  build      making the Route objects (not in the other columns)
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.kernel.netlink import RouteSocket
from agent.kernel.netns import in_netns
from agent.kernel.route_table import Route, RouteTable

IFACES = 100


@contextmanager
def namespace() -> Iterator[str]:
    name = f"wt-bench-{os.urandom(3).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        lines = [f"link add cali{i:04d} type veth peer name pcali{i:04d}" for i in range(IFACES)]
        lines += [f"link set cali{i:04d} up" for i in range(IFACES)]
        subprocess.run(["ip", "-n", name, "-batch", "-"], input="\n".join(lines) + "\n",
                       text=True, check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def destinations(n: int) -> list[tuple[str, str]]:
    return [(f"10.{16 + i // 65536}.{i // 256 % 256}.{i % 256}", f"cali{i % IFACES:04d}")
            for i in range(n)]


def run_ip_batch(n: int) -> float:
    with namespace() as ns, tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
        f.write("".join(f"route add {dst}/32 dev {dev} scope link proto 80\n"
                        for dst, dev in destinations(n)))
        f.flush()
        start = time.perf_counter()
        subprocess.run(["ip", "-n", ns, "-batch", f.name], check=True)
        return time.perf_counter() - start


def run_table(n: int) -> tuple[float, float, float, float]:
    with namespace() as ns:
        with in_netns(ns):
            sock = RouteSocket()
        try:
            start = time.perf_counter()
            routes = [Route.workload(ipaddress.IPv4Network(f"{dst}/32"), dev)
                      for dst, dev in destinations(n)]
            build = time.perf_counter() - start

            start = time.perf_counter()
            table = RouteTable(sock)
            table.replace_all(routes)
            result = table.apply()
            program = time.perf_counter() - start
            assert result.ok and result.updated == n, result

            start = time.perf_counter()
            again = RouteTable(sock)
            again.replace_all(routes)
            result = again.apply()
            restart = time.perf_counter() - start
            assert result.updated == 0, result

            start = time.perf_counter()
            again.queue_resync()
            result = again.apply()
            resync = time.perf_counter() - start
            assert result.updated == 0, result
            return build, program, restart, resync
        finally:
            sock.close()


def fmt(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"{statistics.median(ms):8.1f} ({min(ms):.0f}-{max(ms):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'routes':>7} | {'ip-batch ms':>18} | {'table ms':>18} | {'restart ms':>18} | "
          f"{'resync ms':>18} | {'build ms':>18}")
    for n in (int(s) for s in args.sizes.split(",")):
        ip_batch: list[float] = []
        table: list[float] = []
        restart: list[float] = []
        resync: list[float] = []
        build: list[float] = []
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            ip_batch.append(run_ip_batch(n))
            b, p, r, s = run_table(n)
            build.append(b)
            table.append(p)
            restart.append(r)
            resync.append(s)
        print(f"{n:>7} | {fmt(ip_batch):>18} | {fmt(table):>18} | {fmt(restart):>18} | "
              f"{fmt(resync):>18} | {fmt(build):>18}", flush=True)


if __name__ == "__main__":
    main()
