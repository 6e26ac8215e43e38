"""ExaBGP as wren-bgp starts it: ExaBGP's own entry point, with four changes.

1. **Queued work runs without sleeping in between.** ExaBGP runs an API command as a queue of
   steps, 50 steps per turn of its loop, and between turns sleeps in `poll` for
   `reactor.speed / 100` seconds unless a peer has a message ready. An `announce` of 100
   prefixes is ~100 steps, so announcing 10,000 prefixes spent most of its 3.5 s asleep with
   work queued. Here the loop polls without a timeout while steps are queued, as it already
   does when commands have just arrived: 10,000 prefixes go out in ~1.4 s.
2. **A 50 ms idle sleep** (`reactor.speed` 5 instead of 1) now that announcing no longer
   waits on it: an idle ExaBGP with one session used 2.5% of a core, 0.5% with it. Timers
   (keepalives, hold times, connection retries) are checked each turn, so 50 ms is their
   granularity; input from peers and from us wakes the loop at once either way.
   `exabgp_reactor_speed` (or `exabgp.reactor.speed`) in the environment still wins.
3. **Debug calls are no-ops below DEBUG.** ExaBGP calls `log.debug(...)` about three times for
   every prefix it receives, each two more calls deep before the level check drops it:
   24 → 8.5 ms per 10,000 prefixes learned. ExaBGP's own `log.silence()` replaces its levels
   the same way. With `exabgp_log_level=DEBUG` nothing is replaced.

4. **Received updates become API text with fewer calls per prefix.** ExaBGP's encoder asks
   each prefix for its family object, its next hop's text and its own JSON (about ten Python
   calls), a third of ExaBGP's time learning 10,000 prefixes. `fast_update_text` writes the
   same text (the tests compare the two, byte for byte) for plain IPv4/IPv6 prefixes, taking
   the next hop's text once per update; any other kind of route (add-path, labels, flowspec,
   End-of-RIB) goes through ExaBGP's own encoder.
5. **IPv4 unicast prefixes are read with fewer calls.** ExaBGP reads every prefix of an
   UPDATE through its generic NLRI reader (family objects, label and route-distinguisher
   checks, a debug call): ~39 ms per 10,000 prefixes. `fast_ipv4_prefixes` reads a plain
   IPv4 unicast prefix (no add-path) into the same `INET` and `CIDR` objects through their
   own constructors: ~15-20 ms. Anything else, and any prefix the fast reader would have to
   refuse, goes to ExaBGP's own reader, which raises its usual NOTIFICATION. Like 3., not
   with `exabgp_log_level=DEBUG` (ExaBGP's reader logs every prefix then).

The loop change relies on ExaBGP internals (`Reactor._wait_for_io`, `ASYNC.ready`) of the
pinned release; if they are missing, ExaBGP runs unchanged (and keeps its 10 ms sleep) and
says so on stderr. `WREN_EXABGP` (an ExaBGP executable) bypasses this module entirely.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, cast

__all__ = ["IDLE_SPEED", "debug_wanted", "fast_ipv4_prefixes", "fast_update_text", "main",
           "poll_timeout", "quiet_debug", "run_queued_work_at_once"]

IDLE_SPEED = "5.0"  # reactor.speed: the idle sleep is speed / 100 seconds
_SPEED_KEYS = ("exabgp_reactor_speed", "exabgp.reactor.speed")


def debug_wanted(env: Mapping[str, str]) -> bool:
    """ExaBGP reads its settings from the environment in either spelling."""
    level = env.get("exabgp_log_level") or env.get("exabgp.log.level") or ""
    return level.strip().upper() == "DEBUG"


def _drop(cls: object, message: object, source: str = "", level: str = "") -> None:
    return None


def quiet_debug() -> None:
    from exabgp.logger import log

    log.debug = classmethod(_drop)


def poll_timeout(reactor: Any, sleeptime: int) -> int:
    """How long the loop may wait for input: not at all while queued steps remain."""
    return sleeptime if reactor.asynchronous.ready() else 0


def run_queued_work_at_once(reactor_class: Any = None) -> bool:
    """Make the loop's wait honour `poll_timeout`; False (nothing changed) if this ExaBGP
    lacks what the change relies on."""
    from exabgp.reactor.asynchronous import ASYNC
    from exabgp.reactor.loop import Reactor

    if reactor_class is None:
        reactor_class = Reactor

    wait = getattr(reactor_class, "_wait_for_io", None)
    if wait is None or not callable(getattr(ASYNC, "ready", None)):
        return False

    def _wait_for_io(self: Any, sleeptime: int) -> Iterator[int]:
        result: Iterator[int] = wait(self, poll_timeout(self, sleeptime))
        return result

    reactor_class._wait_for_io = _wait_for_io
    return True


def fast_update_text(json_class: Any = None) -> bool:
    """Replace the API encoder's `_update` (see 4. above); False if this ExaBGP lacks it."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.nlri.cidr import CIDR
    from exabgp.bgp.message.update.nlri.inet import INET
    from exabgp.bgp.message.update.nlri.qualifier.path import PathInfo
    from exabgp.reactor.api.response.json import JSON

    cls = JSON if json_class is None else json_class
    original = getattr(cls, "_update", None)
    if original is None:
        return False
    announce, withdraw, no_path = Action.ANNOUNCE, Action.WITHDRAW, PathInfo.NOPATH

    def _update(self: Any, update: Any) -> Any:
        compact = self.compact
        announced: dict[tuple[Any, Any], dict[str, list[str]]] = {}
        withdrawn: dict[tuple[Any, Any], list[str]] = {}
        hop_names: dict[int, str] = {}  # by id: every prefix of an update shares its next hop
        for nlri in update.nlris:
            if type(nlri) is not INET or nlri.path_info is not no_path \
                    or type(cidr := nlri.cidr) is not CIDR:
                return original(self, update)
            prefix = f'"{cidr.top()}/{cidr.mask}"'
            text = prefix if compact else f'{{ "nlri": {prefix} }}'
            action = nlri.action
            if action == announce:
                hop = nlri.nexthop
                name = hop_names.get(id(hop))
                if name is None:
                    try:
                        name = str(hop)
                    except Exception:  # what ExaBGP's encoder does with a next hop it can't print
                        name = "null"
                    hop_names[id(hop)] = name
                by_hop = announced.setdefault((nlri.afi, nlri.safi), {})
                texts = by_hop.get(name)
                if texts is None:
                    texts = by_hop[name] = []
                texts.append(text)
            elif action == withdraw:
                withdrawn.setdefault((nlri.afi, nlri.safi), []).append(text)
        if not announced and not withdrawn:
            return original(self, update)  # nothing, or only routes of neither action
        parts = []
        if announced:
            families = ", ".join(
                f'"{afi} {safi}": {{ ' + ", ".join(f'"{name}": [ ' + ", ".join(texts) + " ]"
                                                  for name, texts in by_hop.items()) + " }"
                for (afi, safi), by_hop in announced.items())
            parts.append(f'"announce": {{ {families} }}')
        if withdrawn:
            families = ", ".join(f'"{afi} {safi}": [ ' + ", ".join(texts) + " ]"
                                 for (afi, safi), texts in withdrawn.items())
            parts.append(f'"withdraw": {{ {families} }}')
        attributes = f'"attribute": {{ {update.attributes.json()} }}' if update.attributes else ""
        body = ", ".join(part for part in (attributes, ", ".join(parts)) if part)
        return {"message": self._json(f'{{ "update": {{ {body} }} }}')}

    cls._update = _update
    return True


def fast_ipv4_prefixes(nlri_class: Any = None) -> bool:
    """Replace `NLRI.unpack_nlri` (see 5. above); False if this ExaBGP lacks what it needs."""
    from exabgp.bgp.message.update.nlri.cidr import CIDR
    from exabgp.bgp.message.update.nlri.inet import INET
    from exabgp.bgp.message.update.nlri.nlri import NLRI
    from exabgp.protocol.family import AFI, SAFI

    cls = NLRI if nlri_class is None else nlri_class
    original = cls.__dict__.get("unpack_nlri")
    registered = getattr(cls, "registered_nlri", {})
    if not isinstance(original, classmethod) or registered.get("ipv4/unicast") is not INET:
        return False
    read, inet = original.__func__, cast(Any, INET)
    ipv4, unicast = AFI.ipv4, SAFI.unicast
    sizes = [CIDR.size(mask) for mask in range(33)]  # bytes of a prefix of this length
    padding = [bytes(4 - size) for size in sizes]

    def unpack_nlri(klass: Any, afi: Any, safi: Any, data: bytes, action: Any,  # noqa: PLR0917
                    addpath: Any) -> tuple[Any, bytes]:
        if addpath or afi != ipv4 or safi != unicast or not data or data[0] > 32 \
                or len(data) <= sizes[data[0]]:
            found: tuple[Any, bytes] = read(klass, afi, safi, data, action, addpath)
            return found  # ExaBGP's own reading, or its refusal
        mask = data[0]
        end = 1 + sizes[mask]
        nlri = inet(ipv4, unicast, action)
        nlri.cidr = CIDR(data[1:end] + padding[mask], mask)
        return nlri, data[end:]

    cls.unpack_nlri = classmethod(unpack_nlri)
    return True


def prepare(env: MutableMapping[str, str],
            loop_change: Callable[[], bool] = run_queued_work_at_once) -> list[str]:
    """Apply the changes above before ExaBGP reads its settings; what to tell stderr."""
    notes: list[str] = []
    if loop_change():
        if not any(key in env for key in _SPEED_KEYS):
            env["exabgp_reactor_speed"] = IDLE_SPEED
    else:
        notes.append("wren-bgp: this ExaBGP lacks Reactor._wait_for_io or ASYNC.ready; "
                     "its loop runs unchanged (10 ms sleeps between queued steps)")
    if not debug_wanted(env):
        quiet_debug()
        if not fast_ipv4_prefixes():
            notes.append("wren-bgp: this ExaBGP's NLRI reader differs; prefixes are read as "
                         "ExaBGP ships")
    if not fast_update_text():
        notes.append("wren-bgp: this ExaBGP's JSON encoder lacks _update; updates are encoded "
                     "as ExaBGP ships")
    return notes


def main() -> int:
    for note in prepare(os.environ):
        print(note, file=sys.stderr)
    from exabgp.application.main import main as exabgp_main

    code = exabgp_main()
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
