"""ExaBGP API commands, and a sender that paces them on ExaBGP's acknowledgements.

Measured here (notes/exabgp5.md): 10,000 one-route commands written at once took 8.6 s to reach
BIRD, because ExaBGP rescans its whole command queue every loop; at most ~100 unacknowledged
commands took 2.85 s. Grouping prefixes that share attributes into one `announce attributes ...
nlri P1 P2 ...` cuts the command count by up to `GROUP`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping

from bgp.intent import IPAddress, IPNetwork
from bgp.rib import OutRoute
from wren.log import get_logger

__all__ = ["GROUP", "WINDOW", "Pacer", "announce_commands", "diff_commands", "withdraw_commands"]

_log = get_logger("wren-bgp")

GROUP = 100  # prefixes per command
WINDOW = 100  # unacknowledged commands in flight


def _attributes(route: OutRoute) -> str:
    parts = [f"next-hop {route.next_hop}", "origin igp"]
    if route.local_pref is not None:
        parts.append(f"local-preference {route.local_pref}")
    standard = [c for c in route.communities if c.count(":") == 1]
    large = [c for c in route.communities if c.count(":") == 2]
    if standard:
        parts.append(f"community [ {' '.join(standard)} ]")
    if large:
        parts.append(f"large-community [ {' '.join(large)} ]")
    if route.as_path:
        parts.append(f"as-path [ {' '.join(str(a) for a in route.as_path)} ]")
    if route.originator_id:
        parts.append(f"originator-id {route.originator_id}")
    if route.cluster_list:
        parts.append(f"cluster-list [ {' '.join(route.cluster_list)} ]")
    return " ".join(parts)


def announce_commands(peer: IPAddress, routes: Iterable[OutRoute]) -> list[str]:
    groups: dict[tuple[object, ...], list[OutRoute]] = {}
    for route in routes:
        groups.setdefault(route.attribute_key(), []).append(route)
    out: list[str] = []
    for members in groups.values():
        attrs = _attributes(members[0])
        for i in range(0, len(members), GROUP):
            nlri = " ".join(str(r.prefix) for r in members[i:i + GROUP])
            out.append(f"neighbor {peer} announce attributes {attrs} nlri {nlri}")
    return out


def withdraw_commands(peer: IPAddress, prefixes: Iterable[IPNetwork]) -> list[str]:
    return [f"neighbor {peer} withdraw route {p}" for p in prefixes]


def diff_commands(peer: IPAddress, sent: Mapping[IPNetwork, OutRoute],
                  wanted: Mapping[IPNetwork, OutRoute]) -> list[str]:
    """Withdraw what went, then announce what is new or changed."""
    gone = [p for p in sent if p not in wanted]
    changed = [r for p, r in wanted.items() if sent.get(p) != r]
    return withdraw_commands(peer, gone) + announce_commands(peer, changed)


class Pacer:
    """Keeps at most `window` commands unacknowledged; acks come back in order."""

    def __init__(self, write: Callable[[list[str]], None], *, window: int = WINDOW) -> None:
        self._write = write
        self._window = window
        self._queue: deque[str] = deque()
        self._in_flight: deque[str] = deque()
        self.errors = 0

    def send(self, commands: Iterable[str]) -> None:
        self._queue.extend(commands)
        self.pump()

    def on_ack(self, ok: bool) -> None:
        command = self._in_flight.popleft() if self._in_flight else "?"
        if not ok:
            self.errors += 1
            _log.warning("exabgp refused a command", command=command[:300])
        self.pump()

    def pump(self) -> None:
        batch: list[str] = []
        while self._queue and len(self._in_flight) < self._window:
            command = self._queue.popleft()
            self._in_flight.append(command)
            batch.append(command)
        if batch:
            self._write(batch)

    def reset(self) -> None:
        """ExaBGP's API process changed: nothing in flight will be acknowledged."""
        self._queue.clear()
        self._in_flight.clear()

    @property
    def idle(self) -> bool:
        return not self._queue and not self._in_flight

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._in_flight)
