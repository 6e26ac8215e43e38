"""Where per-node files live. Several nodes share one machine in the lab and the tests, so every
default path includes the node name; `WREN_RUN_DIR` / `WREN_STATE_DIR` move them all at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["node_run_dir", "node_state_dir"]


def node_run_dir(node: str, env: Mapping[str, str] | None = None) -> Path:
    """Sockets between agent and sidecar, pid files: `/var/run/wren/<node>` by default."""
    env = os.environ if env is None else env
    base = env.get("WREN_RUN_DIR")
    return Path(base) if base else Path("/var/run/wren") / node


def node_state_dir(node: str, env: Mapping[str, str] | None = None) -> Path:
    """State that outlives a restart (the MTU file, CNI state): `/var/lib/wren/<node>`."""
    env = os.environ if env is None else env
    base = env.get("WREN_STATE_DIR")
    return Path(base) if base else Path("/var/lib/wren") / node
