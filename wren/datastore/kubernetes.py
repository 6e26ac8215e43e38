"""The Kubernetes datastore: Calico's resources on the API server, mapped the way Calico maps them.

Bodies in and out are `projectcalico.org/v3`; on the server they live as follows.

CRD kinds (every kind whose `Kind.k8s_source` is "crd": IPPool, BGPPeer, IPAMBlock, ...)
    Custom objects of group `crd.projectcalico.org`, version `v1`, plural `Kind.plural`. The
    body is the same but for `apiVersion` (`crd.projectcalico.org/v1` on the server); metadata
    keeps name, namespace, labels, annotations, resourceVersion, uid, creationTimestamp.

Node  ⇄  the Kubernetes Node of the same name (never created nor deleted by Wren)
    metadata.labels                  the Node's labels (`kubectl label node` drives selectors)
    spec.bgp.ipv4Address             annotation projectcalico.org/IPv4Address
    spec.bgp.ipv6Address             annotation projectcalico.org/IPv6Address
    spec.bgp.asNumber                annotation projectcalico.org/ASNumber (int in the body)
    spec.bgp.routeReflectorClusterID annotation projectcalico.org/RouteReflectorClusterID
    spec.bgp.ipv4IPIPTunnelAddr      annotation projectcalico.org/IPv4IPIPTunnelAddr
    spec.ipv4VXLANTunnelAddr         annotation projectcalico.org/IPv4VXLANTunnelAddr
    spec.vxlanTunnelMACAddr          annotation projectcalico.org/VXLANTunnelMACAddr
    spec.addresses                   the Node's status.addresses (read-only)
    spec.orchRefs                    [{orchestrator: k8s, nodeName: <name>}] (read-only)
  create: the Kubernetes Node must exist (else `KubernetesNodeMissing`, a NotFound); if it
  already carries any of the annotations above, AlreadyExists. create/update patch only those
  annotations and, when the body has `metadata.labels`, the labels (set to exactly the body's);
  a body without `labels` leaves them alone. delete removes the annotations, not the Node.

WorkloadEndpoint  ⇄  a Pod that the CNI plugin has given addresses
    metadata.name        `<node>-k8s-<pod>-<endpoint>`, each part with "-" doubled (Calico's)
    metadata.namespace   the Pod's namespace
    metadata.labels      the Pod's labels + projectcalico.org/namespace, .../orchestrator: k8s,
                         .../serviceaccount (read-only: labels come from the Pod)
    spec.node            pod spec.nodeName              spec.pod     the Pod's name
    spec.ipNetworks      annotation cni.projectcalico.org/podIPs (comma list of CIDRs);
                         cni.projectcalico.org/podIP holds the first
    spec.containerID     annotation cni.projectcalico.org/containerID
    spec.interfaceName   annotation cni.wren.io/interfaceName   (host side veth, e.g. cali1a2b…)
    spec.mac             annotation cni.wren.io/mac             (the pod side MAC)
    spec.endpoint        annotation cni.wren.io/endpoint        (default "eth0")
    spec.profiles        ["kns.<namespace>", "ksa.<namespace>.<serviceaccount>"] (read-only)
    spec.ports           the containers' named ports (read-only)
  A Pod is an endpoint while it is scheduled, not hostNetwork, not finished (Succeeded/Failed)
  and has the podIPs/podIP annotation. create/update patch the annotations above (create:
  AlreadyExists if the Pod already has them); delete removes them. A watch of endpoints is a
  watch of Pods: an endpoint recorded on an existing Pod arrives as MODIFIED (treat ADDED and
  MODIFIED alike), and a Pod change that leaves it without an endpoint is reported as DELETED
  (the `Watcher` drops those for keys it never saw).

resourceVersion is the server's; a stale one is refused by the server (409 → `Conflict`). For
Node and WorkloadEndpoint it is the Node's / Pod's, sent as a precondition in the merge patch.
Watches ask for bookmarks and move their resume point on each; `410 Gone` → `Compacted`; a lost
connection or a 5xx → `DatastoreUnavailable`; 401/403 too (RBAC may be fixed while we back off).
Secrets: `read_secret(name, key)` reads Secret `name` in namespace `WREN_NAMESPACE`
(default kube-system).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from wren.datastore._stream import closing_on_stop
from wren.datastore.backend import Body, Listing, WatchEvent, body_key
from wren.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    DatastoreUnavailable,
    NotFound,
    ValidationError,
    WrenError,
)
from wren.kinds import API_CRD, API_V3, GROUP_CRD, KINDS, Kind
from wren.log import get_logger

__all__ = [
    "NODE_ANNOTATIONS",
    "WEP_ANNOTATIONS",
    "KubernetesBackend",
    "KubernetesNodeMissing",
    "crd_to_v3",
    "node_patch",
    "node_to_v3",
    "parse_wep_name",
    "pod_to_wep",
    "v3_to_crd",
    "wep_name",
    "wep_patch",
]

_log = get_logger(__name__)
_T = TypeVar("_T")
_KIND_BY_NAME = {k.name: k for k in KINDS}
CRD_VERSION = "v1"

# (path in spec, annotation); asNumber is an int in the body, a string in the annotation.
NODE_ANNOTATIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("bgp", "ipv4Address"), "projectcalico.org/IPv4Address"),
    (("bgp", "ipv6Address"), "projectcalico.org/IPv6Address"),
    (("bgp", "asNumber"), "projectcalico.org/ASNumber"),
    (("bgp", "routeReflectorClusterID"), "projectcalico.org/RouteReflectorClusterID"),
    (("bgp", "ipv4IPIPTunnelAddr"), "projectcalico.org/IPv4IPIPTunnelAddr"),
    (("ipv4VXLANTunnelAddr",), "projectcalico.org/IPv4VXLANTunnelAddr"),
    (("vxlanTunnelMACAddr",), "projectcalico.org/VXLANTunnelMACAddr"),
)
ANN_POD_IP = "cni.projectcalico.org/podIP"
ANN_POD_IPS = "cni.projectcalico.org/podIPs"
ANN_CONTAINER_ID = "cni.projectcalico.org/containerID"
ANN_INTERFACE = "cni.wren.io/interfaceName"
ANN_MAC = "cni.wren.io/mac"
ANN_ENDPOINT = "cni.wren.io/endpoint"
WEP_ANNOTATIONS = (ANN_POD_IP, ANN_POD_IPS, ANN_CONTAINER_ID, ANN_INTERFACE, ANN_MAC, ANN_ENDPOINT)
_KEPT_META = ("name", "namespace", "labels", "annotations", "resourceVersion", "uid",
              "creationTimestamp")


class KubernetesNodeMissing(NotFound):
    """Wren's Node is the Kubernetes Node: it cannot be created where Kubernetes has none."""

    def __init__(self, name: str) -> None:
        super().__init__("Node", name)
        self.args = (
            f"Node {name!r}: no Kubernetes Node of that name; on the Kubernetes datastore a "
            "Node is the Kubernetes Node (registered by its kubelet), Wren only annotates it",
        )


# -- pure conversions ------------------------------------------------------------------------
def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {k: copy.deepcopy(meta[k]) for k in _KEPT_META if meta.get(k) not in (None, {}, "")}


def crd_to_v3(obj: dict[str, Any]) -> Body:
    """A `crd.projectcalico.org/v1` custom object as a v3 body."""
    body: Body = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion",
                                                                          "metadata")}
    body["apiVersion"] = API_V3
    body["metadata"] = _meta(obj)
    return body


def v3_to_crd(body: Body) -> dict[str, Any]:
    """A v3 body as the custom object to store."""
    obj = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("apiVersion", "metadata")}
    obj["apiVersion"] = API_CRD
    obj["metadata"] = _meta(body)
    return obj


def node_to_v3(node: dict[str, Any]) -> Body:
    """A Kubernetes Node (raw JSON) as a v3 Node body."""
    meta = node.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    spec: dict[str, Any] = {}
    for path, annotation in NODE_ANNOTATIONS:
        if annotation not in annotations:
            continue
        value: Any = annotations[annotation]
        if path[-1] == "asNumber" and str(value).isdigit():
            value = int(value)
        target = spec
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    addresses = [
        {"address": a["address"], "type": a["type"]}
        for a in (node.get("status") or {}).get("addresses") or []
        if a.get("type") in ("InternalIP", "ExternalIP")
    ]
    if addresses:
        spec["addresses"] = addresses
    spec["orchRefs"] = [{"nodeName": meta.get("name", ""), "orchestrator": "k8s"}]
    out_meta = {k: v for k, v in _meta(node).items() if k != "annotations"}
    out_meta.setdefault("labels", {})
    return {"apiVersion": API_V3, "kind": "Node", "metadata": out_meta, "spec": spec}


def has_calico_node_fields(node: dict[str, Any]) -> bool:
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    return any(a in annotations for _, a in NODE_ANNOTATIONS)


def node_patch(body: Body, current: dict[str, Any], *, remove: bool = False) -> dict[str, Any]:
    """The JSON merge patch that writes a v3 Node's fields onto Kubernetes Node `current`.

    With `remove`, the patch deletes every Calico annotation (what deleting a Node means here).
    """
    spec = body.get("spec") or {}
    annotations: dict[str, str | None] = {}
    for path, annotation in NODE_ANNOTATIONS:
        value: Any = spec
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        annotations[annotation] = None if (remove or value in (None, "")) else str(value)
    meta: dict[str, Any] = {"annotations": annotations}
    body_meta = body.get("metadata") or {}
    if not remove and "labels" in body_meta:
        wanted = dict(body_meta.get("labels") or {})
        have = (current.get("metadata") or {}).get("labels") or {}
        meta["labels"] = {**{k: None for k in have if k not in wanted}, **wanted}
    if body_meta.get("resourceVersion"):
        meta["resourceVersion"] = str(body_meta["resourceVersion"])
    return {"metadata": meta}


def _escape(part: str) -> str:
    return part.replace("-", "--")


def wep_name(node: str, pod: str, endpoint: str = "eth0") -> str:
    """Calico's WorkloadEndpoint name for a Kubernetes pod: `<node>-k8s-<pod>-<endpoint>`."""
    return f"{_escape(node)}-k8s-{_escape(pod)}-{_escape(endpoint)}"


def parse_wep_name(name: str) -> tuple[str, str, str] | None:
    """(node, pod, endpoint) from a WorkloadEndpoint name, or None if it is not one."""
    marker = "\x00"
    parts = name.replace("--", marker).split("-")
    if len(parts) != 4 or parts[1] != "k8s" or not all(parts):
        return None
    node, _, pod, endpoint = (p.replace(marker, "-") for p in parts)
    return node, pod, endpoint


def pod_to_wep(pod: dict[str, Any]) -> Body | None:
    """The WorkloadEndpoint a Pod (raw JSON) stands for, or None if it is not one (yet/anymore)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    node = spec.get("nodeName") or ""
    phase = (pod.get("status") or {}).get("phase")
    raw_ips = annotations.get(ANN_POD_IPS) or annotations.get(ANN_POD_IP) or ""
    if not node or spec.get("hostNetwork") or phase in ("Succeeded", "Failed") or not raw_ips:
        return None
    namespace = meta.get("namespace") or "default"
    name = meta.get("name", "")
    endpoint = annotations.get(ANN_ENDPOINT) or "eth0"
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or ""
    labels = dict(meta.get("labels") or {})
    labels["projectcalico.org/namespace"] = namespace
    labels["projectcalico.org/orchestrator"] = "k8s"
    profiles = [f"kns.{namespace}"]
    if account:
        labels["projectcalico.org/serviceaccount"] = account
        profiles.append(f"ksa.{namespace}.{account}")
    wep_spec: dict[str, Any] = {
        "orchestrator": "k8s",
        "node": node,
        "pod": name,
        "endpoint": endpoint,
        "ipNetworks": [ip.strip() for ip in raw_ips.split(",") if ip.strip()],
        "profiles": profiles,
    }
    for field, annotation in (("containerID", ANN_CONTAINER_ID),
                              ("interfaceName", ANN_INTERFACE), ("mac", ANN_MAC)):
        if annotations.get(annotation):
            wep_spec[field] = annotations[annotation]
    if account:
        wep_spec["serviceAccountName"] = account
    ports = [
        {"name": p["name"], "protocol": p.get("protocol", "TCP"), "port": p["containerPort"]}
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
        if p.get("name")
    ]
    if ports:
        wep_spec["ports"] = ports
    out_meta: dict[str, Any] = {"name": wep_name(node, name, endpoint), "namespace": namespace,
                                "labels": labels}
    for k in ("resourceVersion", "uid", "creationTimestamp"):
        if meta.get(k):
            out_meta[k] = meta[k]
    return {"apiVersion": API_V3, "kind": "WorkloadEndpoint", "metadata": out_meta,
            "spec": wep_spec}


def wep_patch(body: Body | None, *, resource_version: str = "") -> dict[str, Any]:
    """The merge patch recording a WorkloadEndpoint in its Pod's annotations (None: removing)."""
    spec = (body or {}).get("spec") or {}
    ips = [str(ip) for ip in spec.get("ipNetworks") or []]
    values: dict[str, str | None] = {
        ANN_POD_IP: ips[0] if ips else None,
        ANN_POD_IPS: ",".join(ips) if ips else None,
        ANN_CONTAINER_ID: spec.get("containerID") or None,
        ANN_INTERFACE: spec.get("interfaceName") or None,
        ANN_MAC: spec.get("mac") or None,
        ANN_ENDPOINT: spec.get("endpoint") or None,
    }
    if body is None:
        values = dict.fromkeys(values)
    meta: dict[str, Any] = {"annotations": values}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"metadata": meta}


def _event_obj_rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


# -- the backend -----------------------------------------------------------------------------
Op = Literal["get", "list", "create", "update", "delete", "watch", "secret"]


class KubernetesBackend:
    """`Backend` on the Kubernetes API. Thread-safe (the client's connection pool is)."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        namespace: str = "kube-system",
        request_timeout: float = 10.0,
        watch_timeout_seconds: int = 300,
    ) -> None:
        self._client = api_client
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._namespace = namespace
        self._timeout = request_timeout
        self._watch_seconds = watch_timeout_seconds

    # -- plumbing ---------------------------------------------------------------------------
    def _call(
        self,
        fn: Callable[[], _T],
        *,
        op: Op,
        kind: str,
        name: str = "",
        namespace: str | None = None,
    ) -> _T:
        """Run one API call, turning client errors into Wren's datastore errors."""
        try:
            return fn()
        except ApiException as exc:
            raise self._translate(exc, op=op, kind=kind, name=name, namespace=namespace) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DatastoreUnavailable(f"Kubernetes API {op} {kind} {name!r}: {exc}") from exc

    @staticmethod
    def _translate(
        exc: ApiException, *, op: Op, kind: str, name: str, namespace: str | None
    ) -> WrenError:
        status = int(exc.status or 0)
        message = ""
        try:
            message = str(json.loads(exc.body or "{}").get("message") or "")
        except (ValueError, AttributeError):
            message = str(exc.body or exc.reason or "")
        if status == 404:
            return NotFound(kind, name, namespace)
        if status == 409:
            if op == "create":
                return AlreadyExists(kind, name, namespace)
            return Conflict(kind, name, message)
        if status == 410:
            return Compacted(f"Kubernetes watch {kind}: {message or 'resourceVersion too old'}")
        if status in (400, 422):
            return ValidationError(kind=kind, name=name, field="", rule=message or str(exc))
        return DatastoreUnavailable(
            f"Kubernetes API {op} {kind} {name!r}: HTTP {status} {message or exc.reason}"
        )

    @staticmethod
    def _json(resp: Any) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(resp.data)
        return data

    def _kw(self) -> dict[str, Any]:
        return {"_preload_content": False, "_request_timeout": self._timeout}

    @staticmethod
    def _kind_of(body: Body) -> Kind:
        name = str(body.get("kind", ""))
        try:
            return _KIND_BY_NAME[name]
        except KeyError:
            raise ValueError(f"body has unknown kind {name!r}") from None

    # -- dispatch ---------------------------------------------------------------------------
    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Body:
        if kind.k8s_source == "node":
            return node_to_v3(self._get_node(name))
        if kind.k8s_source == "pod":
            body = self._get_wep(name, namespace)
            if body is None:
                raise NotFound(kind.name, name, namespace)
            return body
        return crd_to_v3(self._call(lambda: self._json(
            self._custom.get_namespaced_custom_object(
                GROUP_CRD, CRD_VERSION, namespace or "", kind.plural, name, **self._kw())
            if kind.namespaced else
            self._custom.get_cluster_custom_object(
                GROUP_CRD, CRD_VERSION, kind.plural, name, **self._kw())
        ), op="get", kind=kind.name, name=name, namespace=namespace))

    def list(self, kind: Kind, namespace: str | None = None) -> Listing:
        if kind.k8s_source == "node":
            raw = self._call(lambda: self._json(self._core.list_node(**self._kw())),
                             op="list", kind="Node")
            items = [node_to_v3(n) for n in raw.get("items") or []]
        elif kind.k8s_source == "pod":
            raw = self._call(lambda: self._json(
                self._core.list_namespaced_pod(namespace, **self._kw()) if namespace
                else self._core.list_pod_for_all_namespaces(**self._kw())
            ), op="list", kind="Pod", namespace=namespace)
            items = [w for w in (pod_to_wep(p) for p in raw.get("items") or []) if w]
        else:
            raw = self._call(lambda: self._json(
                self._custom.list_namespaced_custom_object(
                    GROUP_CRD, CRD_VERSION, namespace, kind.plural, **self._kw())
                if kind.namespaced and namespace else
                self._custom.list_cluster_custom_object(
                    GROUP_CRD, CRD_VERSION, kind.plural, **self._kw())
            ), op="list", kind=kind.name, namespace=namespace)
            items = [crd_to_v3(o) for o in raw.get("items") or []]
        revision = str((raw.get("metadata") or {}).get("resourceVersion") or "")
        return Listing(items=items, revision=revision)

    def create(self, body: Body) -> Body:
        kind = self._kind_of(body)
        if kind.k8s_source == "node":
            return self._write_node(body, op="create")
        if kind.k8s_source == "pod":
            return self._write_wep(body, op="create")
        _, namespace, name = body_key(body)
        obj = v3_to_crd(body)
        obj["metadata"].pop("resourceVersion", None)
        return crd_to_v3(self._call(lambda: self._json(
            self._custom.create_namespaced_custom_object(
                GROUP_CRD, CRD_VERSION, namespace, kind.plural, obj, **self._kw())
            if kind.namespaced else
            self._custom.create_cluster_custom_object(
                GROUP_CRD, CRD_VERSION, kind.plural, obj, **self._kw())
        ), op="create", kind=kind.name, name=name, namespace=namespace or None))

    def update(self, body: Body) -> Body:
        kind = self._kind_of(body)
        if kind.k8s_source == "node":
            return self._write_node(body, op="update")
        if kind.k8s_source == "pod":
            return self._write_wep(body, op="update")
        _, namespace, name = body_key(body)
        obj = v3_to_crd(body)
        if not obj["metadata"].get("resourceVersion"):
            # Custom objects refuse an update without resourceVersion; unconditional means
            # "whatever is stored now".
            current = self.get(kind, name, namespace or None)
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return crd_to_v3(self._call(lambda: self._json(
            self._custom.replace_namespaced_custom_object(
                GROUP_CRD, CRD_VERSION, namespace, kind.plural, name, obj, **self._kw())
            if kind.namespaced else
            self._custom.replace_cluster_custom_object(
                GROUP_CRD, CRD_VERSION, kind.plural, name, obj, **self._kw())
        ), op="update", kind=kind.name, name=name, namespace=namespace or None))

    def delete(
        self, kind: Kind, name: str, namespace: str | None = None, *, resource_version: str = ""
    ) -> Body:
        if kind.k8s_source == "node":
            current = self._get_node(name)
            if not has_calico_node_fields(current):
                raise NotFound(kind.name, name)
            before = node_to_v3(current)
            body = {"kind": "Node", "metadata": {"name": name,
                                                  "resourceVersion": resource_version}}
            self._patch_node(name, node_patch(body, current, remove=True), op="delete")
            return before
        if kind.k8s_source == "pod":
            before_wep = self._get_wep(name, namespace)
            if before_wep is None:
                raise NotFound(kind.name, name, namespace)
            pod = before_wep["spec"]["pod"]
            self._patch_pod(pod, str(before_wep["metadata"]["namespace"]),
                            wep_patch(None, resource_version=resource_version),
                            op="delete", name=name)
            return before_wep
        before = self.get(kind, name, namespace)
        options = k8s.V1DeleteOptions(
            preconditions=k8s.V1Preconditions(resource_version=resource_version)
            if resource_version else None)
        self._call(lambda: (
            self._custom.delete_namespaced_custom_object(
                GROUP_CRD, CRD_VERSION, namespace or "", kind.plural, name, body=options,
                **self._kw())
            if kind.namespaced else
            self._custom.delete_cluster_custom_object(
                GROUP_CRD, CRD_VERSION, kind.plural, name, body=options, **self._kw())
        ), op="delete", kind=kind.name, name=name, namespace=namespace)
        return before

    # -- Node --------------------------------------------------------------------------------
    def _get_node(self, name: str) -> dict[str, Any]:
        return self._call(lambda: self._json(self._core.read_node(name, **self._kw())),
                          op="get", kind="Node", name=name)

    def _patch_node(self, name: str, patch: dict[str, Any], *, op: Op) -> dict[str, Any]:
        return self._call(lambda: self._json(self._core.patch_node(
            name, patch, _content_type="application/merge-patch+json", **self._kw())),
            op=op, kind="Node", name=name)

    def _write_node(self, body: Body, *, op: Op) -> Body:
        _, _, name = body_key(body)
        try:
            current = self._get_node(name)
        except NotFound:
            if op == "create":
                raise KubernetesNodeMissing(name) from None
            raise
        if op == "create" and has_calico_node_fields(current):
            raise AlreadyExists("Node", name)
        return node_to_v3(self._patch_node(name, node_patch(body, current), op=op))

    # -- WorkloadEndpoint --------------------------------------------------------------------
    def _get_pod(self, pod: str, namespace: str, *, wep: str) -> dict[str, Any]:
        return self._call(lambda: self._json(
            self._core.read_namespaced_pod(pod, namespace, **self._kw())),
            op="get", kind="Pod", name=pod, namespace=namespace)

    def _get_wep(self, name: str, namespace: str | None) -> Body | None:
        parsed = parse_wep_name(name)
        if parsed is None or not namespace:
            return None
        try:
            pod = self._get_pod(parsed[1], namespace, wep=name)
        except NotFound:
            return None
        body = pod_to_wep(pod)
        if body is None or body["metadata"]["name"] != name:
            return None
        return body

    def _patch_pod(
        self, pod: str, namespace: str, patch: dict[str, Any], *, op: Op, name: str
    ) -> dict[str, Any]:
        try:
            return self._call(lambda: self._json(self._core.patch_namespaced_pod(
                pod, namespace, patch, _content_type="application/merge-patch+json",
                **self._kw())), op=op, kind="WorkloadEndpoint", name=name, namespace=namespace)
        except NotFound:
            raise NotFound("WorkloadEndpoint", name, namespace) from None

    def _write_wep(self, body: Body, *, op: Op) -> Body:
        _, namespace, name = body_key(body)
        spec = body.get("spec") or {}
        namespace = namespace or "default"
        parsed = parse_wep_name(name) if name else None
        pod_name = str(spec.get("pod") or (parsed[1] if parsed else ""))
        if not pod_name:
            raise ValidationError(kind="WorkloadEndpoint", name=name, field="spec.pod",
                                  rule="names no pod (and metadata.name is not <node>-k8s-"
                                       "<pod>-<endpoint>)")
        try:
            pod = self._get_pod(pod_name, namespace, wep=name)
        except NotFound:
            raise NotFound("WorkloadEndpoint", name or pod_name, namespace) from None
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if spec.get("node") and spec["node"] != node:
            raise ValidationError(
                kind="WorkloadEndpoint", name=name, field="spec.node",
                rule=f"is {spec['node']!r} but pod {namespace}/{pod_name} runs on {node!r}")
        expected = wep_name(node, pod_name, str(spec.get("endpoint") or "eth0"))
        if name and name != expected:
            raise ValidationError(
                kind="WorkloadEndpoint", name=name, field="metadata.name",
                rule=f"must be {expected!r} (<node>-k8s-<pod>-<endpoint>, '-' doubled)")
        exists = pod_to_wep(pod) is not None
        if op == "create" and exists:
            raise AlreadyExists("WorkloadEndpoint", expected, namespace)
        if op == "update" and not exists:
            raise NotFound("WorkloadEndpoint", expected, namespace)
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        patched = self._patch_pod(pod_name, namespace, wep_patch(body, resource_version=rv),
                                  op=op, name=expected)
        result = pod_to_wep(patched)
        if result is None:
            raise ValidationError(kind="WorkloadEndpoint", name=expected, field="spec",
                                  rule="pod is not eligible (no node, hostNetwork, finished, "
                                       "or no spec.ipNetworks)")
        return result

    # -- watch ------------------------------------------------------------------------------
    def watch(
        self, kind: Kind, *, revision: str, stop: threading.Event | None = None
    ) -> Iterator[WatchEvent]:
        """Changes after `revision`; reopens the stream when the server ends it (timeout)."""
        rv = revision
        while stop is None or not stop.is_set():
            opened, received = time.monotonic(), False
            resp = self._call(functools.partial(self._open_watch, kind, rv), op="watch",
                              kind=kind.name)
            with closing_on_stop(stop, resp.shutdown, name=f"kube-watch-{kind.plural}"):
                try:
                    for line in _lines(resp):
                        if stop is not None and stop.is_set():
                            return
                        if not line.strip():
                            continue
                        received = True
                        event = json.loads(line)
                        etype, obj = event.get("type"), event.get("object") or {}
                        if etype == "ERROR":
                            raise self._watch_error(kind, obj)
                        rv = _event_obj_rv(obj) or rv
                        if etype == "BOOKMARK":
                            continue
                        converted = self._convert_event(kind, etype, obj)
                        if converted is not None:
                            yield converted
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    if stop is not None and stop.is_set():
                        return
                    raise DatastoreUnavailable(
                        f"Kubernetes watch {kind.plural} lost: {exc}") from exc
                finally:
                    resp.release_conn()
            if not received and time.monotonic() - opened < 1.0 and not (stop and stop.is_set()):
                # A stream that ends at once, again and again, would be a busy loop: let the
                # caller back off instead.
                raise DatastoreUnavailable(f"Kubernetes watch {kind.plural}: stream closed at once")

    def _open_watch(self, kind: Kind, rv: str) -> Any:
        kw: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "resource_version": rv,
            "timeout_seconds": self._watch_seconds,
            "_preload_content": False,
            "_request_timeout": (self._timeout, self._watch_seconds + 30),
        }
        if kind.k8s_source == "node":
            return self._core.list_node(**kw)
        if kind.k8s_source == "pod":
            return self._core.list_pod_for_all_namespaces(**kw)
        return self._custom.list_cluster_custom_object(GROUP_CRD, CRD_VERSION, kind.plural, **kw)

    @staticmethod
    def _watch_error(kind: Kind, status: dict[str, Any]) -> WrenError:
        code = int(status.get("code") or 0)
        message = str(status.get("message") or status)
        if code == 410:
            return Compacted(f"Kubernetes watch {kind.plural}: {message}")
        return DatastoreUnavailable(f"Kubernetes watch {kind.plural}: HTTP {code} {message}")

    @staticmethod
    def _convert_event(kind: Kind, etype: str, obj: dict[str, Any]) -> WatchEvent | None:
        rv = _event_obj_rv(obj)
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            return None
        typ: Literal["ADDED", "MODIFIED", "DELETED"] = (
            "ADDED" if etype == "ADDED" else "MODIFIED" if etype == "MODIFIED" else "DELETED")
        if kind.k8s_source == "node":
            return WatchEvent(typ, node_to_v3(obj), rv, kind.name)
        if kind.k8s_source == "pod":
            body = pod_to_wep(obj)
            if body is None or typ == "DELETED":
                gone = body or _wep_stub(obj)
                return WatchEvent("DELETED", gone, rv, kind.name)
            return WatchEvent(typ, body, rv, kind.name)
        return WatchEvent(typ, crd_to_v3(obj), rv, kind.name)

    # -- secrets and lifetime ---------------------------------------------------------------
    def read_secret(self, name: str, key: str) -> str | None:
        try:
            secret = self._call(lambda: self._json(self._core.read_namespaced_secret(
                name, self._namespace, **self._kw())), op="secret", kind="Secret", name=name,
                namespace=self._namespace)
        except NotFound:
            return None
        value = (secret.get("data") or {}).get(key)
        return None if value is None else base64.b64decode(value).decode()

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _lines(resp: Any) -> Iterator[str]:
    """Lines of a streaming watch response, as the chunks arrive."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", errors="replace")


def _wep_stub(pod: dict[str, Any]) -> Body:
    """Names the endpoint a pod would be, for DELETED events of pods that no longer are one."""
    meta = pod.get("metadata") or {}
    node = (pod.get("spec") or {}).get("nodeName") or ""
    endpoint = (meta.get("annotations") or {}).get(ANN_ENDPOINT) or "eth0"
    return {
        "apiVersion": API_V3,
        "kind": "WorkloadEndpoint",
        "metadata": {"name": wep_name(node, meta.get("name", ""), endpoint),
                     "namespace": meta.get("namespace") or "default",
                     "resourceVersion": _event_obj_rv(pod)},
    }
