"""Fixtures everyone shares: real etcd and kube-apiserver on loopback (see tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import KUBE_APISERVER_BINARY, EtcdServer, KubeAPIServer


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    """A fresh etcd for one test (tests that stop, restart or compact it)."""
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="session")
def shared_etcd_server() -> Iterator[EtcdServer]:
    """One etcd for the whole session; tests must not stop it and should `wipe()` what they need."""
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="session")
def kube_apiserver() -> Iterator[KubeAPIServer]:
    """One kube-apiserver (with its own etcd and every CRD) for the session: a boot is slow."""
    if not KUBE_APISERVER_BINARY.exists():
        pytest.fail(f"{KUBE_APISERVER_BINARY} missing: run `make kube-apiserver` first")
    with KubeAPIServer() as server:
        yield server
