"""The etcd v3 datastore, laid out the way Calico lays out its resources in etcd.

Every resource is one key holding its `projectcalico.org/v3` JSON body::

    /calico/resources/v3/projectcalico.org/<plural>/<name>              cluster-scoped kinds
    /calico/resources/v3/projectcalico.org/<plural>/<namespace>/<name>  namespaced kinds

`metadata.resourceVersion` is the key's `mod_revision` (never stored in the value), so
optimistic concurrency is a transaction comparing `mod_revision`; create compares
`create_revision == 0`. A list returns the response header's revision; a watch starts at that
revision + 1.

Client: `etcd3gw` (etcd's grpc-gateway JSON API, `/v3/` on etcd 3.4). Its `get` drops the
response header and its `watch` runs in a thread that swallows compaction and connection loss,
so `list` posts the range request through etcd3gw's own `post`, and `watch` opens the gateway's
watch stream on etcd3gw's `requests` session and parses it here: a cancelled watch with a
`compact_revision` becomes `Compacted`, a broken stream `DatastoreUnavailable`.

Secrets (BGP passwords' `secretKeyRef`) have no place in Calico's etcd layout; they come from the
environment: `read_secret("bgp-secrets", "peer-a")` reads `WREN_SECRET_BGP_SECRETS_PEER_A`
(name and key upper-cased, every character other than A-Z and 0-9 turned into `_`).
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import etcd3gw
import requests
import urllib3
from etcd3gw import exceptions as etcd_exc

from wren.datastore._stream import closing_on_stop
from wren.datastore.backend import Body, Listing, WatchEvent, body_key
from wren.errors import AlreadyExists, Compacted, Conflict, DatastoreUnavailable, NotFound
from wren.kinds import API_V3, KINDS, Kind
from wren.log import get_logger

__all__ = ["LIST_PAGE", "EtcdBackend", "EtcdTLS", "key_for", "secret_env_name"]

PREFIX = "/calico/resources/v3/projectcalico.org"
LIST_PAGE = 500
_log = get_logger(__name__)
_T = TypeVar("_T")
_KIND_BY_NAME = {k.name: k for k in KINDS}


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    """Client TLS files (`ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`)."""

    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None


def key_for(kind: Kind, name: str, namespace: str | None = None) -> str:
    """The etcd key of one resource, in Calico's layout."""
    if kind.namespaced:
        if not namespace:
            raise ValueError(f"{kind.name} {name!r} is namespaced: a namespace is required")
        return f"{PREFIX}/{kind.plural}/{namespace}/{name}"
    return f"{PREFIX}/{kind.plural}/{name}"


def _prefix_for(kind: Kind, namespace: str | None = None) -> str:
    if kind.namespaced and namespace:
        return f"{PREFIX}/{kind.plural}/{namespace}/"
    return f"{PREFIX}/{kind.plural}/"


def secret_env_name(name: str, key: str) -> str:
    """`WREN_SECRET_<NAME>_<KEY>`: where the etcd datastore looks for a secret value."""
    return f"WREN_SECRET_{_env_word(name)}_{_env_word(key)}"


def _env_word(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", text.upper())


def _b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def _shared_strings(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A decoded object whose keys and string values are interned. Each body decoded alone got
    its own copy of every key ("metadata", "spec", "interfaceName"...) and of every repeated
    value (namespace, node, labels, orchestrator), ~2 KB per endpoint, and the parsed resource
    keeps the values: at 10,000 endpoints that was ~8 MB of the agent's peak RSS. Interned
    strings are freed with their last user. Costs ~10 us a body."""
    intern = sys.intern
    return {intern(k): intern(v) if v.__class__ is str else v for k, v in pairs}


def _range_end(prefix: str) -> str:
    data = bytearray(prefix.encode())
    data[-1] += 1
    return base64.b64encode(bytes(data)).decode()


class EtcdBackend:
    """`Backend` on etcd v3. Thread-safe: each call is one HTTP request on a shared session."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: EtcdTLS | None = None,
        timeout: float = 10.0,
        watch_idle_timeout: float = 660.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("ETCD_ENDPOINTS: at least one endpoint is required")
        self._session = requests.Session()
        # Environment settings (REQUESTS_CA_BUNDLE, *_PROXY) would silently override the
        # configured CA and route loopback/cluster traffic through proxies: ETCD_* rules alone.
        self._session.trust_env = False
        tls = tls or EtcdTLS()
        if tls.ca_cert:
            self._session.verify = tls.ca_cert
        if tls.cert and tls.key:
            self._session.cert = (tls.cert, tls.key)
        self._clients: list[etcd3gw.Etcd3Client] = []
        for endpoint in endpoints:
            url = urlsplit(endpoint.strip())
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"ETCD_ENDPOINTS: {endpoint!r} is not an http(s)://host:port URL")
            self._clients.append(
                etcd3gw.Etcd3Client(
                    host=url.hostname,
                    port=url.port or 2379,
                    protocol=url.scheme,
                    timeout=timeout,
                    api_path="/v3/",
                    session=self._session,
                )
            )
        self._current = 0
        self._lock = threading.Lock()
        self._watch_idle_timeout = watch_idle_timeout
        self._env = os.environ if env is None else env

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[etcd3gw.Etcd3Client], _T]) -> _T:
        """Run one request, failing over to the next endpoint when one cannot be reached."""
        with self._lock:
            start = self._current
        errors: list[str] = []
        for i in range(len(self._clients)):
            index = (start + i) % len(self._clients)
            client = self._clients[index]
            try:
                result = fn(client)
            except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError) as exc:
                errors.append(f"{client.base_url}: {type(exc).__name__} {exc}")
                continue
            except etcd_exc.Etcd3Exception as exc:
                raise DatastoreUnavailable(
                    f"etcd {what} at {client.base_url} failed: {exc.detail_text or exc}"
                ) from exc
            except requests.RequestException as exc:
                errors.append(f"{client.base_url}: {exc}")
                continue
            with self._lock:
                self._current = index
            return result
        raise DatastoreUnavailable(f"etcd {what}: no endpoint answered ({'; '.join(errors)})")

    def _post(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        def go(client: etcd3gw.Etcd3Client) -> dict[str, Any]:
            result: dict[str, Any] = client.post(client.get_url(path), json=payload)
            return result

        return self._call(what, go)

    @staticmethod
    def _decode(kv: Mapping[str, Any]) -> Body:
        body: Body = json.loads(base64.b64decode(kv.get("value", "")) or b"{}",
                                object_pairs_hook=_shared_strings)
        body.setdefault("metadata", {})["resourceVersion"] = str(kv["mod_revision"])
        return body

    @staticmethod
    def _encode(body: Body) -> str:
        stored = copy.deepcopy(body)
        stored.setdefault("metadata", {}).pop("resourceVersion", None)
        return _b64(json.dumps(stored, separators=(",", ":"), sort_keys=True))

    @staticmethod
    def _kind_of(body: Body) -> Kind:
        name = str(body.get("kind", ""))
        try:
            return _KIND_BY_NAME[name]
        except KeyError:
            raise ValueError(f"body has unknown kind {name!r}") from None

    # -- reads ------------------------------------------------------------------------------
    def get(self, kind: Kind, name: str, namespace: str | None = None) -> Body:
        key = key_for(kind, name, namespace)
        result = self._post(f"get {kind.name} {name!r}", "/kv/range", {"key": _b64(key)})
        kvs = result.get("kvs") or []
        if not kvs:
            raise NotFound(kind.name, name, namespace)
        return self._decode(kvs[0])

    def list(self, kind: Kind, namespace: str | None = None) -> Listing:
        """Every resource of the kind, read in pages of `LIST_PAGE` keys, all at the revision of
        the first page (one consistent snapshot). One range request for everything made the
        gateway's JSON reply for 10,000 endpoints (~20 MB of base64 strings and dicts) live at
        once beside the decoded bodies: the peak that set the agent's RSS."""
        prefix = _prefix_for(kind, namespace)
        payload: dict[str, Any] = {"key": _b64(prefix), "range_end": _range_end(prefix),
                                   "limit": LIST_PAGE}
        items: list[Body] = []
        revision = ""
        while True:
            result = self._post(f"list {kind.plural}", "/kv/range", payload)
            kvs = result.get("kvs") or []
            items += [self._decode(kv) for kv in kvs]
            if not revision:
                revision = str(result["header"]["revision"])
                payload["revision"] = revision  # the next pages from the same snapshot
            if not result.get("more") or not kvs:
                return Listing(items=items, revision=revision)
            payload["key"] = _b64(base64.b64decode(kvs[-1]["key"]) + b"\x00")

    # -- writes -----------------------------------------------------------------------------
    def _txn(
        self, what: str, *, compare: dict[str, Any], success: dict[str, Any], key: str
    ) -> tuple[bool, dict[str, Any]]:
        """One compare-and-act transaction; on failure the current kv (if any) is returned."""
        txn = {
            "compare": [compare],
            "success": [success],
            "failure": [{"request_range": {"key": _b64(key)}}],
        }
        result = self._post(what, "/kv/txn", txn)
        return bool(result.get("succeeded", False)), result

    @staticmethod
    def _failed_kv(result: Mapping[str, Any]) -> dict[str, Any] | None:
        responses = result.get("responses") or [{}]
        kvs = (responses[0].get("response_range") or {}).get("kvs") or []
        return kvs[0] if kvs else None

    def create(self, body: Body) -> Body:
        kind = self._kind_of(body)
        _, namespace, name = body_key(body)
        key = key_for(kind, name, namespace or None)
        stored = copy.deepcopy(body)
        stored.setdefault("apiVersion", API_V3)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault(
            "creationTimestamp",
            datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        ok, result = self._txn(
            f"create {kind.name} {name!r}",
            compare={"key": _b64(key), "target": "CREATE", "result": "EQUAL",
                     "create_revision": 0},
            success={"request_put": {"key": _b64(key), "value": self._encode(stored)}},
            key=key,
        )
        if not ok:
            raise AlreadyExists(kind.name, name, namespace or None)
        meta["resourceVersion"] = str(result["header"]["revision"])
        return stored

    def update(self, body: Body) -> Body:
        kind = self._kind_of(body)
        _, namespace, name = body_key(body)
        key = key_for(kind, name, namespace or None)
        body = self._keep_identity(kind, body, name, namespace or None)
        wanted = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if wanted:
            compare = {"key": _b64(key), "target": "MOD", "result": "EQUAL",
                       "mod_revision": int(wanted)}
        else:
            compare = {"key": _b64(key), "target": "CREATE", "result": "GREATER",
                       "create_revision": 0}
        ok, result = self._txn(
            f"update {kind.name} {name!r}",
            compare=compare,
            success={"request_put": {"key": _b64(key), "value": self._encode(body)}},
            key=key,
        )
        if not ok:
            current = self._failed_kv(result)
            if current is None:
                raise NotFound(kind.name, name, namespace or None)
            raise Conflict(
                kind.name, name, f"given {wanted}, stored {current['mod_revision']}"
            )
        stored = copy.deepcopy(body)
        stored.setdefault("metadata", {})["resourceVersion"] = str(result["header"]["revision"])
        return stored

    def _keep_identity(self, kind: Kind, body: Body, name: str, namespace: str | None) -> Body:
        """uid and creationTimestamp survive an update that omits them, as on Kubernetes."""
        meta = body.get("metadata") or {}
        if meta.get("uid") and meta.get("creationTimestamp"):
            return body
        try:
            current = self.get(kind, name, namespace)["metadata"]
        except NotFound:
            return body  # the transaction reports it
        kept = copy.deepcopy(body)
        for field in ("uid", "creationTimestamp"):
            if field in current and not meta.get(field):
                kept.setdefault("metadata", {})[field] = current[field]
        return kept

    def delete(
        self, kind: Kind, name: str, namespace: str | None = None, *, resource_version: str = ""
    ) -> Body:
        key = key_for(kind, name, namespace)
        if resource_version:
            compare = {"key": _b64(key), "target": "MOD", "result": "EQUAL",
                       "mod_revision": int(resource_version)}
        else:
            compare = {"key": _b64(key), "target": "CREATE", "result": "GREATER",
                       "create_revision": 0}
        ok, result = self._txn(
            f"delete {kind.name} {name!r}",
            compare=compare,
            success={"request_delete_range": {"key": _b64(key), "prev_kv": True}},
            key=key,
        )
        if not ok:
            current = self._failed_kv(result)
            if current is None:
                raise NotFound(kind.name, name, namespace)
            raise Conflict(
                kind.name, name, f"given {resource_version}, stored {current['mod_revision']}"
            )
        deleted = result["responses"][0]["response_delete_range"]
        prev = (deleted.get("prev_kvs") or [None])[0]
        if prev is None:  # deleted by someone else between compare and act cannot happen in a txn
            raise NotFound(kind.name, name, namespace)
        return self._decode(prev)

    # -- watch ------------------------------------------------------------------------------
    def watch(
        self, kind: Kind, *, revision: str, stop: threading.Event | None = None
    ) -> Iterator[WatchEvent]:
        """Changes to `kind` after `revision`; reconnects quietly when an idle stream times out."""
        seen = int(revision or 0)
        while stop is None or not stop.is_set():
            try:
                for event in self._watch_once(kind, seen, stop):
                    seen = int(event.revision)
                    yield event
                return  # the stream ended because stop was set
            except requests.exceptions.ReadTimeout:
                continue  # idle for watch_idle_timeout: reopen from where we were

    def _watch_once(
        self, kind: Kind, seen: int, stop: threading.Event | None
    ) -> Iterator[WatchEvent]:
        prefix = _prefix_for(kind)
        request = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _range_end(prefix),
                "start_revision": seen + 1,
                "prev_kv": True,
                "progress_notify": True,
            }
        }
        with self._lock:
            client = self._clients[self._current]
        try:
            resp = self._session.post(
                client.get_url("/watch"),
                json=request,
                stream=True,
                timeout=(client.timeout, self._watch_idle_timeout),
            )
        except requests.exceptions.ConnectionError as exc:
            self._fail_over(client)
            raise DatastoreUnavailable(
                f"etcd watch {kind.plural} at {client.base_url}: {exc}"
            ) from exc
        if resp.status_code != 200:
            resp.close()
            raise DatastoreUnavailable(
                f"etcd watch {kind.plural} at {client.base_url}: HTTP {resp.status_code}"
            )
        with closing_on_stop(stop, resp.raw.shutdown, name=f"etcd-watch-{kind.plural}"):
            try:
                for line in resp.iter_lines(chunk_size=None):
                    if stop is not None and stop.is_set():
                        return
                    if not line.strip():
                        continue
                    chunk = json.loads(line)
                    if "error" in chunk:
                        raise DatastoreUnavailable(
                            f"etcd watch {kind.plural}: {chunk['error'].get('message', chunk)}"
                        )
                    yield from self._events(kind, chunk.get("result") or {})
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                if stop is not None and stop.is_set():
                    return
                if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
                    raise requests.exceptions.ReadTimeout(str(exc)) from exc
                self._fail_over(client)
                raise DatastoreUnavailable(
                    f"etcd watch {kind.plural} at {client.base_url} lost: {exc}"
                ) from exc
            finally:
                resp.close()
        if stop is None or not stop.is_set():
            self._fail_over(client)
            raise DatastoreUnavailable(f"etcd watch {kind.plural} at {client.base_url} closed")

    def _fail_over(self, client: etcd3gw.Etcd3Client) -> None:
        with self._lock:
            if self._clients[self._current] is client:
                self._current = (self._current + 1) % len(self._clients)

    def _events(self, kind: Kind, result: Mapping[str, Any]) -> Iterator[WatchEvent]:
        compact = int(result.get("compact_revision") or 0)
        if result.get("canceled"):
            if compact:
                raise Compacted(
                    f"etcd watch {kind.plural}: revision compacted (oldest kept {compact})"
                )
            raise DatastoreUnavailable(
                f"etcd watch {kind.plural} cancelled: {result.get('cancel_reason', '')}"
            )
        for ev in result.get("events") or []:
            kv = ev["kv"]
            rev = str(kv["mod_revision"])
            if ev.get("type") == "DELETE":
                prev = ev.get("prev_kv")
                body = self._decode(prev) if prev else self._body_from_key(kind, kv["key"])
                body["metadata"]["resourceVersion"] = rev
                yield WatchEvent("DELETED", body, rev, kind.name)
            else:
                created = int(kv.get("create_revision", 0)) == int(kv["mod_revision"])
                yield WatchEvent("ADDED" if created else "MODIFIED", self._decode(kv), rev,
                                 kind.name)

    @staticmethod
    def _body_from_key(kind: Kind, b64key: str) -> Body:
        """A minimal body naming a deleted resource whose last value etcd no longer has."""
        parts = base64.b64decode(b64key).decode().split("/")
        meta: dict[str, Any] = {"name": parts[-1]}
        if kind.namespaced:
            meta["namespace"] = parts[-2]
        return {"apiVersion": API_V3, "kind": kind.name, "metadata": meta}

    # -- secrets and lifetime ---------------------------------------------------------------
    def read_secret(self, name: str, key: str) -> str | None:
        return self._env.get(secret_env_name(name, key))

    def close(self) -> None:
        self._session.close()
