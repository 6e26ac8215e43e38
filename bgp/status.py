"""The sidecar's status file (for `wrenctl node status`), written atomically in the run dir."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PeerStatus", "SidecarStatus", "pid_alive", "read_status", "status_path", "write_status"]


@dataclass
class PeerStatus:
    address: str
    type: str
    name: str
    state: str = "start"  # up | start | down (calicoctl's words)
    since: float = field(default_factory=time.time)  # wall clock of the last state change
    info: str = "Connect"
    received: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass
class SidecarStatus:
    node: str
    pid: int
    exabgp_pid: int | None
    updated: float
    peers: list[PeerStatus]
    learned: int = 0
    announced: int = 0
    # Why the sidecar holds ExaBGP back on purpose ("" while it runs it, or restarts it).
    exabgp_waiting: str = ""


def status_path(run_dir: Path) -> Path:
    return run_dir / "bgp-status.json"


def write_status(run_dir: Path, status: SidecarStatus) -> None:
    path = status_path(run_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(status)))
    os.replace(tmp, path)


def read_status(run_dir: Path) -> SidecarStatus | None:
    """None when there is no usable status: no file, not JSON, or not the shape written here
    (fields missing or unknown, e.g. from another version), so `wrenctl` reports no sidecar
    instead of failing."""
    try:
        raw: dict[str, Any] = json.loads(status_path(run_dir).read_text())
        peers = [PeerStatus(**p) for p in raw.pop("peers", [])]
        return SidecarStatus(peers=peers, **raw)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def pid_alive(pid: int | None) -> bool:
    """Whether the process that wrote a status (sidecar or its ExaBGP) still exists."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
