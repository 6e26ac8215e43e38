#!/usr/bin/env python3
"""Draw bench/results/benchmarks.png from the JSON the benchmarks wrote."""

from __future__ import annotations

import json
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt
from common import RESULTS
from report import topology_name


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    routes, agent, bgp, lab = load("routes"), load("agent"), load("bgp"), load("lab")
    fig, grid = plt.subplots(2, 3, figsize=(15, 9))
    axes = grid[0]
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
    if bgp:
        bgp_panel(grid[1][0], bgp["summary"])
    if lab:
        scale_panel(grid[1][1], lab.get("scale_summary", []))
    grid[1][2].axis("off")
    date = (routes or agent or {}).get("machine", {}).get("date", "")
    fig.suptitle(f"Wren benchmarks ({date}, shared 2-vCPU machine)")
    fig.tight_layout()
    out = RESULTS / "benchmarks.png"
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def bgp_panel(ax: Any, s: dict[str, Any]) -> None:
    """10,000 prefixes learned into the kernel and announced, against the reference tools."""
    bars = [("learn\nWren", "learn_wren"), ("learn\nBIRD 2", "learn_bird"),
            ("announce\nWren", "announce_wren"), ("announce\nraw ExaBGP", "announce_exabgp"),
            ("announce\nBIRD 2", "announce_bird")]
    bars = [(label, key) for label, key in bars if key in s]
    colors = ["tab:blue" if "Wren" in label else "tab:gray" for label, _ in bars]
    _median_bars(ax, [s[key] for _, key in bars], color=colors)
    ax.set_xticks(range(len(bars)), [label for label, _ in bars], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ms from Established (median, min-max)")
    ax.set_title("BGP: 10,000 /26s learned into the kernel / announced")
    ax.grid(True, axis="y", which="both", alpha=0.3)


def scale_panel(ax: Any, summary: list[dict[str, Any]]) -> None:
    """Cold start to every node converged, per topology (median and min-max of the rounds)."""
    done = [d for d in summary if d.get("converged")]
    _median_bars(ax, [d["converge_s"] for d in done])
    ax.set_xticks(range(len(done)), [topology_name(d) for d in done], fontsize=8)
    ax.set_ylabel("s to converge (median, min-max of rounds)")
    ax.set_title("Lab scale: cold start → every route everywhere")
    ax.grid(True, axis="y", alpha=0.3)


def _median_bars(ax: Any, stats: list[dict[str, float]], **style: Any) -> None:
    """One bar per `summary()` (median), its min-max as the error bar."""
    meds = [d["median"] for d in stats]
    ax.bar(range(len(stats)), meds, capsize=3, **style,
           yerr=[[m - d["min"] for m, d in zip(meds, stats, strict=True)],
                 [d["max"] - m for m, d in zip(meds, stats, strict=True)]])


if __name__ == "__main__":
    main()
