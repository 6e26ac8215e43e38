"""JSON lines over a socket pair: lines cut anywhere by the transport come out whole."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bgp import channel
from bgp import relay as relay_module
from bgp.channel import Conn


def lines_from(pieces: list[bytes]) -> list[str]:
    ours, theirs = socket.socketpair()
    conn = Conn(ours)

    def write() -> None:
        for piece in pieces:
            theirs.sendall(piece)
        theirs.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        return list(conn.lines())
    finally:
        writer.join()
        conn.close()


def test_lines_cut_at_any_byte_come_out_whole() -> None:
    data = b'{"a": 1}\n\n{"b": "' + b"x" * 100_000 + b'"}\n{"c": 3}\n'
    want = ['{"a": 1}', "", '{"b": "' + "x" * 100_000 + '"}', '{"c": 3}']
    for size in (1, 7, 4096, 65536, len(data)):
        assert lines_from([data[i:i + size] for i in range(0, len(data), size)]) == want


def test_an_unfinished_last_line_is_dropped_at_the_end() -> None:
    assert lines_from([b"one\ntw", b"o"]) == ["one"]


def test_a_line_longer_than_the_limit_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel, "MAX_LINE", 1000)
    ours, theirs = socket.socketpair()
    conn = Conn(ours)
    done = threading.Event()
    closed_by_writer = []

    def write() -> None:
        theirs.sendall(b"ok\n" + b"y" * 1200)
        if not done.wait(10):  # the reader should give up by itself, not wait for the end
            closed_by_writer.append(True)
        theirs.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert list(conn.lines()) == ["ok"]
        assert not closed_by_writer
    finally:
        done.set()
        writer.join()
        conn.close()


def test_a_writer_can_have_a_whole_burst_in_flight() -> None:
    """~0.5 MB of routes must not block the writer while the reader waits for its GIL."""
    ours, theirs = socket.socketpair()
    conn = Conn(ours)
    try:
        wmem_max = int(Path("/proc/sys/net/core/wmem_max").read_text())
        granted = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2  # doubled
        assert granted >= min(channel.SEND_BUFFER, wmem_max)
        if os.geteuid() == 0:
            assert granted >= channel.SEND_BUFFER
    finally:
        conn.close()
        theirs.close()


def test_the_relay_widens_the_pipe_exabgp_writes_into(tmp_path: Path) -> None:
    """ExaBGP blocks its whole loop when the relay's stdin pipe is full (64 KiB by default)."""
    path = tmp_path / "relay.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(10)
    relay = subprocess.Popen([sys.executable, "-m", "bgp.relay", "--socket", str(path)],
                             stdin=subprocess.PIPE)
    try:
        accepted, _ = server.accept()
        assert relay.stdin is not None
        deadline = time.monotonic() + 10
        size = 0
        while time.monotonic() < deadline:  # it widens the pipe just after connecting
            size = fcntl.fcntl(relay.stdin.fileno(), fcntl.F_GETPIPE_SZ)
            if size >= relay_module.PIPE_SIZE:
                break
            time.sleep(0.02)
        assert size >= relay_module.PIPE_SIZE
        relay.stdin.write(b'{"a": 1}\n')
        relay.stdin.flush()
        accepted.settimeout(10)
        assert accepted.recv(100) == b'{"a": 1}\n'
        accepted.close()
    finally:
        relay.kill()
        relay.wait()
        server.close()
