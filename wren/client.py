"""Typed, validated access to the datastore: what wrenctl, the CNI plugin and IPAM write through.

    Client ──► parse / to_body, cross-resource checks ──► Backend (raw bodies, revisions)

Every write is validated completely before the backend sees it: the resource itself (by parsing
its own body again, so a resource built in code gets the same checks as a file), then the rules
that need other resources (IPPools must not overlap; a pool's CIDR and block size cannot change,
as in Calico). When a check fails nothing is written.

Reads are tolerant: `list` skips a stored object that no longer validates (written by an older
version or by hand with kubectl) and logs its name and why; `list_with_errors` returns both.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from wren.datastore.backend import Backend, Body
from wren.errors import AlreadyExists, Conflict, NotFound, ValidationError
from wren.kinds import Kind, kind_by_name
from wren.log import get_logger
from wren.model import IPAMBlock, IPPool, Resource, parse

__all__ = ["APPLY_ATTEMPTS", "Client", "InvalidObject"]

R = TypeVar("R", bound=Resource)
KindRef = str | Kind | type[Resource]

# apply re-reads and retries when someone else wrote between its read and its write.
APPLY_ATTEMPTS = 5

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class InvalidObject:
    """A stored body that does not validate, and why."""

    kind: str
    name: str
    namespace: str | None
    error: ValidationError
    body: Mapping[str, Any]


def _kind(kind: KindRef) -> Kind:
    if isinstance(kind, Kind):
        return kind
    if isinstance(kind, type):
        return kind_by_name(kind.KIND)
    return kind_by_name(kind)


class Client:
    """Typed CRUD over one Backend. Thread-safe as far as the backend is: it holds no state."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- reads ------------------------------------------------------------------------------
    @overload
    def get(self, kind: type[R], name: str, namespace: str | None = None) -> R: ...
    @overload
    def get(self, kind: str | Kind, name: str, namespace: str | None = None) -> Resource: ...
    def get(self, kind: KindRef, name: str, namespace: str | None = None) -> Resource:
        """One resource; NotFound if absent, ValidationError if the stored body is invalid."""
        k = _kind(kind)
        return parse(self.backend.get(k, name, self._namespace(k, namespace)))

    @overload
    def list(self, kind: type[R], namespace: str | None = None) -> builtins.list[R]: ...
    @overload
    def list(self, kind: str | Kind, namespace: str | None = None) -> builtins.list[Resource]: ...
    def list(self, kind: KindRef, namespace: str | None = None) -> builtins.list[Any]:
        """Every valid resource of a kind (all namespaces when namespace is None)."""
        valid, _ = self.list_with_errors(kind, namespace)
        return valid

    def list_with_errors(
        self, kind: KindRef, namespace: str | None = None
    ) -> tuple[builtins.list[Resource], builtins.list[InvalidObject]]:
        """Valid resources and the stored bodies that failed validation (each logged)."""
        k = _kind(kind)
        listing = self.backend.list(k, namespace)
        valid: builtins.list[Resource] = []
        invalid: builtins.list[InvalidObject] = []
        for body in listing.items:
            try:
                valid.append(parse(body))
            except ValidationError as e:
                meta = body.get("metadata") or {}
                bad = InvalidObject(
                    kind=k.name,
                    name=str(meta.get("name", "")),
                    namespace=meta.get("namespace") or None,
                    error=e,
                    body=body,
                )
                _log.warning("skipping invalid stored resource", kind=k.name, name=bad.name,
                             namespace=bad.namespace, field=e.field, reason=e.rule)
                invalid.append(bad)
        return valid, invalid

    # -- writes -----------------------------------------------------------------------------
    def create(self, res: R) -> R:
        """Store a new resource; AlreadyExists if the name is taken."""
        body = self._prepare(res, existing=None)
        body["metadata"].pop("resourceVersion", None)
        return self._typed(res, self.backend.create(body))

    def update(self, res: R) -> R:
        """Replace a resource read earlier: `res.metadata.resource_version` must still be the
        stored one, else Conflict (someone else changed it: re-read, recompute, retry)."""
        if not res.metadata.resource_version:
            raise ValidationError(
                kind=res.KIND, name=res.metadata.name, field="metadata.resourceVersion",
                rule="update needs the resourceVersion that was read (use apply or replace to "
                     "overwrite unconditionally)",
            )
        existing = self._existing(res)
        if existing is None:
            raise NotFound(res.KIND, res.metadata.name, res.metadata.namespace)
        if existing.metadata.resource_version != res.metadata.resource_version:
            raise Conflict(res.KIND, res.metadata.name,
                           f"read at {res.metadata.resource_version}, stored is "
                           f"{existing.metadata.resource_version}")
        body = self._prepare(res, existing=existing)
        return self._typed(res, self.backend.update(body))

    def replace(self, res: R) -> R:
        """Overwrite an existing resource (NotFound if absent). With a resourceVersion the write
        is conditional on it, without one unconditional — `calicoctl replace`."""
        existing = self._existing(res)
        if existing is None:
            raise NotFound(res.KIND, res.metadata.name, res.metadata.namespace)
        body = self._prepare(res, existing=existing)
        return self._typed(res, self.backend.update(body))

    def apply(self, res: R) -> R:
        """Create, or overwrite whatever is stored (its resourceVersion is ignored) —
        `calicoctl apply` / `kubectl apply`. Retries when another writer races it."""
        last: Exception = Conflict(res.KIND, res.metadata.name)
        for _ in range(APPLY_ATTEMPTS):
            existing = self._existing(res)
            try:
                if existing is None:
                    body = self._prepare(res, existing=None)
                    body["metadata"].pop("resourceVersion", None)
                    return self._typed(res, self.backend.create(body))
                body = self._prepare(res, existing=existing)
                body["metadata"]["resourceVersion"] = existing.metadata.resource_version
                return self._typed(res, self.backend.update(body))
            except (AlreadyExists, Conflict, NotFound) as e:
                last = e  # somebody wrote between our read and our write: read again
                _log.debug("apply raced another writer; retrying", kind=res.KIND,
                           name=res.metadata.name, error=str(e))
        raise Conflict(res.KIND, res.metadata.name,
                       f"other writers kept changing it; gave up after {APPLY_ATTEMPTS} attempts "
                       f"({last})")

    def delete(
        self, kind: KindRef, name: str, namespace: str | None = None, *,
        resource_version: str = "",
    ) -> Resource | None:
        """Delete; NotFound if absent. Returns what was stored, or None if that was invalid."""
        k = _kind(kind)
        body = self.backend.delete(k, name, self._namespace(k, namespace),
                                   resource_version=resource_version)
        try:
            return parse(body)
        except ValidationError as e:
            _log.warning("deleted an invalid stored resource", kind=k.name, name=name,
                         reason=str(e))
            return None

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _namespace(kind: Kind, namespace: str | None) -> str | None:
        """Cluster-scoped kinds have none; a namespaced kind defaults to "default" (kubectl)."""
        if not kind.namespaced:
            return None
        return namespace or "default"

    def _existing(self, res: Resource) -> Resource | None:
        """The stored version of `res`, or None. A stored body that no longer validates counts
        as existing (it can be overwritten) but has nothing to compare against."""
        k = _kind(type(res))
        namespace = self._namespace(k, res.metadata.namespace)
        try:
            body = self.backend.get(k, res.metadata.name, namespace)
        except NotFound:
            return None
        try:
            return parse(body)
        except ValidationError:
            meta = body.get("metadata") or {}
            return res.with_metadata(resource_version=str(meta.get("resourceVersion") or ""))

    def _prepare(self, res: Resource, *, existing: Resource | None) -> Body:
        """The body to write, after every check; raises ValidationError and writes nothing."""
        body = res.to_body()
        checked = parse(body)  # the same rules as a file, for resources built in code
        if isinstance(checked, IPPool):
            self._check_pool(checked, existing if isinstance(existing, IPPool) else None)
        out = checked.to_body()
        if res.metadata.resource_version:
            out["metadata"]["resourceVersion"] = res.metadata.resource_version
        return out

    def _check_pool(self, pool: IPPool, old: IPPool | None) -> None:
        if old is not None:
            if old.spec.cidr != pool.spec.cidr:
                raise ValidationError(kind="IPPool", name=pool.name, field="spec.cidr",
                                      rule=f"the CIDR of a pool cannot be changed ({old.spec.cidr}"
                                           f" -> {pool.spec.cidr}); create a new pool instead")
            if old.spec.block_size != pool.spec.block_size:
                raise ValidationError(kind="IPPool", name=pool.name, field="spec.blockSize",
                                      rule=f"the block size of a pool cannot be changed "
                                           f"({old.spec.block_size} -> {pool.spec.block_size})")
        for other in self.list(IPPool):
            if other.name != pool.name and other.spec.cidr.overlaps(pool.spec.cidr):
                raise ValidationError(
                    kind="IPPool", name=pool.name, field="spec.cidr",
                    rule=f"IPPool {pool.name!r} CIDR {pool.spec.cidr} overlaps IPPool "
                         f"{other.name!r} CIDR {other.spec.cidr}",
                )
        if old is None:
            for block in self.list(IPAMBlock):
                cidr = block.spec.cidr
                if cidr.overlaps(pool.spec.cidr) and cidr.prefixlen != pool.spec.block_size:
                    raise ValidationError(
                        kind="IPPool", name=pool.name, field="spec.blockSize",
                        rule=f"blockSize {pool.spec.block_size} conflicts with existing block "
                             f"{cidr} of a different size",
                    )

    @staticmethod
    def _typed(res: R, stored: Body) -> R:
        out = parse(stored)
        if not isinstance(out, type(res)):
            raise TypeError(f"stored {out.KIND} where {res.KIND} was written")
        return out


