"""Pick and open the datastore from the environment, with Calico's variable names.

    DATASTORE_TYPE   kubernetes (default) | etcdv3
    KUBECONFIG       kubeconfig file; unset: the in-cluster service account
    WREN_NAMESPACE   namespace of the Secrets read_secret() reads (default kube-system)
    ETCD_ENDPOINTS   comma list of http(s)://host:port (required for etcdv3)
    ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE   TLS for etcd (cert and key go together)

A bad value is a ValueError that names the variable, so the agent can say exactly what to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from wren.datastore.backend import Backend

__all__ = ["backend_from_env"]

DATASTORE_TYPES = ("kubernetes", "etcdv3")


def backend_from_env(env: Mapping[str, str] | None = None) -> Backend:
    """The datastore the environment describes (see the module docstring)."""
    env = os.environ if env is None else env
    kind = (env.get("DATASTORE_TYPE") or "kubernetes").strip().lower()
    if kind == "etcdv3":
        return _etcd(env)
    if kind == "kubernetes":
        return _kubernetes(env)
    raise ValueError(
        f"DATASTORE_TYPE={env.get('DATASTORE_TYPE')!r} is not one of {', '.join(DATASTORE_TYPES)}"
    )


def _existing_file(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    if not value:
        return None
    if not Path(value).is_file():
        raise ValueError(f"{name}={value!r}: no such file")
    return value


def _etcd(env: Mapping[str, str]) -> Backend:
    from wren.datastore.etcd import EtcdBackend, EtcdTLS

    endpoints = [e.strip() for e in (env.get("ETCD_ENDPOINTS") or "").split(",") if e.strip()]
    if not endpoints:
        raise ValueError("ETCD_ENDPOINTS is required when DATASTORE_TYPE=etcdv3 "
                         "(comma list of http(s)://host:port)")
    tls = EtcdTLS(
        ca_cert=_existing_file(env, "ETCD_CA_CERT_FILE"),
        cert=_existing_file(env, "ETCD_CERT_FILE"),
        key=_existing_file(env, "ETCD_KEY_FILE"),
    )
    if bool(tls.cert) != bool(tls.key):
        raise ValueError("ETCD_CERT_FILE and ETCD_KEY_FILE must be set together")
    return EtcdBackend(endpoints, tls=tls, env=env)


def _kubernetes(env: Mapping[str, str]) -> Backend:
    from kubernetes import client, config

    from wren.datastore.kubernetes import KubernetesBackend

    configuration = client.Configuration()
    kubeconfig = (env.get("KUBECONFIG") or "").strip()
    try:
        if kubeconfig:
            path = kubeconfig.split(os.pathsep)[0]
            if not Path(path).is_file():
                raise ValueError(f"KUBECONFIG={kubeconfig!r}: no such file")
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=configuration)
        else:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
    except config.ConfigException as exc:
        where = f"KUBECONFIG={kubeconfig!r}" if kubeconfig else "KUBECONFIG (unset, in-cluster)"
        raise ValueError(f"{where}: cannot load Kubernetes client config: {exc}") from exc
    # Fail fast instead of urllib3's silent retries: the Watcher owns backoff.
    configuration.retries = 0
    namespace = (env.get("WREN_NAMESPACE") or "kube-system").strip()
    return KubernetesBackend(client.ApiClient(configuration), namespace=namespace)
