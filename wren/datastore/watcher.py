"""One thread per kind that turns a backend's list + watch into a stream the agent's syncer eats.

    list ──► Update …  ──► InSync ──► watch from the list revision ──► Update …
      ▲                                   │ Compacted (410 Gone)      │ DatastoreUnavailable
      └──── relist, emit only the ◄───────┘                           ▼
            differences (deletions too)              Status(down) ─ back off ─ probe ─ Status(up)
                                                                    └─ resume from last revision

Messages put on the output queue (frozen dataclasses):

* `Update(kind, key, body)`: `key` is `(namespace, name)` ("" namespace for cluster-scoped
  kinds); `body` is the stored raw v3 body, or None when the resource is gone.
* `InSync(kind)`: once, after the first complete list: everything that exists has been sent.
* `Status(kind, connected, error)`: on every up/down transition (the first one too), with the
  error text when down.

The watcher remembers what it last emitted for each key, so a relist after compaction or after an
outage emits only what changed, including deletions of resources that vanished meanwhile, and a
DELETED event for a key it never emitted (a Kubernetes pod that never was an endpoint) is dropped.
It remembers a 128-bit digest of each body, not the body: the agent keeps the parsed resource,
and a second copy of every raw body (10,000 endpoints: ~17 MB of small dicts and strings) was
the biggest single part of its memory.
A change of nothing but `metadata.resourceVersion` (pod status, node heartbeats on Kubernetes) is
not sent: a body from the stream may carry an older resourceVersion than the store, so read the
resource with `get` before a conditional write.

After an outage it backs off (exponential, full jitter, capped), then probes the datastore with a
`get` of a name that cannot exist (NotFound means the datastore answers), reports up and resumes
the watch from the last revision it saw; if that revision has been compacted meanwhile, it relists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from wren.datastore.backend import Backend, Body, WatchEvent
from wren.errors import Compacted, DatastoreUnavailable, NotFound
from wren.kinds import Kind
from wren.log import get_logger

__all__ = ["InSync", "Status", "Update", "Watcher", "WatcherMessage", "backoff_delay"]

_log = get_logger(__name__)
# Shaped like a WorkloadEndpoint name so that on Kubernetes even the pod-derived kind makes a
# real request (a pod "wren-probe" in "default"); for every other kind just a name nobody uses.
_PROBE_NAME = "wren--probe-k8s-wren--probe-eth0"


@dataclass(frozen=True, slots=True)
class Update:
    """A resource as now stored (`body`), or gone (`body` None)."""

    kind: str
    key: tuple[str, str]  # (namespace, name)
    body: Body | None


@dataclass(frozen=True, slots=True)
class InSync:
    """Every resource of `kind` that existed at the first list has been sent."""

    kind: str


@dataclass(frozen=True, slots=True)
class Status:
    """The datastore connection for `kind` went up (connected) or down (with the error)."""

    kind: str
    connected: bool
    error: str = ""


WatcherMessage = Update | InSync | Status


def backoff_delay(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rand() * min(cap, base * 2.0 ** min(attempt, 30))


def _fingerprint(body: Body) -> bytes:
    """A digest of the body without its resourceVersion: equal digests mean a Pod's status or a
    Node's heartbeat changed, nothing else. Canonical JSON (sorted keys), so key order does
    not matter; `default=str` for what a client library may leave unconverted."""
    text = json.dumps(_without_version(body), sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _without_version(body: Body) -> Body:
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "resourceVersion"}
    return {**body, "metadata": meta}


def _key(body: Body) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name", ""))


class Watcher(threading.Thread):
    """List + watch one kind forever (until `stop`), feeding `out`. See the module docstring."""

    def __init__(
        self,
        backend: Backend,
        kind: Kind,
        out: queue.Queue[WatcherMessage],
        *,
        stop: threading.Event,
        sleep: Callable[[float], bool] | None = None,
        rand: Callable[[], float] = random.random,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        super().__init__(name=f"watch-{kind.plural}", daemon=True)
        self.backend = backend
        self.kind = kind
        self.out = out
        self.stop_event = stop
        # sleep(seconds) -> True when asked to stop meanwhile; tests inject one that does not wait.
        self._sleep = sleep or stop.wait
        self._rand = rand
        self._base = backoff_base
        self._cap = backoff_cap
        self._state: dict[tuple[str, str], bytes] = {}  # key → fingerprint of what was sent
        self._revision: str | None = None  # None: must (re)list
        self._connected: bool | None = None
        self._in_sync = False
        self._failures = 0

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self._failures:
                    if self._sleep(self._delay()):
                        return
                    self._probe()
                    self._set_connected(True)
                if self._revision is None:
                    self._relist()
                self._failures = 0
                for event in self.backend.watch(
                    self.kind, revision=self._revision or "", stop=self.stop_event
                ):
                    self._apply(event)
            except Compacted as exc:
                _log.info("watch compacted, relisting", kind=self.kind.name, error=str(exc))
                self._revision = None
            except DatastoreUnavailable as exc:
                self._down(str(exc))
            except Exception as exc:  # keep the thread alive; the syncer sees it as down
                _log.exception("watcher failed unexpectedly", kind=self.kind.name)
                self._revision = None
                self._down(f"{type(exc).__name__}: {exc}")

    def _delay(self) -> float:
        return backoff_delay(self._failures - 1, base=self._base, cap=self._cap, rand=self._rand)

    def _down(self, error: str) -> None:
        self._failures += 1
        _log.warning("datastore unavailable", kind=self.kind.name, error=error,
                     attempt=self._failures)
        self._set_connected(False, error)

    def _probe(self) -> None:
        """One cheap request that proves the datastore answers (raises DatastoreUnavailable)."""
        namespace = "default" if self.kind.namespaced else None
        with contextlib.suppress(NotFound):
            self.backend.get(self.kind, _PROBE_NAME, namespace)

    def _set_connected(self, connected: bool, error: str = "") -> None:
        if self._connected is connected:
            return
        self._connected = connected
        if connected:
            _log.info("datastore connected", kind=self.kind.name)
        self.out.put(Status(self.kind.name, connected, error))

    # -- state ------------------------------------------------------------------------------
    def _relist(self) -> None:
        listing = self.backend.list(self.kind)
        self._set_connected(True)
        fresh: dict[tuple[str, str], bytes] = {}
        changed: list[tuple[tuple[str, str], Body]] = []
        for key, body in {_key(b): b for b in listing.items}.items():
            fresh[key] = digest = _fingerprint(body)
            if self._state.get(key) != digest:
                changed.append((key, body))
        for key in sorted(self._state.keys() - fresh.keys()):
            self.out.put(Update(self.kind.name, key, None))
        for key, body in changed:
            self.out.put(Update(self.kind.name, key, body))
        self._state = fresh
        self._revision = listing.revision
        if not self._in_sync:
            self._in_sync = True
            self.out.put(InSync(self.kind.name))

    def _apply(self, event: WatchEvent) -> None:
        key = _key(event.body)
        if event.type == "DELETED":
            if self._state.pop(key, None) is not None:
                self.out.put(Update(self.kind.name, key, None))
        else:
            digest = _fingerprint(event.body)
            if self._state.get(key) != digest:
                self.out.put(Update(self.kind.name, key, event.body))
            self._state[key] = digest
        self._revision = event.revision
