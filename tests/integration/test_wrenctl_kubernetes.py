"""The CRDs in a real kube-apiserver (v1.20.2, as built by tools/): accepted, enforced by the
server itself (what `kubectl apply` meets), every example admitted, and the installed `wrenctl`
working against the Kubernetes datastore."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.servers import KubeAPIServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WRENCTL = Path(sys.executable).parent / "wrenctl"
GROUP_URL = "/apis/crd.projectcalico.org/v1"


def _examples() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return docs


def _create(
    session: requests.Session, kube: KubeAPIServer, body: dict[str, Any], *, dry_run: bool
) -> requests.Response:
    """POST a resource in its CRD form, as kubectl does; dry-run leaves nothing behind."""
    from wren.kinds import kind_by_name

    kind = kind_by_name(body["kind"])
    crd_body = {**body, "apiVersion": "crd.projectcalico.org/v1"}
    ns = body["metadata"].get("namespace") or "default"
    where = f"/namespaces/{ns}" if kind.namespaced else ""
    url = f"{kube.url}{GROUP_URL}{where}/{kind.plural}"
    return session.post(url, json=crd_body, params={"dryRun": "All"} if dry_run else {},
                        timeout=10)


def test_every_crd_file_is_installed_and_none_had_to_be_generated(
    kube_apiserver: KubeAPIServer,
) -> None:
    assert kube_apiserver.generated_crds == []
    session = kube_apiserver.session()
    listed = session.get(f"{kube_apiserver.url}/apis/apiextensions.k8s.io/v1/"
                         "customresourcedefinitions", timeout=10).json()
    installed = {c["metadata"]["name"] for c in listed["items"]}
    files = {yaml.safe_load(p.read_text())["metadata"]["name"]
             for p in (ROOT / "crds").glob("*.yaml")}
    assert files <= installed
    for crd in listed["items"]:
        if crd["metadata"]["name"] in files:
            conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
            assert conditions.get("NonStructuralSchema") in (None, "False"), crd["metadata"]


@pytest.mark.parametrize("body", _examples(),
                         ids=lambda b: f"{b['kind']}/{b['metadata']['name']}")
def test_the_api_server_admits_every_example(
    kube_apiserver: KubeAPIServer, body: dict[str, Any]
) -> None:
    resp = _create(kube_apiserver.session(), kube_apiserver, body, dry_run=True)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(
    ("spec", "field"),
    [({"cidr": "10.1.0.0/16", "blockSize": 19}, "spec.blockSize"),
     ({"cidr": "10.1.0.0/16", "ipipMode": "Sometimes"}, "spec.ipipMode"),
     ({"cidr": "10.1.0.0"}, "spec.cidr"),
     ({"ipipMode": "Always"}, "spec.cidr")],
)
def test_the_api_server_refuses_an_invalid_pool_naming_the_field(
    kube_apiserver: KubeAPIServer, spec: dict[str, Any], field: str
) -> None:
    body = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
            "metadata": {"name": "bad-pool"}, "spec": spec}
    resp = _create(kube_apiserver.session(), kube_apiserver, body, dry_run=True)
    assert resp.status_code == 422, resp.text
    assert field in resp.json()["message"]


def test_wrenctl_on_the_kubernetes_datastore_applies_and_round_trips_pools(
    kube_apiserver: KubeAPIServer,
) -> None:
    env = {**os.environ, "DATASTORE_TYPE": "kubernetes",
           "KUBECONFIG": str(kube_apiserver.kubeconfig_path)}

    def wrenctl(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(WRENCTL), *args], input=input, capture_output=True,
                              text=True, env=env, timeout=60, check=False)

    names = ["default-ipv4-ippool", "rack-b-vxlan", "default-ipv6-ippool", "old-pool"]
    try:
        applied = wrenctl("apply", "-f", str(ROOT / "examples" / "ippools.yaml"))
        assert applied.returncode == 0, applied.stderr
        out = wrenctl("get", "ippools", "-o", "yaml")
        assert out.returncode == 0, out.stderr
        first = {i["metadata"]["name"]: i["spec"] for i in yaml.safe_load(out.stdout)["items"]}
        assert sorted(first) == sorted(names)
        again = wrenctl("apply", "-f", "-", input=out.stdout)
        assert again.returncode == 0, again.stderr
        second = yaml.safe_load(wrenctl("get", "ippools", "-o", "yaml").stdout)
        assert {i["metadata"]["name"]: i["spec"] for i in second["items"]} == first
        refused = wrenctl("patch", "ippool", "old-pool", "-p", '{"spec":{"blockSize":40}}')
        assert refused.returncode == 1
        assert "field spec.blockSize" in refused.stderr
    finally:
        wrenctl("delete", "ippool", *names, "--skip-not-exists")
