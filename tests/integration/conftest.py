"""The `datastore` fixture: one real datastore per parameter (etcd, kubernetes), same tests.

`datastore.backend` is what the code under test talks to; `datastore.other()` opens a second,
independent connection (a second writer); `compact()`, `stop()` and `start()` act on the real
server underneath (for Kubernetes: the API server's own etcd, and the API server itself).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.servers import EtcdServer, KubeAPIServer
from wren.datastore.backend import Backend
from wren.datastore.connect import backend_from_env
from wren.kinds import KINDS


@dataclass
class Datastore:
    name: str  # "etcd" | "kubernetes"
    env: dict[str, str]
    etcd: EtcdServer
    kube: KubeAPIServer | None = None
    opened: list[Backend] = field(default_factory=list)

    def other(self) -> Backend:
        backend = backend_from_env(self.env)
        self.opened.append(backend)
        return backend

    def compact(self) -> int:
        return self.etcd.compact()

    def stop(self) -> None:
        if self.kube is not None:
            self.kube.stop()
        else:
            self.etcd.stop()

    def start(self) -> None:
        if self.kube is not None:
            self.kube.start()
        else:
            self.etcd.start()

    def close(self) -> None:
        for backend in self.opened:
            backend.close()


def _clean_kubernetes(kube: KubeAPIServer) -> None:
    """Remove what a test made on the shared API server: custom objects, pods, nodes."""
    session = kube.session()
    for kind in KINDS:
        if kind.k8s_source == "crd":
            session.delete(f"{kube.url}/apis/crd.projectcalico.org/v1/{kind.plural}", timeout=10)
    session.delete(f"{kube.url}/api/v1/namespaces/default/pods",
                   params={"gracePeriodSeconds": "0"}, timeout=10)
    session.delete(f"{kube.url}/api/v1/nodes", timeout=10)
    session.delete(f"{kube.url}/api/v1/namespaces/kube-system/secrets",
                   params={"labelSelector": "wren-test=true"}, timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pods = session.get(f"{kube.url}/api/v1/namespaces/default/pods", timeout=10).json()
        if not pods.get("items"):
            break
        time.sleep(0.1)


@pytest.fixture(params=["etcd", "kubernetes"])
def datastore(request: pytest.FixtureRequest) -> Iterator[Datastore]:
    if request.param == "etcd":
        with EtcdServer() as etcd:
            ds = Datastore("etcd", {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": etcd.endpoint},
                           etcd)
            try:
                yield ds
            finally:
                ds.close()
        return
    kube: KubeAPIServer = request.getfixturevalue("kube_apiserver")
    ds = Datastore("kubernetes", {"DATASTORE_TYPE": "kubernetes",
                                  "KUBECONFIG": str(kube.kubeconfig_path)}, kube.etcd, kube)
    try:
        yield ds
    finally:
        ds.close()
        if kube.proc is None:  # a test stopped it and failed before starting it again
            kube.start()
        _clean_kubernetes(kube)


@pytest.fixture
def backend(datastore: Datastore) -> Backend:
    return datastore.other()
