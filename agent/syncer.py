"""Starts one datastore watcher per kind the agent reads and tracks their sync and health.

The watchers only enqueue; the agent's loop reads the queue. "In sync" means every kind has
delivered its first complete list: until then the agent programs nothing, so a half-read
datastore never removes a route that is still wanted.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from typing import cast

from wren.datastore.backend import Backend
from wren.datastore.watcher import InSync, Status, Watcher, WatcherMessage
from wren.kinds import kind_by_name

__all__ = ["Syncer"]


class Syncer:
    def __init__(
        self,
        backend: Backend,
        kinds: Iterable[str],
        out: queue.Queue[object],
        *,
        stop: threading.Event,
    ) -> None:
        self.kinds = tuple(kinds)
        # The watchers write straight into the agent's one event queue (it also carries BGP
        # messages, hence the wider type).
        inner = cast("queue.Queue[WatcherMessage]", out)
        self._watchers = [Watcher(backend, kind_by_name(k), inner, stop=stop) for k in self.kinds]
        self.in_sync: set[str] = set()
        self.down: dict[str, str] = {}

    def start(self) -> None:
        for w in self._watchers:
            w.start()

    def note(self, msg: WatcherMessage) -> None:
        """Called by the agent loop for InSync/Status messages it reads."""
        if isinstance(msg, InSync):
            self.in_sync.add(msg.kind)
        elif isinstance(msg, Status):
            if msg.connected:
                self.down.pop(msg.kind, None)
            else:
                self.down[msg.kind] = msg.error

    @property
    def all_in_sync(self) -> bool:
        return self.in_sync.issuperset(self.kinds)

    def join(self, timeout: float = 2.0) -> None:
        for w in self._watchers:
            w.join(timeout)
