"""What every benchmark here shares: throwaway namespaces, medians, machine facts, JSON output,
a netlink route monitor and per-process CPU time.

Shared machines are noisy, so every script interleaves the things it compares within one run
and reports medians with min-max; ratios are taken per run, then their median.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.kernel.netlink import iter_messages  # noqa: E402  (needs ROOT)
from agent.kernel.netns import in_netns  # noqa: E402

RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWROUTE = 24
SO_RCVBUFFORCE = 33
POLL = 0.001  # seconds the monitor sleeps once it has read everything queued
STOP_EVERY = 0.05  # seconds an idle monitor waits in the kernel before it looks at `close`
MSG_WAITFORONE = 0x10000  # recvmmsg(2): block for the first datagram only (not in `socket`)
BATCH, SLOT = 256, 1024  # datagrams per recvmmsg, bytes kept of each (one route: ~60-120)


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_IoVec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    """struct mmsghdr: a struct msghdr, then the length received."""

    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


_LEN_AT = _MMsgHdr.len.offset
_libc = ctypes.CDLL(None, use_errno=True)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int,
                      ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int


class _Batches:
    """recvmmsg(2) into BATCH slots of SLOT bytes: one call (and one Python step) for up to
    BATCH notifications, where `recv` took one each."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = ctypes.create_string_buffer(BATCH * SLOT)
        self._iov = (_IoVec * BATCH)()
        self._hdrs = (_MMsgHdr * BATCH)()
        base = ctypes.addressof(self._buf)
        for i in range(BATCH):
            self._iov[i].base, self._iov[i].len = base + i * SLOT, SLOT
            self._hdrs[i].hdr.iov = ctypes.pointer(self._iov[i])
            self._hdrs[i].hdr.iovlen = 1

    def read(self, wait: bool) -> tuple[bytes, bytes, int]:
        """(slots, headers, count) of what is queued now, or, if `wait`, once something is
        (up to the socket's receive timeout); count 0 if nothing. Raises OSError (ENOBUFS
        when the kernel dropped notifications)."""
        n = _recvmmsg(self._fd, self._hdrs, BATCH, MSG_WAITFORONE if wait else socket.MSG_DONTWAIT,
                      None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EINTR):
                return b"", b"", 0
            raise OSError(err, os.strerror(err))
        return (ctypes.string_at(self._buf, n * SLOT),
                ctypes.string_at(self._hdrs, n * ctypes.sizeof(_MMsgHdr)), n)


_FLAGS_AT = _MMsgHdr.hdr.offset + _MsgHdr.flags.offset


def _datagrams(slots: bytes, headers: bytes, count: int) -> Iterator[tuple[bytes, bool]]:
    """(datagram, truncated?) of each slot a `_Batches.read` filled."""
    size = ctypes.sizeof(_MMsgHdr)
    for i in range(count):
        length = _U32.unpack_from(headers, i * size + _LEN_AT)[0]
        flags = _U32.unpack_from(headers, i * size + _FLAGS_AT)[0]
        yield slots[i * SLOT:i * SLOT + min(length, SLOT)], bool(flags & socket.MSG_TRUNC)


class RouteMonitor:
    """When each IPv4 destination of one route protocol first appears in a namespace's main
    table (netlink multicast, so no polling of the table skews the times).

    It is the instrument, so it stays out of the way of what it measures. Its thread sleeps in
    the kernel until a notification comes, then reads everything queued with one `recvmmsg`
    (up to BATCH), stamps it with the time of that read and sleeps POLL (1 ms) before the
    next: a time is at most about that late, and however fast routes arrive the thread wakes
    at most once a millisecond. The messages are decoded later, by whoever asks, and
    `at_least(n)` decodes nothing while fewer than n notifications came (each carries one
    route), so nothing is decoded while routes arrive.

    What it cost, per 10,000 routes, on the two cores the measured processes share: a thread
    that woke for every notification and decoded it at once, ~85 ms of CPU (BIRD, the
    reference, was the more hurt: its median learn went from 115 to 94 ms without it); one
    that polled every millisecond with one `recv` per notification, ~30-45 ms, a third of it
    the polling itself (a wake-up costs ~40 µs in this VM); this one, ~15-25 ms."""

    def __init__(self, netns: str, protocol: int = 80, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.protocol = protocol
        self._clock = clock
        with in_netns(netns):
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
        self._sock.bind((0, RTMGRP_IPV4_ROUTE))
        # (when, slots, headers, count) per read, appended only; `_count` datagrams in all.
        self._received: list[tuple[float, bytes, bytes, int]] = []
        self._count = 0
        self._decoded_upto = 0
        self._single = True  # every datagram so far held at most one message
        self._raw: dict[bytes, float] = {}  # dst_len byte + RTA_DST payload → first seen
        self._texts: dict[str, float] = {}
        self.overflowed = False  # ENOBUFS: messages lost; callers fall back to a dump
        self._cond = threading.Condition()
        self._waiters = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def count(self) -> int:
        """Destinations seen so far."""
        return len(self._decode())

    def at_least(self, n: int) -> bool:
        """Whether n destinations were seen; decodes only once n notifications came."""
        if self._single and self._count < n:
            return False
        return len(self._decode()) >= n

    @property
    def seen(self) -> dict[str, float]:
        """Prefix text → when it first appeared."""
        raw = self._decode()
        if len(raw) != len(self._texts):
            self._texts = {_prefix_text(key): t for key, t in list(raw.items())}
        return self._texts

    @property
    def first(self) -> float | None:
        return min(self._decode().values(), default=None)

    @property
    def last(self) -> float | None:
        return max(self._decode().values(), default=None)

    def wait_for(self, dst: str, timeout: float) -> float | None:
        """When `dst` appeared, waiting for it up to `timeout` (ask from one thread only)."""
        key = _prefix_key(dst)
        with self._cond:
            self._waiters += 1
            try:
                self._cond.wait_for(lambda: key in self._decode(), timeout=timeout)
            finally:
                self._waiters -= 1
        return self._raw.get(key)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self._sock.close()

    def _run(self) -> None:
        # Only this thread is favoured, so that its times are close to the kernel's (the
        # measured processes keep their normal priority).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        read, clock, note = _Batches(self._sock.fileno()).read, self._clock, self._received.append
        # Idle, the thread sleeps in the kernel until a notification comes (or STOP_EVERY
        # passes); while they come, it reads what queued and sleeps POLL, so that it wakes at
        # most once a millisecond however fast routes arrive.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                              struct.pack("ll", 0, int(STOP_EVERY * 1e6)))
        wait = True
        while not self._stop:
            try:
                slots, headers, count = read(wait)
            except OSError:
                self.overflowed = True
                continue
            if count:
                note((clock(), slots, headers, count))
                self._count += count
            if count < BATCH and self._waiters:
                with self._cond:
                    self._cond.notify_all()
            wait = not count
            if count and count < BATCH:
                time.sleep(POLL)

    def _decode(self) -> dict[bytes, float]:
        """Turn the datagrams received since the last call into first-seen times."""
        received, start = self._received, self._decoded_upto
        end = len(received)  # the thread only appends: everything below `end` is stable
        self._decoded_upto = end
        raw, protocol = self._raw, self.protocol
        for i in range(start, end):
            now, slots, headers, count = received[i]
            for buf, truncated in _datagrams(slots, headers, count):
                if truncated:
                    self.overflowed = True  # a route may be missing: callers fall back to a dump
                messages = 0
                for msg in iter_messages(buf, len(buf)):
                    messages += 1
                    rt = msg.start  # rtmsg (12 bytes), then attributes
                    if msg.type != RTM_NEWROUTE or rt + 12 > msg.end \
                            or buf[rt] != socket.AF_INET or buf[rt + 5] != protocol \
                            or _U32.unpack_from(buf, rt + 8)[0] & RTM_F_CLONED:
                        continue
                    attr = rt + 12
                    while attr + 4 <= msg.end:  # to RTA_DST: only the destination is needed
                        alen, atype = _RTA.unpack_from(buf, attr)
                        if alen < 4:
                            break
                        if atype == RTA_DST:
                            raw.setdefault(buf[attr + 4:attr + alen] + buf[rt + 1:rt + 2], now)
                            break
                        attr += (alen + 3) & ~3
                if messages > 1:
                    self._single = False
        return raw


_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
RTA_DST = 1
RTM_F_CLONED = 0x200  # a cached exception, not a route


def _prefix_text(key: bytes) -> str:
    return str(ipaddress.IPv4Network((int.from_bytes(key[:4], "big"), key[4])))


def _prefix_key(dst: str) -> bytes:
    net = ipaddress.IPv4Network(dst)
    return net.network_address.packed + bytes([net.prefixlen])


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process, 0 if it is gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tag() -> str:
    """Namespace/link names start with `wt-bn-` and a random suffix (other engineers share
    this machine and its namespaces)."""
    return f"wt-bn-{os.urandom(3).hex()}"


@contextmanager
def namespace(setup: Sequence[str] = ()) -> Iterator[str]:
    """A fresh network namespace, `setup` applied with one `ip -batch`; deleted afterwards."""
    name = tag()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        if setup:
            subprocess.run(["ip", "-n", name, "-batch", "-"], input="\n".join(setup) + "\n",
                           text=True, check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def summary(samples: Sequence[float], *, scale: float = 1000.0) -> dict[str, Any]:
    """Median, min, max and the samples, in milliseconds by default."""
    vals = [round(s * scale, 3) for s in samples]
    return {"median": round(statistics.median(vals), 3), "min": min(vals), "max": max(vals),
            "samples": vals}


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) — with 200 samples p99 is the 2nd largest."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def fmt(s: dict[str, Any]) -> str:
    return f"{s['median']:8.1f} ({s['min']:.0f}-{s['max']:.0f})"


def machine() -> dict[str, Any]:
    """Enough to tell later readers what these numbers were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    ip_version = subprocess.run(["ip", "-V"], capture_output=True, text=True,
                                check=False).stdout.strip()
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "kernel": platform.release(), "python": platform.python_version(),
            "cpu": cpu, "cpus": os.cpu_count(), "mem_mb": mem_kb // 1024,
            "loadavg": os.getloadavg(), "iproute2": ip_version,
            "note": "shared machine: other engineers' jobs ran at the same time"}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    return path
