"""The installed `wrenctl` executable against a real etcd on loopback, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import EtcdServer, free_port

pytestmark = pytest.mark.integration

WRENCTL = Path(sys.executable).parent / "wrenctl"

POOLS = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: rack-b
  labels:
    rack: b
spec:
  cidr: 10.245.0.0/18
  vxlanMode: CrossSubnet
  nodeSelector: rack == 'b'
"""

INVALID = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: fine
spec:
  cidr: 192.168.0.0/16
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: too-big-blocks
spec:
  cidr: 172.16.0.0/16
  blockSize: 40
"""


def wrenctl(
    endpoint: str, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": endpoint}
    env.pop("KUBECONFIG", None)
    return subprocess.run([str(WRENCTL), *args], input=input, capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def specs(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["metadata"]["name"]: item["spec"] for item in listing["items"]}


def test_wrenctl_applies_pools_round_trips_yaml_and_refuses_an_invalid_pool(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    assert WRENCTL.exists(), f"{WRENCTL} not installed: pip install -e '.[test]'"
    endpoint = etcd_server.endpoint
    pools = tmp_path / "pools.yaml"
    pools.write_text(POOLS)

    applied = wrenctl(endpoint, "apply", "-f", str(pools))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout == "Successfully applied 2 'IPPool' resource(s)\n"

    got = wrenctl(endpoint, "get", "ippools", "-o", "yaml")
    assert got.returncode == 0, got.stderr
    listing = yaml.safe_load(got.stdout)
    assert listing["kind"] == "IPPoolList"
    stored = specs(listing)
    # Every field the user wrote comes back as written; Calico's defaults are filled in.
    for doc in yaml.safe_load_all(POOLS):
        assert stored[doc["metadata"]["name"]].items() >= doc["spec"].items()
    assert stored["rack-b"]["blockSize"] == 26
    assert next(i for i in listing["items"] if i["metadata"]["name"] == "rack-b")[
        "metadata"]["labels"] == {"rack": "b"}

    # What get printed is accepted by apply and changes nothing in the specs.
    reapplied = wrenctl(endpoint, "apply", "-f", "-", input=got.stdout)
    assert reapplied.returncode == 0, reapplied.stderr
    again = yaml.safe_load(wrenctl(endpoint, "get", "ippools", "-o", "yaml").stdout)
    assert specs(again) == stored

    table = wrenctl(endpoint, "get", "pool").stdout.splitlines()
    assert table[0].split() == ["NAME", "CIDR", "SELECTOR"]
    assert [row.split()[:2] for row in table[1:]] == [
        ["default-ipv4-ippool", "10.244.0.0/16"], ["rack-b", "10.245.0.0/18"]]

    # An invalid pool next to a valid one: refused, the field named, the store untouched.
    revision = etcd_server.revision()
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID)
    refused = wrenctl(endpoint, "apply", "-f", str(bad))
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert f"{bad} document 2: IPPool 'too-big-blocks': field spec.blockSize:" in refused.stderr
    assert etcd_server.revision() == revision
    after = yaml.safe_load(wrenctl(endpoint, "get", "ippools", "-o", "yaml").stdout)
    assert specs(after) == stored


def test_wrenctl_says_which_etcd_endpoint_it_cannot_reach() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = wrenctl(endpoint, "get", "ippools")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot reach the datastore")
    assert endpoint in result.stderr
    assert "Traceback" not in result.stderr
