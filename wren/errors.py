"""Every error Wren raises on purpose, and whether to retry it.

    WrenError
    ├── TemporaryError          retry with backoff; the state of the world may change
    │   └── DatastoreUnavailable    cannot reach etcd / the API server (or it timed out)
    └── PermanentError          retrying the same thing gives the same answer: report, skip
        ├── ValidationError         a resource breaks a rule (kind, name, field, rule)
        ├── NotFound                no such resource
        ├── AlreadyExists           create of a name that exists
        ├── Conflict                stale resourceVersion: re-read, recompute, try again
        ├── Compacted               a watch asked for a revision the store no longer has: relist
        └── KernelUnsupported       the kernel lacks a feature (e.g. no IPIP module)

`Conflict` is permanent for the one request (the same bytes will always fail) but a caller that
re-reads and recomputes (IPAM, wrenctl apply) may loop on it; it does so explicitly.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Compacted",
    "Conflict",
    "DatastoreUnavailable",
    "KernelUnsupported",
    "NotFound",
    "PermanentError",
    "TemporaryError",
    "ValidationError",
    "WrenError",
]


class WrenError(Exception):
    """Base of all deliberate Wren errors."""


class TemporaryError(WrenError):
    """Retry with backoff."""


class PermanentError(WrenError):
    """Report and skip; retrying unchanged gives the same answer."""


class DatastoreUnavailable(TemporaryError):
    """The datastore cannot be reached or did not answer in time."""


class ValidationError(PermanentError):
    """A resource breaks a rule. Names the kind, the resource, the field and the rule."""

    def __init__(self, *, kind: str, name: str, field: str, rule: str) -> None:
        self.kind = kind
        self.name = name
        self.field = field
        self.rule = rule
        where = f"{kind} {name!r}" if name else kind
        super().__init__(f"{where}: field {field}: {rule}" if field else f"{where}: {rule}")


class NotFound(PermanentError):
    def __init__(self, kind: str, name: str, namespace: str | None = None) -> None:
        self.kind, self.name, self.namespace = kind, name, namespace
        where = f"{namespace}/{name}" if namespace else name
        super().__init__(f"{kind} {where!r} not found")


class AlreadyExists(PermanentError):
    def __init__(self, kind: str, name: str, namespace: str | None = None) -> None:
        self.kind, self.name, self.namespace = kind, name, namespace
        where = f"{namespace}/{name}" if namespace else name
        super().__init__(f"{kind} {where!r} already exists")


class Conflict(PermanentError):
    """The resourceVersion given is not the stored one: someone else changed it first."""

    def __init__(self, kind: str, name: str, detail: str = "") -> None:
        self.kind, self.name = kind, name
        msg = f"{kind} {name!r} was changed by someone else (stale resourceVersion)"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class Compacted(PermanentError):
    """The watch revision is older than the store keeps; the caller must relist."""


class KernelUnsupported(PermanentError):
    """The running kernel lacks a feature Wren needs for part of the dataplane."""

    def __init__(self, feature: str, detail: str) -> None:
        self.feature = feature
        super().__init__(f"kernel has no {feature} support: {detail}")
