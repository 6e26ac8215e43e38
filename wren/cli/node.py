"""`wrenctl node status`: like `calicoctl node status`, run on the node itself.

It asks the agent's health endpoint whether the agent runs and is ready, and reads the sidecar's
status file (in the node's run dir) for the BGP peer table; it needs no datastore.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import urllib.error
import urllib.request

import click

from bgp.status import PeerStatus, SidecarStatus, pid_alive, read_status
from wren.paths import node_run_dir

__all__ = ["COMMANDS", "render_status"]

STALE_AFTER = 15.0  # the sidecar rewrites its status every 2 s


@click.group("node")
def node_group() -> None:
    """Commands about the node wrenctl runs on."""


def _agent_state() -> str:
    host = os.environ.get("FELIX_HEALTHHOST", "127.0.0.1")
    port = os.environ.get("FELIX_HEALTHPORT", "9099")
    url = f"http://{host}:{port}/readiness"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return "running and ready" if resp.status == 200 else f"running ({resp.status})"
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace").strip().splitlines()
        return "running, not ready" + (f": {detail[0][:120]}" if detail else "")
    except (urllib.error.URLError, OSError):
        return "not running"


def _table(rows: list[PeerStatus]) -> list[str]:
    header = ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO", "RECEIVED", "ACCEPTED"]
    body = [[p.address, p.type, p.state,
             datetime.datetime.fromtimestamp(p.since).strftime("%H:%M:%S"), p.info,
             str(p.received), str(p.accepted)] for p in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line, fmt(header), line, *(fmt(r) for r in body), line]


def render_status(agent: str, status: SidecarStatus | None, *, now: float) -> str:
    lines = [f"Wren agent: {agent}."]
    if status is None:
        lines.append("Wren BGP (wren-bgp) is not running: no status file.")
        return "\n".join(lines) + "\n"
    fresh = now - status.updated < STALE_AFTER and pid_alive(status.pid)
    if not fresh:
        lines.append(f"Wren BGP (wren-bgp) is not running (last status "
                     f"{int(now - status.updated)} s old).")
    else:
        exa = ("running" if pid_alive(status.exabgp_pid)
               else f"not running: {status.exabgp_waiting}" if status.exabgp_waiting
               else "not running (restarting)")
        lines.append(f"Wren BGP (wren-bgp) is running; ExaBGP is {exa}. "
                     f"{status.announced} prefixes announced, {status.learned} learned.")
    for version in (4, 6):
        rows = [p for p in status.peers if (":" in p.address) == (version == 6)]
        lines += ["", f"IPv{version} BGP status"]
        if not rows:
            lines.append(f"No IPv{version} peers found.")
            continue
        lines += _table(rows)
        rejected: dict[str, int] = {}
        for p in rows:
            for reason, count in p.rejected.items():
                rejected[reason] = rejected.get(reason, 0) + count
        if rejected:
            lines.append("Dropped on import: " + ", ".join(f"{k}: {v}" for k, v in
                                                            sorted(rejected.items())))
    return "\n".join(lines) + "\n"


@node_group.command("status")
@click.option("--node", "node_name", default=None,
              help="Node name (default: NODENAME, else the host name).")
def status_command(node_name: str | None) -> None:
    """Whether the agent and the BGP sidecar run, and the BGP peer table."""
    name = node_name or os.environ.get("NODENAME") or socket.gethostname()
    status = read_status(node_run_dir(name))
    click.echo(render_status(_agent_state(), status, now=time.time()), nl=False)


COMMANDS: list[click.Command] = [node_group]
