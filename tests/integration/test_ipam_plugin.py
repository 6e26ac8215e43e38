"""The `wren-ipam` executable on its own (as a main plugin like bridge would delegate to it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cni_support import WREN_EXE, netconf
from tests.servers import EtcdServer
from wren.datastore.etcd import EtcdBackend
from wren.kinds import kind_by_name

pytestmark = pytest.mark.integration

WREN_IPAM_EXE: Path = WREN_EXE.parent / "wren-ipam"


def ipam(command: str, conf: dict[str, Any], cid: str = "ctr1") -> tuple[int, dict[str, Any]]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command,
           "CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/unused", "CNI_IFNAME": "eth0",
           "CNI_PATH": str(WREN_IPAM_EXE.parent),
           "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"}
    proc = subprocess.run([str(WREN_IPAM_EXE)], input=json.dumps(conf), env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else {})


def test_add_is_idempotent_check_confirms_and_del_releases(etcd_server: EtcdServer) -> None:
    db = EtcdBackend([etcd_server.endpoint])
    try:
        db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                   "metadata": {"name": "pool1"},
                   "spec": {"cidr": "10.87.0.0/24", "blockSize": 26}})
        conf = netconf(endpoint=etcd_server.endpoint, node="n1")
        code, first = ipam("ADD", conf)
        assert code == 0, first
        assert [i["address"].endswith("/32") for i in first["ips"]] == [True]
        assert "interfaces" not in first
        code, again = ipam("ADD", conf)
        assert code == 0 and again["ips"] == first["ips"]
        assert ipam("CHECK", {**conf, "prevResult": first}) == (0, {})
        assert ipam("DEL", conf) == (0, {})
        assert ipam("DEL", conf) == (0, {})
        code, body = ipam("CHECK", {**conf, "prevResult": first})
        assert code == 1 and body["code"] == 102 and "does not hold" in body["details"]
        assert db.list(kind_by_name("IPAMHandle")).items == []
    finally:
        db.close()
