"""ExaBGP as wren-bgp starts it: ExaBGP's own entry point, with three changes.

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

The loop change relies on ExaBGP internals (`Reactor._wait_for_io`, `ASYNC.ready`) of the
pinned release; if they are missing, ExaBGP runs unchanged (and keeps its 10 ms sleep) and
says so on stderr. `WREN_EXABGP` (an ExaBGP executable) bypasses this module entirely.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["IDLE_SPEED", "debug_wanted", "main", "poll_timeout", "quiet_debug",
           "run_queued_work_at_once"]

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
    return notes


def main() -> int:
    for note in prepare(os.environ):
        print(note, file=sys.stderr)
    from exabgp.application.main import main as exabgp_main

    code = exabgp_main()
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
