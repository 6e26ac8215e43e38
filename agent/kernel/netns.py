"""Open kernel sockets inside a named network namespace.

Several nodes share one machine in the lab and in the tests, each in its own namespace. A
netlink socket belongs to the namespace of the thread that opened it, for its whole life, so it
is enough to enter the namespace just while opening it; the rest of the process stays where it
was. (`os.setns` arrives in Python 3.12; this is the same call through ctypes.)
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["NETNS_RUN_DIR", "in_netns"]

NETNS_RUN_DIR = Path("/var/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns into {what}: {os.strerror(code)}")


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the body in network namespace `name` (as made by `ip netns add`); None = stay."""
    if name is None:
        yield
        return
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        there = os.open(NETNS_RUN_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(there, f"network namespace {name!r}")
        finally:
            os.close(there)
        try:
            yield
        finally:
            _setns(here, "the original network namespace")
    finally:
        os.close(here)
