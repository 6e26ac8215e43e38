"""Garbage-collector settings for the long-running daemons (wren-agent, wren-bgp).

Both hold tens of thousands of long-lived objects (routes, paths, prefixes) and allocate
thousands more in a burst (10,000 prefixes learned at once). With CPython's default thresholds
(700, 10, 10) such a burst ran dozens of collections, some of them over everything the
daemon holds: a third of the sidecar's time and a fifth of the agent's when learning 10,000
prefixes (measured by running the same work with the collector off). Our data has almost no
reference cycles, so collecting rarely costs little memory.

Even so, each young generation of 20,000 objects scanned cost ~5 ms of such a learn, and what
a burst leaves (routes, paths, prefixes) lives as long as the routes do. So once a burst is
handled, `freeze_burst` moves it out of the collector's sight (O(1)). What that costs is that
a reference cycle among those objects is never collected; the routes, paths, prefixes and
messages a burst leaves have none.
"""

from __future__ import annotations

import gc

__all__ = ["FREEZE_AT", "THRESHOLDS", "freeze_burst", "tune_for_bursts"]

THRESHOLDS = (20_000, 50, 100)
# Objects allocated (and alive) since the last collection or freeze above which a handled
# burst is frozen.
FREEZE_AT = 5_000


def tune_for_bursts() -> None:
    gc.set_threshold(*THRESHOLDS)


def freeze_burst() -> bool:
    """Freeze the young objects if a burst left many; True if it did."""
    if gc.get_count()[0] < FREEZE_AT:
        return False
    gc.freeze()
    return True
