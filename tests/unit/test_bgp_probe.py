"""The sidecar container's liveness and readiness probes, judged from its status file."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bgp.probe import STALE_AFTER, liveness_problems, probe, readiness_problems
from bgp.sidecar import main
from bgp.status import PeerStatus, SidecarStatus, write_status

NOW = 1_700_000_000.0


def status(*states: str, updated: float = NOW, exabgp: int | None = 4242) -> SidecarStatus:
    peers = [PeerStatus(address=f"10.0.0.{i + 1}", type="node-to-node mesh", name=f"n{i}",
                        state=s, info="Established" if s == "up" else "Active")
             for i, s in enumerate(states)]
    return SidecarStatus(node="n1", pid=os.getpid(), exabgp_pid=exabgp, updated=updated,
                         peers=peers)


def test_a_fresh_status_from_a_running_sidecar_is_live() -> None:
    assert liveness_problems(status("start"), now=NOW + 1, pid_alive=True) == []


def test_no_status_file_is_not_live() -> None:
    assert "no status file" in liveness_problems(None, now=NOW, pid_alive=False)[0]


def test_a_status_left_by_a_dead_sidecar_is_not_live() -> None:
    assert "is gone" in liveness_problems(status(), now=NOW, pid_alive=False)[0]


def test_a_status_not_rewritten_for_too_long_means_a_stuck_loop() -> None:
    problems = liveness_problems(status(), now=NOW + STALE_AFTER + 1, pid_alive=True)
    assert "stuck" in problems[0]


def test_ready_when_every_session_is_established() -> None:
    assert readiness_problems(status("up", "up"), now=NOW, pid_alive=True) == []


def test_a_node_with_no_peers_is_ready() -> None:
    assert readiness_problems(status(), now=NOW, pid_alive=True) == []


def test_not_ready_names_each_peer_that_is_not_established() -> None:
    problems = readiness_problems(status("up", "start", "down"), now=NOW, pid_alive=True)
    assert problems == ["BGP not established with 10.0.0.2 (node-to-node mesh: Active)",
                        "BGP not established with 10.0.0.3 (node-to-node mesh: Active)"]


def test_not_ready_while_exabgp_is_being_restarted() -> None:
    problems = readiness_problems(status("up", exabgp=None), now=NOW, pid_alive=True)
    assert problems == ["ExaBGP is not running (the sidecar is restarting it)"]


def test_not_ready_while_exabgp_waits_for_the_node_address_says_so() -> None:
    held = replace(status("up", exabgp=None), exabgp_waiting="waiting for the node address")
    problems = readiness_problems(held, now=NOW, pid_alive=True)
    assert problems == ["ExaBGP is not running (waiting for the node address)"]


def test_probe_reads_the_status_file_of_the_run_dir(tmp_path: Path) -> None:
    write_status(tmp_path, status("up", "start", updated=time.time()))
    assert probe(tmp_path, "live")[0] == 0
    code, message = probe(tmp_path, "ready")
    assert code == 1 and "10.0.0.2" in message and str(tmp_path) in message


def test_wren_bgp_ready_flag_exits_nonzero_without_a_running_sidecar(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WREN_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("NODENAME", "n1")
    assert main(["--ready"]) == 1
    assert "no status file" in capsys.readouterr().err
