"""What every datastore offers: stored resource bodies, optimistic concurrency, list + watch.

Backends deal in raw bodies (the `projectcalico.org/v3` JSON form, `metadata.resourceVersion`
filled in by the store) and know nothing of validation; `wren.client` turns them into typed,
validated resources. That keeps the two real backends (etcd v3, Kubernetes) small and lets the
same behavioural test suite run against both.

Revisions are opaque strings. A `list` returns the revision it was taken at; `watch` from that
revision yields every change after it, raises `Compacted` when the store no longer has it (relist)
and `DatastoreUnavailable` when the connection is lost (back off, resume from the last revision).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from wren.kinds import Kind

__all__ = ["Backend", "Body", "Listing", "WatchEvent", "body_key"]

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Listing:
    items: list[Body]
    revision: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    body: Body  # for DELETED: the last stored body
    revision: str  # resume a watch from here
    kind: str = field(default="")


def body_key(body: Body) -> tuple[str, str, str]:
    """(kind, namespace, name) of a body; namespace is "" for cluster-scoped kinds."""
    meta = body.get("metadata") or {}
    return str(body.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", ""))


class Backend(Protocol):
    """One datastore connection. Methods raise the `wren.errors` datastore errors."""

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Body: ...

    def list(self, kind: Kind, namespace: str | None = None) -> Listing: ...

    def create(self, body: Body) -> Body:
        """Store a new resource; AlreadyExists if the name is taken. Returns the stored body."""
        ...

    def update(self, body: Body) -> Body:
        """Replace a resource. `metadata.resourceVersion` must be the stored one, else Conflict;
        without one the update is unconditional (what `wrenctl replace` of a fresh file does)."""
        ...

    def delete(
        self, kind: Kind, name: str, namespace: str | None = None, *, resource_version: str = ""
    ) -> Body:
        """Delete; with resource_version, only if it is still the stored one (else Conflict)."""
        ...

    def watch(
        self, kind: Kind, *, revision: str, stop: threading.Event | None = None
    ) -> Iterator[WatchEvent]:
        """Changes after `revision`, blocking; returns when `stop` is set."""
        ...

    def read_secret(self, name: str, key: str) -> str | None:
        """A secret value (BGP passwords' secretKeyRef). None if absent."""
        ...

    def close(self) -> None: ...
