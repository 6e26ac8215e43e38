#!/usr/bin/env python3
"""Print the Markdown tables of docs/benchmarks.md from bench/results/*.json."""

from __future__ import annotations

import json
import statistics
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


def _stat(d: dict[str, Any] | None, key: str, other: str, form: str, *, scale: float = 1.0,
          digits: int = 1) -> str:
    """The median and one other figure of a stats dict from bench_lab.py, or a dash."""
    s = (d or {}).get(key)
    if not s:
        return "—"
    return form.format(f"{s['median'] * scale:,.{digits}f}", f"{s[other] * scale:,.{digits}f}")


def _pq(d: dict[str, Any] | None, key: str, scale: float = 1.0, digits: int = 1) -> str:
    """'p50 / p95'."""
    return _stat(d, key, "p95", "{} / {}", scale=scale, digits=digits)


def lab_convergence_table(data: dict[str, Any]) -> str:
    rows = ["| mode | pod's block | pods | CNI ADD s | first reply s | reply after CNI ms "
            "| block on n4 s | block on n1 s | block on every node s "
            "| n2's blackhole → every node s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"bgp": "full mesh", "rr": "route reflectors"}
    for mode, conv in data.get("convergence", {}).items():
        for kind, label in (("new_block", "new"), ("existing_block", "existing")):
            d = conv["summary"].get(kind, {})
            if not d.get("pods"):
                continue
            rows.append(
                f"| {names.get(mode, mode)} | {label} | {d['pods']} | {_pq(d, 'cni_s')} "
                f"| {_pq(d, 'first_reply_s', digits=2)} "
                f"| {_pq(d, 'reply_after_cni_s', 1000, 0)} | {_pq(d, 'route_on_n4_s', digits=2)} "
                f"| {_pq(d, 'route_on_n1_s', digits=2)} | {_pq(d, 'route_on_all_s', digits=2)} "
                f"| {_pq(d, 'bgp_path_s', digits=2)} |")
    return "\n".join(rows) + "\n\n(p50 / p95, from CNI ADD started)"


def topology_name(r: dict[str, Any]) -> str:
    """'full mesh 10' or 'RR: 2 reflectors + 50 clients', for a bench_lab scale entry."""
    if r["mode"] == "rr":
        return f"RR: {len(r.get('reflectors', []))} reflectors + {r.get('clients', '?')} clients"
    return f"full mesh {r['nodes']}"


def _pm(d: dict[str, Any], key: str, digits: int = 1) -> str:
    """'median (max)' of a pooled entry of bench_lab's scale_summary."""
    return _stat(d, key, "max", "{} ({})", digits=digits)


def lab_scale_table(data: dict[str, Any]) -> str:
    rows = ["| topology | nodes | rounds converged | sessions up | converge s p50 (min-max) "
            "| agent CPU s | agent RSS MiB | sidecar CPU s | sidecar RSS MiB "
            "| reflector sidecar CPU s / RSS MiB | idle CPU % of a core: agent / sidecar "
            "| agents + sidecars RSS GiB | load avg at start |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in data.get("scale_summary", []):
        if not d.get("converged"):
            errors = {r.get("error", "not converged in the time limit")
                      for r in data["scale"] if (r["mode"], r["nodes"]) == (d["mode"], d["nodes"])}
            rows.append(f"| {topology_name(d)} | {d['nodes']} | 0/{d['rounds']} | "
                        f"| {'; '.join(sorted(errors))[:160]} |" + " |" * 8)
            continue
        conv = d["converge_s"]
        cpu = "at_convergence." + ("sidecar_clients" if d["mode"] == "rr" else "sidecar")
        rss = "after_settle." + ("sidecar_clients" if d["mode"] == "rr" else "sidecar")
        rr = "—"
        if "at_convergence.sidecar_reflectors.cpu_s" in d:
            rr = (f"{d['at_convergence.sidecar_reflectors.cpu_s']['max']:.1f} / "
                  f"{d['after_settle.sidecar_reflectors.rss_mib']['max']:.0f}")
        load = ", ".join(f"{x:.0f}" for x in d.get("loadavg_before", []))
        rows.append(
            f"| {topology_name(d)} | {d['nodes']} | {d['converged']}/{d['rounds']} "
            f"| {d.get('sessions', '?')} "
            f"| {conv['median']:.1f} ({conv['min']:.1f}-{conv['max']:.1f}) "
            f"| {_pm(d, 'at_convergence.agent.cpu_s')} "
            f"| {_pm(d, 'after_settle.agent.rss_mib', 0)} "
            f"| {_pm(d, cpu + '.cpu_s')} | {_pm(d, rss + '.rss_mib', 0)} | {rr} "
            f"| {d['idle_cpu_percent.agents']:.1f} / {d['idle_cpu_percent.sidecars']:.1f} "
            f"| {d['total_rss_mib'] / 1024:.1f} | {load} |")
    return ("\n".join(rows) + "\n\n(CPU s: utime+stime from process start to convergence; "
            "RSS: VmRSS after the settle time; p50 (max) over nodes, pooled over rounds; "
            "sidecar = wren-bgp + ExaBGP + its API process; in RR mode the sidecar columns are "
            "the clients'; idle CPU: during the settle time after convergence)")


def lab_sidecar_table(data: dict[str, Any]) -> str:
    """Where a sidecar's memory and CPU go: wren-bgp, ExaBGP, ExaBGP's API process."""
    rows = ["| topology | node role | wren-bgp RSS MiB | ExaBGP RSS MiB | API process RSS MiB "
            "| wren-bgp CPU s | ExaBGP CPU s | API process CPU s |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]

    def part(cmd: str) -> str:
        return "relay" if "relay" in cmd else "exabgp" if "exabgp" in cmd else "wren-bgp"

    pooled: dict[tuple[str, int, str], dict[str, dict[str, list[float]]]] = {}
    names: dict[tuple[str, int, str], str] = {}
    for r in data.get("scale", []):
        if not r.get("converged"):
            continue
        per = r["after_settle"]["sidecar"]["per_node"]
        reflectors = set(r.get("reflectors", []))
        for node, group in per.items():
            role = "reflector" if node in reflectors else "client" if reflectors else "all"
            key = (r["mode"], r["nodes"], role)
            names[key] = topology_name(r)
            acc = pooled.setdefault(key, {"rss": {"wren-bgp": [], "exabgp": [], "relay": []},
                                          "cpu": {"wren-bgp": [], "exabgp": [], "relay": []}})
            for m in group["members"]:
                acc["rss"][part(m["cmd"])].append(m.get("vmrss_kb", 0) / 1024)
                acc["cpu"][part(m["cmd"])].append(m["cpu_s"])
    for key, acc in pooled.items():
        cells = [f"{statistics.median(v):.0f}" if v else "—" for v in acc["rss"].values()]
        cells += [f"{statistics.median(v):.1f}" if v else "—" for v in acc["cpu"].values()]
        rows.append(f"| {names[key]} | {key[2]} | " + " | ".join(cells) + " |")
    return ("\n".join(rows) + "\n\n(medians over nodes and rounds after the settle time; CPU s "
            "since process start)")


BGP_ROWS = (
    ("learn_wren", "learn → kernel", "BIRD 2 → ExaBGP → wren-bgp → wren-agent → kernel",
     "learn_wren_vs_bird", "BIRD", "≤ 2x"),
    ("learn_bird", "learn → kernel", "BIRD 2 → BIRD 2 → kernel (reference)", None, "", ""),
    ("announce_wren", "announce", "wren-bgp (crafted intent) → ExaBGP → BIRD 2",
     "announce_wren_vs_exabgp", "raw ExaBGP", "≤ 1.1x"),
    ("announce_exabgp", "announce", "raw ExaBGP helper (≤100 unacked) → BIRD 2",
     "announce_exabgp_vs_bird", "BIRD", ""),
    ("announce_bird", "announce", "BIRD 2 → BIRD 2", None, "", ""),
)


def bgp_table(data: dict[str, Any]) -> str:
    """bench_bgp.py: time from Established to the last route, CPU, ratios taken per run."""
    s = data["summary"]
    rows = [f"| {data['prefixes']:,} /26s | path | Established → last route ms "
            "| CPU ms, all its processes | time ratio (per run) | CPU ratio | target |",
            "|---|---|---:|---:|---:|---:|---|"]
    for key, what, path, ratio, versus, target in BGP_ROWS:
        if key not in s:
            continue
        time_ratio = cpu_ratio = met = ""
        if ratio and ratio in s:
            r = s[ratio]
            time_ratio = f"{r['median']:,.2f}x ({r['min']:,.2f}-{r['max']:,.2f}) vs {versus}"
            if f"{ratio}_cpu" in s:
                cpu_ratio = f"{s[f'{ratio}_cpu']['median']:,.1f}x"
            if target:
                met = f"{target}: {'met' if r.get('met') else 'not met'}"
        rows.append(f"| {what} | {path} | {cell(s, key)} | {cell(s, f'{key}_cpu_total')} "
                    f"| {time_ratio} | {cpu_ratio} | {met} |")
    shares = []
    for key, who in (("learn_wren", "Wren"), ("learn_bird", "BIRD")):
        parts = [f"{label} {s[f'{key}_{suffix}']['median']:,.0f}"
                 for suffix, label in (("first_route", "first route"), ("10pct", "10%"),
                                       ("50pct", "50%"), ("90pct", "90%"))
                 if f"{key}_{suffix}" in s]
        if parts:
            shares.append(f"{who}: {', '.join(parts)}")
    if shares:
        rows.append(f"\n(learn, ms after Established, medians: {'; '.join(shares)})")
    if "announce_wren_vs_bird" in s:
        r = s["announce_wren_vs_bird"]
        rows.append(f"\n(wren-bgp vs BIRD 2 → BIRD 2, announce: {r['median']:,.0f}x "
                    f"({r['min']:,.0f}-{r['max']:,.0f}); {data['runs']} runs, each sample a "
                    "fresh topology, the variants of a run back to back)")
    return "\n".join(rows)


def main() -> None:
    for name, render in (("routes", routes_table), ("agent", agent_table),
                         ("lab", lab_convergence_table), ("lab", lab_scale_table),
                         ("lab", lab_sidecar_table), ("bgp", bgp_table)):
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
