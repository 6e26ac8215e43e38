"""What every benchmark here shares: throwaway namespaces, medians, machine facts, JSON output.

Shared machines are noisy, so every script interleaves the things it compares within one run
and reports medians with min-max; ratios are taken per run, then their median.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def tag() -> str:
    """Namespace/link names start with `wt-bn-` and a random suffix (other engineers share
    this machine and its namespaces)."""
    return f"wt-bn-{os.urandom(3).hex()}"


@contextmanager
def namespace(setup: Sequence[str] = ()) -> Iterator[str]:
    """A fresh network namespace, `setup` applied with one `ip -batch`; deleted afterwards."""
    name = tag()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        if setup:
            subprocess.run(["ip", "-n", name, "-batch", "-"], input="\n".join(setup) + "\n",
                           text=True, check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def summary(samples: Sequence[float], *, scale: float = 1000.0) -> dict[str, Any]:
    """Median, min, max and the samples, in milliseconds by default."""
    vals = [round(s * scale, 3) for s in samples]
    return {"median": round(statistics.median(vals), 3), "min": min(vals), "max": max(vals),
            "samples": vals}


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) — with 200 samples p99 is the 2nd largest."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def fmt(s: dict[str, Any]) -> str:
    return f"{s['median']:8.1f} ({s['min']:.0f}-{s['max']:.0f})"


def machine() -> dict[str, Any]:
    """Enough to tell later readers what these numbers were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    ip_version = subprocess.run(["ip", "-V"], capture_output=True, text=True,
                                check=False).stdout.strip()
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "kernel": platform.release(), "python": platform.python_version(),
            "cpu": cpu, "cpus": os.cpu_count(), "mem_mb": mem_kb // 1024,
            "loadavg": os.getloadavg(), "iproute2": ip_version,
            "note": "shared machine: other engineers' jobs ran at the same time"}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    return path
