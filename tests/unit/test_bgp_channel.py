"""JSON lines over a socket pair: lines cut anywhere by the transport come out whole."""

from __future__ import annotations

import socket
import threading

import pytest

from bgp import channel
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
