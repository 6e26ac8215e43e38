"""ExaBGP's API process: a pipe between ExaBGP and the wren-bgp sidecar, nothing else.

ExaBGP starts it (`process wren { run ... }`) and talks over stdin/stdout; the sidecar's logic
lives in the long-running `wren-bgp` so that it survives ExaBGP restarts. Two rules from
notes/exabgp5.md: read stdin always, on its own thread (ExaBGP freezes when its writes block), and
exit at stdin EOF. If the sidecar goes away this exits too; ExaBGP then respawns it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import threading
import time
from pathlib import Path

from bgp.channel import Conn, connect

__all__ = ["main"]

PIPE_SIZE = 1 << 20  # the default /proc/sys/fs/pipe-max-size


def _connect(path: Path, deadline: float) -> Conn:
    while True:
        try:
            return connect(path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ExaBGP API relay for wren-bgp")
    parser.add_argument("--socket", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        conn = _connect(args.socket, time.monotonic() + 10)
    except OSError as err:
        print(f"wren-bgp relay: cannot reach {args.socket}: {err}", file=sys.stderr)
        return 1

    def to_exabgp() -> None:
        out = sys.stdout.buffer
        for line in conn.lines():
            out.write(line.encode() + b"\n")
            out.flush()
        os._exit(0)  # the sidecar went away: ExaBGP respawns us, we reconnect

    threading.Thread(target=to_exabgp, daemon=True).start()
    # A roomier pipe from ExaBGP: its writes block its whole loop (no keepalives, no parsing)
    # whenever we fall behind for a moment; 64 KiB is ~3,000 routes of JSON.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(sys.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        try:
            conn.sock.sendall(line)
        except OSError:
            break
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
