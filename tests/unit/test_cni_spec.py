"""CNI 1.0.0 I/O: environment, network config, results and error objects."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from wren.cni.dataplane import veth_name_for_workload
from wren.cni.plugin import endpoint_name, pod_mtu
from wren.cni.runtime import run
from wren.cni.spec import (
    CniEnv,
    CniError,
    CniInterface,
    CniIP,
    CniResult,
    NetConf,
    handle_id,
    parse_cni_env,
    parse_netconf,
)
from wren.errors import DatastoreUnavailable
from wren.ipam.allocator import NoFreeAddressesError

CONF = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "wren",
        "ipam": {"type": "wren-ipam"}, "datastore_type": "etcdv3",
        "etcd_endpoints": "http://127.0.0.1:1", "mtu": 1440, "nodename": "node1"}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/var/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
       "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"}


def test_env_is_parsed_with_kubernetes_args() -> None:
    cni = parse_cni_env(ENV)
    assert (cni.command, cni.container_id, cni.ifname) == ("ADD", "abc123", "eth0")
    assert cni.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert (cni.pod_namespace, cni.pod_name) == ("default", "web-0")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [({"CNI_COMMAND": "BOGUS"}, "CNI_COMMAND"),
     ({"CNI_CONTAINERID": ""}, "CNI_CONTAINERID"),
     ({"CNI_NETNS": ""}, "CNI_NETNS"),
     ({"CNI_IFNAME": "a-very-long-interface"}, "15 characters"),
     ({"CNI_ARGS": "novalue"}, "KEY=VALUE")],
)
def test_bad_env_is_error_4_naming_the_variable(change: dict[str, str], fragment: str) -> None:
    with pytest.raises(CniError) as err:
        parse_cni_env({**ENV, **change})
    assert err.value.code == 4 and fragment in str(err.value)


def test_del_needs_no_netns() -> None:
    assert parse_cni_env({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).netns == ""


def test_netconf_reads_calico_field_names() -> None:
    conf = parse_netconf(json.dumps({**CONF, "ipam": {"type": "wren-ipam", "assign_ipv6": "true",
                                                      "ipv4_pools": ["pool-a"]}}))
    assert conf.mtu == 1440 and conf.nodename == "node1"
    assert conf.ipam.assign_ipv4 and conf.ipam.assign_ipv6
    assert conf.ipam.ipv4_pools == ("pool-a",)


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [("not json", 6, "not JSON"),
     (json.dumps({**CONF, "cniVersion": "9.9.9"}), 1, "9.9.9"),
     (json.dumps({**CONF, "mtu": 20}), 7, "field mtu"),
     (json.dumps({**CONF, "ipam": {"type": "x", "assign_ipv4": "yes"}}), 7, "assign_ipv4"),
     (json.dumps({k: v for k, v in CONF.items() if k != "name"}), 7, "field name")],
)
def test_bad_config_gives_the_spec_code(data: str, code: int, fragment: str) -> None:
    with pytest.raises(CniError) as err:
        parse_netconf(data)
    assert err.value.code == code and fragment in str(err.value)


def test_result_1_0_0_has_interface_index_and_no_ip_version() -> None:
    res = CniResult(
        interfaces=(CniInterface("cali0123456789a", "ee:ee:ee:ee:ee:ee"),
                    CniInterface("eth0", "02:00:00:00:00:01", "/var/run/netns/x")),
        ips=(CniIP(ipaddress.ip_interface("10.0.0.5/32"), interface=1),),
        routes=(("0.0.0.0/0", ""),),
    )
    body = res.to_json("1.0.0")
    assert body == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"},
                       {"name": "eth0", "mac": "02:00:00:00:00:01",
                        "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "10.0.0.5/32", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }
    assert res.to_json("0.4.0")["ips"][0]["version"] == "4"
    assert CniResult.from_json(body) == res


def test_error_object_has_code_msg_details() -> None:
    err = CniError(11, "try again later", "etcd down")
    assert err.to_json() == {"cniVersion": "1.0.0", "code": 11, "msg": "try again later",
                             "details": "etcd down"}


def test_names_follow_calico() -> None:
    assert handle_id("k8s-pod-network", "abc") == "k8s-pod-network.abc"
    name = veth_name_for_workload("default", "web-0")
    assert name == "cali" + hashlib.sha1(b"default.web-0").hexdigest()[:11]
    assert len(name) == 15
    assert endpoint_name(node="node-1", orchestrator="k8s", workload="web-0",
                         endpoint="eth0") == "node--1-k8s-web--0-eth0"


def test_mtu_from_config_else_agent_file_else_1500(tmp_path: Path) -> None:
    env = {"WREN_STATE_DIR": str(tmp_path)}
    conf = parse_netconf(json.dumps({**CONF, "mtu": 0}))
    assert pod_mtu(conf, "node1", env) == 1500
    (tmp_path / "mtu").write_text("1450\n")
    assert pod_mtu(conf, "node1", env) == 1450
    assert pod_mtu(parse_netconf(json.dumps(CONF)), "node1", env) == 1440


def _run(handler: Any, env: Mapping[str, str] = ENV) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = run(handler, env=env, stdin=io.StringIO(json.dumps(CONF)), stdout=out)
    return code, json.loads(out.getvalue()) if out.getvalue() else {}


def test_version_command_lists_supported_versions() -> None:
    code, body = _run(lambda *a: None, {"CNI_COMMAND": "VERSION"})
    assert code == 0 and "1.0.0" in body["supportedVersions"]


def test_datastore_down_is_error_11() -> None:
    def handler(cni: CniEnv, conf: NetConf, env: Mapping[str, str]) -> None:
        raise DatastoreUnavailable("etcd at 127.0.0.1:1 refused the connection")

    code, body = _run(handler)
    assert code == 1 and body["code"] == 11 and "refused" in body["details"]


def test_exhausted_pool_is_an_error_that_says_so() -> None:
    def handler(cni: CniEnv, conf: NetConf, env: Mapping[str, str]) -> None:
        raise NoFreeAddressesError("no free IPv4 address for node 'node1' in pools p")

    code, body = _run(handler)
    assert code == 1 and body["code"] == 100 and body["msg"] == "no free IP address"
