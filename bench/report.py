#!/usr/bin/env python3
"""Print the Markdown tables of docs/benchmarks.md from bench/results/*.json."""

from __future__ import annotations

import json
from typing import Any

from common import RESULTS


def cell(d: dict[str, Any], key: str) -> str:
    s = d[key]
    return f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def routes_table(data: dict[str, Any]) -> str:
    rows = ["| workload routes | `ip -batch` ms | tables ms | ratio | routes only: ip / table ms "
            "| neighbours only: ip / table ms | restart ms | no-op resync ms (routes + neigh) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, d in sorted(data["sizes"].items(), key=lambda kv: int(kv[0])):
        rows.append(
            f"| {int(n):,} | {cell(d, 'ip_batch')} | {cell(d, 'tables')} "
            f"| {d['ratio']['median']:.1f}x "
            f"| {d['ip_batch_routes']['median']:,.0f} / {d['tables_routes']['median']:,.0f} "
            f"| {d['ip_batch_neigh']['median']:,.0f} / {d['tables_neigh']['median']:,.0f} "
            f"| {cell(d, 'restart')} "
            f"| {d['resync']['median']:,.0f} ({d['resync_routes']['median']:,.0f} + "
            f"{d['resync_neigh']['median']:,.0f}) |")
    return "\n".join(rows)


def agent_table(data: dict[str, Any]) -> str:
    rows = ["| endpoints | remote blocks | start → all routes in kernel s | agent CPU s to sync "
            "| VmRSS MiB in sync (peak) | WEP → route p50 ms | p99 ms | events |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(data["runs"], key=lambda r: r["endpoints"]):
        lat = r["latency_ms"]
        rows.append(
            f"| {r['endpoints']:,} | {r['remote_blocks']:,} | {r['sync_s']:.1f} "
            f"| {r.get('agent_cpu_s_at_sync', float('nan')):.1f} "
            f"| {r['rss_kb']['VmRSS'] / 1024:.0f} ({r['rss_kb']['VmHWM'] / 1024:.0f}) "
            f"| {lat['p50']:,.0f} | {lat['p99']:,.0f} | {r['events']} ({lat['missed']} missed) |")
    return "\n".join(rows)


def main() -> None:
    for name, render in (("routes", routes_table), ("agent", agent_table)):
        path = RESULTS / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            m = data["machine"]
            print(f"<!-- {name}: {m['date']}, kernel {m['kernel']}, {m['cpus']} CPUs, "
                  f"Python {m['python']} -->")
            print(render(data))
            print()


if __name__ == "__main__":
    main()
