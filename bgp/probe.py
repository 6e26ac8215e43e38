"""Kubelet probes for the sidecar container (`wren-bgp --live` / `--ready`), from its status file.

Why the status file: the sidecar rewrites it every couple of seconds from its main loop, so a
fresh file proves the loop is not stuck, and it already holds the peer table that readiness
needs (Calico's `calico-node -bird-ready` asks the same question of BIRD: is every BGP session
established?). The probe is a separate short process and must not talk to ExaBGP itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from bgp.status import SidecarStatus, pid_alive, read_status, status_path

__all__ = ["STALE_AFTER", "liveness_problems", "probe", "readiness_problems"]

STALE_AFTER = 30.0  # the loop writes every 2 s; this much silence means it is stuck


def liveness_problems(status: SidecarStatus | None, *, now: float, pid_alive: bool) -> list[str]:
    if status is None:
        return ["no status file: the sidecar has not started or cannot write its run dir"]
    if not pid_alive:
        return [f"the sidecar (pid {status.pid}) that wrote the status is gone"]
    age = now - status.updated
    if age > STALE_AFTER:
        return [f"status not updated for {age:.0f} s (the sidecar's loop is stuck)"]
    return []


def readiness_problems(status: SidecarStatus | None, *, now: float, pid_alive: bool) -> list[str]:
    problems = liveness_problems(status, now=now, pid_alive=pid_alive)
    if problems or status is None:
        return problems
    if status.exabgp_pid is None:
        problems.append("ExaBGP is not running ("
                        + (status.exabgp_waiting or "the sidecar is restarting it") + ")")
    problems += [f"BGP not established with {p.address} ({p.type}: {p.info})"
                 for p in status.peers if p.state != "up"]
    return problems


def probe(run_dir: Path, kind: str) -> tuple[int, str]:
    """(exit code, message) for `--live` or `--ready`; 0 means healthy."""
    status = read_status(run_dir)
    alive = status is not None and pid_alive(status.pid)
    check = liveness_problems if kind == "live" else readiness_problems
    problems = check(status, now=time.time(), pid_alive=alive)
    if problems:
        return 1, f"wren-bgp is not {kind}: " + "; ".join(problems) + f" ({status_path(run_dir)})"
    return 0, f"wren-bgp is {kind}"
