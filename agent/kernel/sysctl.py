"""Kernel settings under /proc/sys the agent needs, written only when they differ.

Per-interface settings (proxy_arp on a pod's cali device, rp_filter on vxlan.calico...) name a
device that may not exist yet; such a setting waits, without an error, until its directory
appears. Keys are paths below /proc/sys with `/` separators, because device names contain dots
(`net/ipv4/conf/vxlan.calico/rp_filter`); a key without `/` is read the sysctl(8) way
(`net.ipv4.ip_forward`).

A resync re-reads every setting, three per pod: ~0.5 s at 10,000 pods, and the agent's loop
handled no event meanwhile. So a resync is worked off in slices (`RECHECK_PER_APPLY` settings
per apply, ~30 ms) and `apply` says when some are left; the agent comes back to them right after
the events that arrived in between. Changed settings are never sliced: they are written at once.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.kernel.netns import in_netns
from wren.log import get_logger

__all__ = [
    "RECHECK_PER_APPLY", "SysctlApplyResult", "SysctlTable", "SysctlTableCounters",
    "iface_sysctl",
]

log = get_logger(__name__)

RECHECK_PER_APPLY = 2000


def iface_sysctl(family: int, iface: str, name: str) -> str:
    """`iface_sysctl(4, "cali1", "proxy_arp")` → `net/ipv4/conf/cali1/proxy_arp`."""
    return f"net/ipv{family}/conf/{iface}/{name}"


def _normalise_key(key: str) -> str:
    return key.strip("/") if "/" in key else key.replace(".", "/")


@dataclass
class SysctlTableCounters:
    writes: int = 0
    drift_repaired: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class SysctlApplyResult:
    written: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()  # their device does not exist yet
    errors: tuple[str, ...] = ()
    rechecks_left: int = 0  # settings of a resync not re-read yet: apply again soon

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _State:
    desired: dict[str, str] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    written_once: set[str] = field(default_factory=set)
    recheck: deque[str] = field(default_factory=deque)  # a resync's settings still to re-read


class SysctlTable:
    """`netns` opens /proc/sys inside a named network namespace (net.* settings are per
    namespace); `root` is a different tree for tests."""

    def __init__(self, *, root: Path = Path("/proc/sys"), netns: str | None = None,
                 recheck_per_apply: int = RECHECK_PER_APPLY) -> None:
        self._root = root
        self._netns = netns
        self._recheck_per_apply = recheck_per_apply
        self._s = _State()
        self.counters = SysctlTableCounters()

    def set(self, key: str, value: str | int) -> None:
        key = _normalise_key(key)
        text = str(value)
        if self._s.desired.get(key) != text:
            self._s.desired[key] = text
            self._s.dirty.add(key)
            self._s.written_once.discard(key)  # a new value is a change, not drift

    def delete(self, key: str) -> None:
        """Stop managing a setting (its value stays; the kernel has no "unset")."""
        key = _normalise_key(key)
        self._s.desired.pop(key, None)
        self._s.dirty.discard(key)

    def replace_all(self, settings: Mapping[str, str | int] | Iterable[tuple[str, str | int]]
                    ) -> None:
        items = settings.items() if isinstance(settings, Mapping) else settings
        new = {_normalise_key(k): str(v) for k, v in items}
        for key in [k for k in self._s.desired if k not in new]:
            self.delete(key)
        for key, value in new.items():
            self.set(key, value)

    def queue_resync(self) -> None:
        """Re-read every setting (someone may have changed one), a slice per apply."""
        self._s.recheck = deque(self._s.desired)

    def apply(self) -> SysctlApplyResult:
        written: list[str] = []
        waiting: list[str] = []
        errors: list[str] = []
        root = str(self._root)
        s = self._s
        with in_netns(self._netns):
            keys = sorted(s.dirty)
            budget = self._recheck_per_apply  # re-reads of a resync this apply
            while s.recheck and budget:
                key = s.recheck.popleft()
                if key in s.desired and key not in s.dirty:
                    keys.append(key)
                    budget -= 1
            for key in keys:
                value = s.desired[key]
                path = f"{root}/{key}"
                try:
                    if _read(path) != value:
                        _write(path, value)
                        written.append(key)
                        if key in s.written_once:
                            self.counters.drift_repaired += 1
                    s.written_once.add(key)
                    s.dirty.discard(key)
                except OSError as exc:
                    s.dirty.add(key)  # tried again on every apply until it lands
                    if exc.errno == errno.ENOENT:
                        waiting.append(key)
                    else:
                        errors.append(f"sysctl {key}={value}: {exc.strerror or exc}")
        if written:
            # One line, not one per setting: a node starting with 10,000 pods sets 30,000.
            log.info("sysctls set", count=len(written),
                     settings={k: self._s.desired[k] for k in written[:5]})
        for err in errors:
            log.warning("sysctl write failed; retrying next apply", error=err)
        self.counters.writes += len(written)
        self.counters.errors += len(errors)
        return SysctlApplyResult(written=tuple(written), waiting=tuple(waiting),
                                 errors=tuple(errors), rechecks_left=len(s.recheck))


# Plain os calls: a resync reads every setting (three per pod), and pathlib's read_text (an
# io.TextIOWrapper per file) cost ~65 µs a setting against ~15 µs for these.
def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096).decode().strip()
    finally:
        os.close(fd)


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)
