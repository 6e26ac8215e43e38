"""`wrenctl node status`: the report rendered from the sidecar's status, like calicoctl's.

No process is started: our own pid stands for a running one, pid 0 / None for none.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from bgp.status import PeerStatus, SidecarStatus, read_status, status_path
from wren.cli.node import STALE_AFTER, render_status

NOW = 1_800_000_000.0
SINCE = NOW - 3600


def hms(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def status(*peers: PeerStatus, updated: float = NOW - 1, pid: int | None = None,
           exabgp_pid: int | None = None, exabgp_waiting: str = "") -> SidecarStatus:
    return SidecarStatus(node="n1", pid=os.getpid() if pid is None else pid,
                         exabgp_pid=os.getpid() if exabgp_pid is None else exabgp_pid,
                         updated=updated, peers=list(peers), learned=5, announced=3,
                         exabgp_waiting=exabgp_waiting)


MESH_UP = PeerStatus(address="10.0.0.2", type="node-to-node mesh", name="n2", state="up",
                     since=SINCE, info="Established", received=4, accepted=3,
                     rejected={"outside pools": 1})
TOR_DOWN = PeerStatus(address="192.0.2.1", type="global", name="tor", state="start",
                      since=SINCE, info="Connect")
V6_PEER = PeerStatus(address="fd00::2", type="node specific", name="v6", state="up",
                     since=SINCE, info="Established", received=1, accepted=1)


def test_the_full_report_with_a_table_per_address_family() -> None:
    out = render_status("running and ready", status(MESH_UP, TOR_DOWN), now=NOW)
    t = hms(SINCE)
    assert out == "\n".join([
        "Wren agent: running and ready.",
        "Wren BGP (wren-bgp) is running; ExaBGP is running. "
        "3 prefixes announced, 5 learned.",
        "",
        "IPv4 BGP status",
        "+--------------+-------------------+-------+----------+-------------+----------+"
        "----------+",
        "| PEER ADDRESS | PEER TYPE         | STATE | SINCE    | INFO        | RECEIVED |"
        " ACCEPTED |",
        "+--------------+-------------------+-------+----------+-------------+----------+"
        "----------+",
        f"| 10.0.0.2     | node-to-node mesh | up    | {t} | Established | 4        |"
        " 3        |",
        f"| 192.0.2.1    | global            | start | {t} | Connect     | 0        |"
        " 0        |",
        "+--------------+-------------------+-------+----------+-------------+----------+"
        "----------+",
        "Dropped on import: outside pools: 1",
        "",
        "IPv6 BGP status",
        "No IPv6 peers found.",
        "",
    ])


def test_columns_widen_to_the_longest_cell() -> None:
    long_info = PeerStatus(address="10.0.0.3", type="global", name="x", state="start",
                           since=SINCE, info="Active Socket: Connection refused")
    lines = render_status("running and ready", status(long_info), now=NOW).splitlines()
    table = [line for line in lines if line.startswith(("|", "+"))]
    assert len({len(line) for line in table}) == 1  # every row as wide as the border
    assert "| Active Socket: Connection refused |" in table[3]
    assert table[1].startswith("| PEER ADDRESS | PEER TYPE | STATE | SINCE    | INFO   ")


def test_ipv6_peers_get_their_own_section() -> None:
    out = render_status("running and ready", status(V6_PEER), now=NOW)
    v4, v6 = out.split("IPv6 BGP status")
    assert "No IPv4 peers found." in v4 and "fd00::2" not in v4
    assert "| fd00::2      | node specific | up    |" in v6


def test_dropped_on_import_adds_up_the_reasons_of_every_peer() -> None:
    other = PeerStatus(address="10.0.0.3", type="node-to-node mesh", name="n3", state="up",
                       since=SINCE, rejected={"outside pools": 2, "default route": 1})
    out = render_status("running and ready", status(MESH_UP, other), now=NOW)
    assert "Dropped on import: default route: 1, outside pools: 3" in out


def test_no_dropped_line_when_nothing_was_dropped() -> None:
    out = render_status("running and ready", status(TOR_DOWN), now=NOW)
    assert "Dropped on import" not in out


def test_exabgp_not_running_is_reported_as_restarting() -> None:
    out = render_status("running and ready", status(MESH_UP, exabgp_pid=0), now=NOW)
    assert "Wren BGP (wren-bgp) is running; ExaBGP is not running (restarting)." in out


def test_exabgp_held_back_on_purpose_says_why_instead_of_restarting() -> None:
    why = "waiting for the node address 10.0.1.99 (spec.bgp.ipv4Address) to be on this host"
    out = render_status("running and ready", status(MESH_UP, exabgp_pid=0, exabgp_waiting=why),
                        now=NOW)
    assert f"ExaBGP is not running: {why}." in out
    assert "restarting" not in out


def test_a_status_older_than_the_stale_limit_means_the_sidecar_is_not_running() -> None:
    out = render_status("running and ready", status(updated=NOW - STALE_AFTER - 5), now=NOW)
    assert f"Wren BGP (wren-bgp) is not running (last status {int(STALE_AFTER + 5)} s old)." \
        in out
    assert "is running;" not in out


def test_a_fresh_status_of_a_dead_sidecar_means_not_running() -> None:
    out = render_status("running and ready", status(pid=0), now=NOW)
    assert "Wren BGP (wren-bgp) is not running" in out


def test_no_status_file_says_so_and_shows_no_table() -> None:
    out = render_status("not running", None, now=NOW)
    assert out == ("Wren agent: not running.\n"
                   "Wren BGP (wren-bgp) is not running: no status file.\n")


def test_the_report_from_the_status_file_the_sidecar_writes(tmp_path: Path) -> None:
    written = status(MESH_UP, V6_PEER)
    status_path(tmp_path).write_text(json.dumps(asdict(written)))
    read = read_status(tmp_path)
    assert read is not None
    out = render_status("running, not ready: datastore", read, now=NOW)
    assert out.startswith("Wren agent: running, not ready: datastore.\n")
    assert "| 10.0.0.2     | node-to-node mesh | up    |" in out
    assert "| fd00::2      | node specific | up    |" in out
