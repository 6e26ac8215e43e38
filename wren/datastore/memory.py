"""An in-process backend with real optimistic concurrency, for unit tests of logic only.

Integration tests use the real servers (etcd, kube-apiserver); this fake exists so that IPAM,
client and calc tests run in milliseconds, and so that faults a real server cannot be made to
produce on demand (fail the Nth write) can be injected.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from typing import Literal

from wren.datastore.backend import Body, Listing, WatchEvent, body_key
from wren.errors import AlreadyExists, Compacted, Conflict, NotFound
from wren.kinds import Kind

__all__ = ["MemoryBackend"]


class MemoryBackend:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._objects: dict[tuple[str, str, str], Body] = {}
        self._log: list[WatchEvent] = []
        self._revision = 0
        self._compacted = 0
        self.secrets: dict[tuple[str, str], str] = {}
        # Called before every write with (operation, body); raise to inject a fault.
        self.fault: Callable[[str, Body], None] | None = None

    # -- reads ------------------------------------------------------------------------------
    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Body:
        with self._lock:
            try:
                return copy.deepcopy(self._objects[(kind.name, namespace or "", name)])
            except KeyError:
                raise NotFound(kind.name, name, namespace) from None

    def list(self, kind: Kind, namespace: str | None = None) -> Listing:
        with self._lock:
            items = [
                copy.deepcopy(b)
                for (k, ns, _), b in sorted(self._objects.items())
                if k == kind.name and (namespace is None or ns == namespace)
            ]
            return Listing(items=items, revision=str(self._revision))

    # -- writes -----------------------------------------------------------------------------
    def create(self, body: Body) -> Body:
        self._maybe_fail("create", body)
        key = body_key(body)
        with self._lock:
            if key in self._objects:
                raise AlreadyExists(key[0], key[2], key[1] or None)
            return self._store("ADDED", key, body)

    def update(self, body: Body) -> Body:
        self._maybe_fail("update", body)
        key = body_key(body)
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                raise NotFound(key[0], key[2], key[1] or None)
            wanted = str(body.get("metadata", {}).get("resourceVersion") or "")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise Conflict(key[0], key[2])
            return self._store("MODIFIED", key, body)

    def delete(
        self, kind: Kind, name: str, namespace: str | None = None, *, resource_version: str = ""
    ) -> Body:
        key = (kind.name, namespace or "", name)
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                raise NotFound(kind.name, name, namespace)
            self._maybe_fail("delete", current)
            if resource_version and resource_version != current["metadata"]["resourceVersion"]:
                raise Conflict(kind.name, name)
            del self._objects[key]
            self._revision += 1
            self._log.append(WatchEvent("DELETED", current, str(self._revision), kind.name))
            self._lock.notify_all()
            return copy.deepcopy(current)

    def _store(
        self, etype: Literal["ADDED", "MODIFIED"], key: tuple[str, str, str], body: Body
    ) -> Body:
        self._revision += 1
        stored = copy.deepcopy(body)
        stored.setdefault("metadata", {})["resourceVersion"] = str(self._revision)
        self._objects[key] = stored
        self._log.append(WatchEvent(etype, copy.deepcopy(stored), str(self._revision), key[0]))
        self._lock.notify_all()
        return copy.deepcopy(stored)

    def _maybe_fail(self, op: str, body: Body) -> None:
        if self.fault is not None:
            self.fault(op, body)

    # -- watch ------------------------------------------------------------------------------
    def watch(
        self, kind: Kind, *, revision: str, stop: threading.Event | None = None
    ) -> Iterator[WatchEvent]:
        seen = int(revision or 0)
        while stop is None or not stop.is_set():
            with self._lock:
                if seen < self._compacted:
                    raise Compacted(f"revision {seen} compacted (oldest kept {self._compacted})")
                pending = [e for e in self._log if int(e.revision) > seen and e.kind == kind.name]
                if not pending:
                    self._lock.wait(timeout=0.05)
                    continue
            for event in pending:
                seen = int(event.revision)
                yield event

    def compact(self) -> None:
        """Forget history up to now, as `etcdctl compact` does."""
        with self._lock:
            self._compacted = self._revision
            self._log.clear()

    def read_secret(self, name: str, key: str) -> str | None:
        return self.secrets.get((name, key))

    def close(self) -> None:
        return None


