"""JSON lines over a unix socket: the agent ⇄ sidecar channel, and the ExaBGP relay's link.

The socket lives in the node's run directory (per node, so lab nodes never collide) with mode
0600. Either side may restart: the server re-creates the socket, the client reconnects.

    agent → sidecar   {"type": "intent", "intent": {...}}          (whole intent, on change)
    sidecar → agent   {"type": "routes", "via": [[next_hop, peer, [prefix, ...]], ...],
                       "complete": bool}                             (whole set, on connect)
                      {"type": "routes", "delta": true, "via": [...],
                       "withdrawn": [prefix, ...], "complete": bool} (what changed, after that)
                      (the agent also reads "routes": [[prefix, next_hop, peer], ...], the
                      form before "via")

In "via" and "withdrawn" an IPv4 prefix is one int, `address << 8 | length` (10.65.1.0/26 is
0x0A4101001A = 44040257562), an IPv6 prefix its text: the agent builds an IPv4 prefix from
the int without parsing text (`wren.prefix.pack_prefix`, `unpack_prefixes`), and still reads
IPv4 text. Both ends ship in one image, so a sidecar never talks to an older agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Conn", "Listener", "connect"]

MAX_LINE = 64 * 1024 * 1024


class Conn:
    """One connected socket: whole lines in, whole lines out; writes are serialized."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._closed = False
        _roomy(sock)

    def send_lines(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        with self._lock:
            self.sock.sendall(data)

    def send(self, message: dict[str, Any]) -> None:
        self.send_lines([json.dumps(message, separators=(",", ":"))])

    def lines(self) -> Iterator[str]:
        """Lines until the other side closes (or this side does). Linear in the bytes read:
        an ExaBGP UPDATE line of ~40 KB arrives in pieces, and gluing each piece to the whole
        buffer with `bytes +=` copied it over and over."""
        pending = bytearray()
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            end = chunk.rfind(b"\n")
            if end < 0:
                pending += chunk
                if len(pending) > MAX_LINE:
                    return
                continue
            pending += memoryview(chunk)[:end]
            complete = pending.split(b"\n")
            pending = bytearray(memoryview(chunk)[end + 1:])
            for raw in complete:
                yield raw.decode(errors="replace")
            if len(pending) > MAX_LINE:
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


#: Bytes a writer may have in flight: a burst of 10,000 routes is ~0.5 MB of JSON, and with
#: the default ~200 KB the writer (ExaBGP, through the relay; the sidecar, to the agent) stalled
#: whenever the reader's thread waited for its process's GIL.
SEND_BUFFER = 4 << 20
_SO_SNDBUFFORCE = 32


def _roomy(sock: socket.socket) -> None:
    """A send buffer of SEND_BUFFER: forced when we may (root), else as far as wmem_max allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, SEND_BUFFER)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


class Listener:
    """Accepts connections on a unix socket and hands each to `on_conn` on its own thread."""

    def __init__(self, path: Path, on_conn: Callable[[Conn], None], *, name: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self._sock.bind(str(path))
        finally:
            os.umask(old)
        self._sock.listen(8)
        self._on_conn = on_conn
        self._name = name
        self._thread = threading.Thread(target=self._accept, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._on_conn, args=(Conn(sock),), name=self._name,
                             daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def connect(path: Path, *, timeout: float = 5.0) -> Conn:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return Conn(sock)
