"""The sidecar's status file: what wren-bgp writes is what `wrenctl node status` reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bgp.status import PeerStatus, SidecarStatus, read_status, status_path, write_status


def _status(**changes: object) -> SidecarStatus:
    status = SidecarStatus(
        node="node-1", pid=4321, exabgp_pid=4322, updated=1795327809.5,
        peers=[
            PeerStatus(address="10.99.0.2", type="node-to-node mesh", name="node-2",
                       state="up", since=1795327800.25, info="Established",
                       received=12, accepted=10,
                       rejected={"outside pools": 1, "own block": 1}),
            PeerStatus(address="10.99.0.3", type="global", name="tor", state="start",
                       since=1795327700.0),
        ],
        learned=10, announced=3,
    )
    for key, value in changes.items():
        setattr(status, key, value)
    return status


def test_written_status_reads_back_equal(tmp_path: Path) -> None:
    status = _status()
    write_status(tmp_path, status)
    assert read_status(tmp_path) == status


def test_status_without_exabgp_or_peers_reads_back_equal(tmp_path: Path) -> None:
    status = _status(exabgp_pid=None, peers=[], learned=0, announced=0)
    write_status(tmp_path, status)
    assert read_status(tmp_path) == status


def test_a_new_write_replaces_the_old_status(tmp_path: Path) -> None:
    write_status(tmp_path, _status())
    newer = _status(updated=1795327900.0, peers=[], learned=0)
    write_status(tmp_path, newer)
    assert read_status(tmp_path) == newer


def test_write_leaves_only_the_status_file_behind(tmp_path: Path) -> None:
    write_status(tmp_path, _status())
    assert os.listdir(tmp_path) == [status_path(tmp_path).name]


def test_status_file_is_plain_json_in_the_run_dir(tmp_path: Path) -> None:
    write_status(tmp_path, _status())
    raw = json.loads((tmp_path / "bgp-status.json").read_text())
    assert raw["node"] == "node-1"
    assert raw["peers"][0]["rejected"] == {"outside pools": 1, "own block": 1}


def test_no_status_file_reads_as_none(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None


def test_missing_run_dir_reads_as_none(tmp_path: Path) -> None:
    assert read_status(tmp_path / "not-there") is None


@pytest.mark.parametrize("text", [
    "",
    '{"node": "node-1", "pid": 43',
    "[]",
    "null",
    '{"node": "node-1"}',
    '{"node": "node-1", "pid": 1, "exabgp_pid": null, "updated": 0, "peers": [{"address": 1}]}',
    '{"node": "node-1", "pid": 1, "exabgp_pid": null, "updated": 0, "peers": [], "colour": 1}',
], ids=["empty", "cut off", "list", "null", "fields missing", "peer fields missing",
        "unknown field"])
def test_unusable_status_file_reads_as_none(tmp_path: Path, text: str) -> None:
    status_path(tmp_path).write_text(text)
    assert read_status(tmp_path) is None
