"""Kernel change notifications for the tables, read by a small thread.

The thread only decodes and enqueues; the main loop hands the events to the tables
(`RouteTable.on_route`, `RouteTable.on_link`, `LinkTable.on_link`), which update their
dataplane views, and the next `apply()` repairs any drift. No kernel I/O and no decisions happen
in the thread. If the kernel drops notifications (ENOBUFS: the socket's buffer overflowed, e.g.
during a burst of 50k route writes), an `EventsLost` tells the main loop to resync every table.

Route notifications caused by the agent's own writes (they carry its writing socket's port) are
dropped unread: the table recorded those writes when the kernel acknowledged them, and decoding
and re-checking the echo of 10,000 learned routes cost the loop ~0.1 s of a BGP burst. A socket
filter drops them in the kernel, so they are not even queued to us (the same check in Python
stays behind it, for a kernel that refuses the filter). Changes by anyone else, and the kernel's
own (a device going down), still come through.
"""

from __future__ import annotations

import ctypes
import errno
import queue
import socket
import struct
import sys
import threading
from dataclasses import dataclass

from agent.kernel.netlink import (
    NETLINK_ROUTE,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    LinkInfo,
    RouteMsg,
    decode_link,
    decode_route,
    iter_messages,
)
from wren.log import get_logger

__all__ = [
    "RTMGRP_IPV4_ROUTE",
    "RTMGRP_IPV6_ROUTE",
    "RTMGRP_LINK",
    "EventsLost",
    "KernelEvent",
    "KernelEventListener",
    "LinkEvent",
    "RouteEvent",
]

log = get_logger(__name__)

SO_ATTACH_FILTER = 26
RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400


@dataclass(frozen=True, slots=True)
class RouteEvent:
    route: RouteMsg
    deleted: bool


@dataclass(frozen=True, slots=True)
class LinkEvent:
    link: LinkInfo
    deleted: bool


@dataclass(frozen=True, slots=True)
class EventsLost:
    """Notifications were dropped: every table must resync."""

    reason: str


KernelEvent = RouteEvent | LinkEvent | EventsLost


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _drop_from_ports(sock: socket.socket, ports: frozenset[int]) -> None:
    """Attach a classic BPF filter: drop a message whose nlmsg_pid is one of `ports`.

    Each notification is a datagram of one message, so the header at offset 0 is its own.
    BPF loads words in network byte order; the header is in host order, hence the swap."""
    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    insns = [(ld_w_abs, 0, 0, 12)]  # A = nlmsg_pid
    for i, port in enumerate(sorted(ports)):
        left = len(ports) - i - 1  # more comparisons before "accept"
        insns.append((jeq_k, left + 1, 0, int.from_bytes(port.to_bytes(4, sys.byteorder), "big")))
    insns += [(ret_k, 0, 0, 0xFFFFFFFF), (ret_k, 0, 0, 0)]  # accept whole / drop
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in insns))
    fprog = _SockFprog(len(insns), ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


class KernelEventListener:
    """Subscribes (in the calling thread's network namespace) and feeds `out` from a thread."""

    def __init__(self, out: queue.Queue[KernelEvent], *,
                 groups: int = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE,
                 buffer_bytes: int = 8 << 20, own_ports: frozenset[int] = frozenset()) -> None:
        self._out = out
        self._own = own_ports - {0}  # port 0 is the kernel itself
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, 33, buffer_bytes)  # SO_RCVBUFFORCE
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        self._sock.bind((0, groups))
        if self._own:
            try:
                _drop_from_ports(self._sock, self._own)
            except OSError as exc:
                log.info("no socket filter for our own route echoes; dropping them in Python",
                         error=str(exc))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kernel-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _run(self) -> None:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while not self._stop.is_set():
            try:
                n = self._sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._out.put(EventsLost("kernel dropped notifications (ENOBUFS)"))
                    continue
                if self._stop.is_set():
                    return
                log.error("kernel event socket failed", error=str(exc))
                self._out.put(EventsLost(f"event socket failed: {exc}"))
                return
            for msg in iter_messages(view, n):
                if msg.type in (RTM_NEWROUTE, RTM_DELROUTE):
                    if msg.pid in self._own:
                        continue
                    route = decode_route(view, msg.start, msg.end)
                    if route is not None:
                        self._out.put(RouteEvent(route, deleted=msg.type == RTM_DELROUTE))
                elif msg.type in (RTM_NEWLINK, RTM_DELLINK):
                    link = decode_link(view, msg.start, msg.end)
                    self._out.put(LinkEvent(link, deleted=msg.type == RTM_DELLINK))
