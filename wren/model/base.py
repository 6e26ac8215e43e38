"""Metadata, the Resource base class and the body -> typed resource entry point."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, TypeVar

from wren.errors import ValidationError
from wren.kinds import API_CRD, API_V3, KINDS, Kind, kind_by_name
from wren.model._fields import FieldError, check_name, dump_obj, load_obj

__all__ = ["Metadata", "Resource", "parse", "parse_as", "register", "resource_class"]

R = TypeVar("R", bound="Resource")

# Server-managed ObjectMeta fields: accepted so `kubectl get -o yaml` output loads, not kept.
_IGNORED_META = frozenset({
    "generation", "managedFields", "selfLink", "finalizers", "ownerReferences",
    "deletionTimestamp", "deletionGracePeriodSeconds", "generateName",
})
_META_KEYS = frozenset({
    "name", "namespace", "labels", "annotations", "resourceVersion", "uid", "creationTimestamp",
})
_TOP_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


@dataclass(frozen=True, slots=True)
class Metadata:
    """The part of Kubernetes' ObjectMeta that Calico resources use.

    `resource_version` is the store's optimistic-concurrency token: "" on a resource that was
    never stored (or whose version should be ignored, as `apply` does).
    """

    name: str
    _: KW_ONLY
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    uid: str = ""
    creation_timestamp: str = ""

    def to_body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        if self.uid:
            out["uid"] = self.uid
        if self.creation_timestamp:
            out["creationTimestamp"] = self.creation_timestamp
        return out


@dataclass(frozen=True, slots=True)
class Resource:
    """One Calico resource: metadata plus a kind-specific frozen spec.

    Build them with `parse(body)` (validates everything) or directly in code; `wren.client`
    re-validates on every write by parsing `to_body()`, so a hand-built resource cannot reach
    the datastore unchecked.
    """

    KIND: ClassVar[str] = ""
    SPEC: ClassVar[type[Any]]

    metadata: Metadata
    spec: Any

    @property
    def kind(self) -> Kind:
        return kind_by_name(self.KIND)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @classmethod
    def load_spec(cls, data: Any) -> Any:
        """Spec from its JSON form; raises FieldError with a `spec.`-rooted path."""
        return load_obj(cls.SPEC, data, "spec")

    def dump_spec(self) -> dict[str, Any]:
        return dump_obj(self.spec)

    def to_body(self) -> dict[str, Any]:
        """The `projectcalico.org/v3` JSON form; `parse(r.to_body()) == r`."""
        return {
            "apiVersion": API_V3,
            "kind": self.KIND,
            "metadata": self.metadata.to_body(),
            "spec": self.dump_spec(),
        }

    def with_metadata(self: R, **changes: Any) -> R:
        """A copy with some metadata fields replaced (resource_version after a write)."""
        return dataclasses.replace(self, metadata=dataclasses.replace(self.metadata, **changes))


_CLASSES: dict[str, type[Resource]] = {}


def register(cls: type[R]) -> type[R]:
    """Class decorator: make `parse` know a kind. Only kinds from wren.kinds are allowed."""
    kind_by_name(cls.KIND)
    _CLASSES[cls.KIND] = cls
    return cls


def resource_class(kind: str | Kind) -> type[Resource]:
    name = kind.name if isinstance(kind, Kind) else kind_by_name(kind).name
    return _CLASSES[name]


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def _check_label_key(key: str) -> str | None:
    """Kubernetes' qualified name: optional DNS-subdomain prefix, "/", name of <= 63 chars."""
    prefix, slash, short = key.rpartition("/")
    if slash and (not prefix or check_name(prefix)):
        return f"key {key!r} has an invalid prefix {prefix!r} (a DNS subdomain)"
    if not _LABEL_NAME.match(short):
        return (f"key {key!r}: the name part must be 1-63 alphanumerics, '-', '_' or '.', "
                "starting and ending with an alphanumeric")
    return None


def _check_label_value(value: str) -> str | None:
    if value and not _LABEL_NAME.match(value):
        return (f"value {value!r} must be at most 63 alphanumerics, '-', '_' or '.', starting "
                "and ending with an alphanumeric")
    return None


def _string_map(
    value: Any, *, kind: str, name: str, path: str, values_are_labels: bool
) -> dict[str, str]:
    """Labels or annotations: string to string, with keys (and label values) as Kubernetes
    requires, since selectors and the Kubernetes datastore depend on them."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationError(kind=kind, name=name, field=path,
                              rule="must be a mapping of strings to strings")
    for k, v in value.items():
        problem = _check_label_key(k) or (_check_label_value(v) if values_are_labels else None)
        if problem:
            raise ValidationError(kind=kind, name=name, field=f"{path}.{k}", rule=problem)
    return dict(value)


def _parse_metadata(data: Any, *, kind: Kind) -> Metadata:
    if not isinstance(data, Mapping):
        raise ValidationError(kind=kind.name, name="", field="metadata", rule="is required")
    name = data.get("name")
    if name is None or name == "":
        raise ValidationError(kind=kind.name, name="", field="metadata.name", rule="is required")
    if not isinstance(name, str):
        raise ValidationError(kind=kind.name, name=str(name), field="metadata.name",
                              rule=f"must be a string, not {name!r}")
    for key in data:
        if key not in _META_KEYS and key not in _IGNORED_META:
            raise ValidationError(kind=kind.name, name=name, field=f"metadata.{key}",
                                  rule="unknown field")
    if problem := check_name(name):
        raise ValidationError(kind=kind.name, name=name, field="metadata.name", rule=problem)
    namespace = data.get("namespace") or None
    if namespace is not None:
        if not kind.namespaced:
            raise ValidationError(kind=kind.name, name=name, field="metadata.namespace",
                                  rule=f"{kind.name} is cluster-scoped and has no namespace")
        if not isinstance(namespace, str) or check_name(namespace):
            raise ValidationError(kind=kind.name, name=name, field="metadata.namespace",
                                  rule=f"invalid namespace {namespace!r}")
    elif kind.namespaced:
        namespace = "default"  # as calicoctl and kubectl do for a namespaced kind
    labels = _string_map(data.get("labels"), kind=kind.name, name=name, path="metadata.labels",
                         values_are_labels=True)
    annotations = _string_map(data.get("annotations"), kind=kind.name, name=name,
                              path="metadata.annotations", values_are_labels=False)

    def text(key: str) -> str:
        value = data.get(key)
        return "" if value is None else str(value)

    return Metadata(
        name,
        namespace=namespace,
        labels=labels,
        annotations=annotations,
        resource_version=text("resourceVersion"),
        uid=text("uid"),
        creation_timestamp=text("creationTimestamp"),
    )


def parse(body: Mapping[str, Any]) -> Resource:
    """A validated, typed resource from a raw body (`projectcalico.org/v3` or the CRD form).

    Raises ValidationError naming kind, name, field (dotted path) and the rule broken.
    """
    if not isinstance(body, Mapping):
        raise ValidationError(kind="", name="", field="", rule="a resource must be an object")
    kind_name = body.get("kind")
    meta = body.get("metadata")
    name = str(meta.get("name") or "") if isinstance(meta, Mapping) else ""
    known = {k.name for k in KINDS}
    if not isinstance(kind_name, str) or kind_name not in known:
        choices = ", ".join(sorted(known))
        raise ValidationError(kind=str(kind_name or ""), name=name, field="kind",
                              rule=f"unknown kind {kind_name!r} (known: {choices})")
    api = body.get("apiVersion")
    if api not in (API_V3, API_CRD):
        raise ValidationError(kind=kind_name, name=name, field="apiVersion",
                              rule=f"unsupported apiVersion {api!r} (use {API_V3} or {API_CRD})")
    for key in body:
        if key not in _TOP_KEYS:
            raise ValidationError(kind=kind_name, name=name, field=str(key), rule="unknown field")
    kind = kind_by_name(kind_name)
    cls = _CLASSES[kind.name]
    metadata = _parse_metadata(meta, kind=kind)
    try:
        spec = cls.load_spec(body.get("spec"))
    except FieldError as e:
        raise ValidationError(kind=kind.name, name=metadata.name, field=e.path,
                              rule=e.rule) from None
    return cls(metadata=metadata, spec=spec)


def parse_as(cls: type[R], body: Mapping[str, Any]) -> R:
    """`parse`, for callers that expect one kind: a body of another kind is a ValidationError."""
    res = parse(body)
    if not isinstance(res, cls):
        raise ValidationError(kind=res.KIND, name=res.metadata.name, field="kind",
                              rule=f"expected kind {cls.KIND}, got {res.KIND}")
    return res
