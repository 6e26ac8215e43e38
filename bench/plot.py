#!/usr/bin/env python3
"""Draw bench/results/benchmarks.png from the JSON the benchmarks wrote."""

from __future__ import annotations

import json
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt
from common import RESULTS


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    routes, agent = load("routes"), load("agent")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    if routes:
        sizes = sorted(routes["sizes"], key=int)
        xs = [int(s) for s in sizes]
        ax = axes[0]
        for key, label in (("ip_batch", "ip -batch (routes + neighbours)"),
                           ("tables", "RouteTable + NeighTable, from empty"),
                           ("tables_routes", "RouteTable alone"),
                           ("restart", "restart over programmed kernel (no writes)"),
                           ("resync_routes", "periodic route resync (no writes)")):
            meds = [routes["sizes"][s][key]["median"] for s in sizes]
            lows = [meds[i] - routes["sizes"][s][key]["min"] for i, s in enumerate(sizes)]
            highs = [routes["sizes"][s][key]["max"] - meds[i] for i, s in enumerate(sizes)]
            ax.errorbar(xs, meds, yerr=[lows, highs], marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("workload routes (+1,000 remote blocks, 1,000 neighbours)")
        ax.set_ylabel("ms (median, min-max)")
        ax.set_title("Programming a node's routes")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    if agent:
        runs = sorted(agent["runs"], key=lambda r: r["endpoints"])
        labels = [str(r["endpoints"]) for r in runs]
        ax = axes[1]
        p50 = [r["latency_ms"]["p50"] for r in runs]
        p99 = [r["latency_ms"]["p99"] for r in runs]
        pos = range(len(runs))
        ax.bar([p - 0.2 for p in pos], p50, width=0.4, label="p50")
        ax.bar([p + 0.2 for p in pos], p99, width=0.4, label="p99")
        ax.set_xticks(list(pos), labels)
        ax.set_xlabel("endpoints on the node (+1,000 remote VXLAN blocks)")
        ax.set_ylabel("ms")
        ax.set_title("WorkloadEndpoint written → route in kernel")
        ax.legend()
        ax = axes[2]
        rss = [r["rss_kb"]["VmRSS"] / 1024 for r in runs]
        hwm = [r["rss_kb"]["VmHWM"] / 1024 for r in runs]
        ax.bar([p - 0.2 for p in pos], rss, width=0.4, label="VmRSS in sync")
        ax.bar([p + 0.2 for p in pos], hwm, width=0.4, label="VmHWM (peak)")
        ax.axhline(150, color="red", linestyle="--", label="target 150 MB")
        ax.set_xticks(list(pos), labels)
        ax.set_xlabel("endpoints on the node")
        ax.set_ylabel("MiB")
        ax.set_title("wren-agent memory")
        ax.legend()
    date = (routes or agent or {}).get("machine", {}).get("date", "")
    fig.suptitle(f"Wren benchmarks ({date}, shared 2-vCPU machine)")
    fig.tight_layout()
    out = RESULTS / "benchmarks.png"
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
