"""The `wren` CNI plugin as a runtime runs it: real etcd, real namespaces, real kernel."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cni_support import (
    WREN_EXE,
    Lab,
    PluginRun,
    lab_for,
    links,
    netconf,
    ping,
    run_plugin,
    sh,
)
from tests.servers import EtcdServer
from wren.datastore.etcd import EtcdBackend
from wren.kinds import kind_by_name

pytestmark = pytest.mark.integration

K_BLOCK = kind_by_name("IPAMBlock")
K_HANDLE = kind_by_name("IPAMHandle")
K_WEP = kind_by_name("WorkloadEndpoint")


@pytest.fixture
def db(etcd_server: EtcdServer) -> Iterator[EtcdBackend]:
    backend = EtcdBackend([etcd_server.endpoint])
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def lab(etcd_server: EtcdServer) -> Iterator[Lab]:
    with lab_for(etcd_server.endpoint) as lab:
        yield lab


def seed(db: EtcdBackend, *, cidr: str, block_size: int, nodes: list[str]) -> None:
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
               "metadata": {"name": "pool1"},
               "spec": {"cidr": cidr, "blockSize": block_size, "ipipMode": "Never",
                        "vxlanMode": "Never", "natOutgoing": False,
                        "nodeSelector": "all()"}})
    for n in nodes:
        db.create({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                   "metadata": {"name": n}, "spec": {}})


def add(lab: Lab, node_ns: str, node: str, i: int, *, netns: str | None = None) -> tuple[
        PluginRun, str, str]:
    netns = netns or lab.pod()
    cid = f"c{lab.tag}{node}{i:03d}"
    res = run_plugin("ADD", node_ns=node_ns, conf=netconf(endpoint=lab.etcd_endpoint, node=node),
                     container_id=cid, netns=netns, pod=f"pod-{node}-{i}")
    return res, cid, netns


def delete(lab: Lab, node_ns: str, node: str, i: int, cid: str, netns: str) -> PluginRun:
    return run_plugin("DEL", node_ns=node_ns,
                      conf=netconf(endpoint=lab.etcd_endpoint, node=node),
                      container_id=cid, netns=netns, pod=f"pod-{node}-{i}")


def pod_ip(res: PluginRun) -> str:
    return str(ipaddress.ip_interface(res.body["ips"][0]["address"]).ip)


def block_owner(db: EtcdBackend, ip: str) -> str:
    for b in db.list(K_BLOCK).items:
        if ipaddress.ip_address(ip) in ipaddress.ip_network(b["spec"]["cidr"]):
            return str(b["spec"]["affinity"])
    raise AssertionError(f"{ip} is in no block")


def allocated(db: EtcdBackend) -> int:
    return sum(sum(a is not None for a in b["spec"]["allocations"]) for b in db.list(K_BLOCK).items)


def test_fifty_concurrent_adds_on_one_node_unique_reachable_then_deleted_twice(
    db: EtcdBackend, lab: Lab
) -> None:
    seed(db, cidr="10.77.0.0/22", block_size=26, nodes=["n1"])
    node_ns = lab.node("n1")
    netnses = [lab.pod() for _ in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda i: add(lab, node_ns, "n1", i, netns=netnses[i]),
                                range(50)))
    failed = [(r.code, r.body, r.stderr[-500:]) for r, _, _ in results if r.code != 0]
    assert failed == []
    ips = [pod_ip(r) for r, _, _ in results]
    assert len(set(ips)) == 50
    assert {block_owner(db, ip) for ip in ips} == {"host:n1"}
    first = results[0][0].body
    assert first["cniVersion"] == "1.0.0"
    assert first["interfaces"][1]["sandbox"] == netnses[0] and first["ips"][0]["interface"] == 1
    assert first["ips"][0]["address"].endswith("/32")
    unreachable = [ip for ip in ips if not ping(node_ns, ip)]
    assert unreachable == []
    assert len(links(node_ns)) == 50
    assert len(db.list(K_WEP).items) == 50

    with ThreadPoolExecutor(max_workers=50) as pool:
        dels = list(pool.map(lambda i: delete(lab, node_ns, "n1", i, results[i][1], netnses[i]),
                             range(50)))
    assert [(d.code, d.body) for d in dels if d.code != 0] == []
    again = delete(lab, node_ns, "n1", 0, results[0][1], netnses[0])
    assert again.code == 0, again.body
    assert links(node_ns) == []
    assert db.list(K_HANDLE).items == [] and db.list(K_WEP).items == []
    assert allocated(db) == 0
    routes = sh("ip", "-n", node_ns, "route", "show", "proto", "80").stdout
    assert routes.strip() == ""


def test_adds_on_several_nodes_at_once_use_each_nodes_own_blocks(
    db: EtcdBackend, lab: Lab
) -> None:
    nodes = ["n1", "n2", "n3"]
    seed(db, cidr="10.78.0.0/24", block_size=28, nodes=nodes)
    node_ns = {n: lab.node(n) for n in nodes}
    jobs = [(n, i, lab.pod()) for n in nodes for i in range(6)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda j: (j[0], add(lab, node_ns[j[0]], j[0], j[1],
                                                      netns=j[2])[0]), jobs))
    assert [(r.code, r.body) for _, r in results if r.code != 0] == []
    ips = [pod_ip(r) for _, r in results]
    assert len(set(ips)) == len(jobs)
    for node, r in results:
        assert block_owner(db, pod_ip(r)) == f"host:{node}"
        assert ping(node_ns[node], pod_ip(r))


def test_exhausted_pool_is_a_cni_error_that_says_so_and_leaks_nothing(
    db: EtcdBackend, lab: Lab
) -> None:
    seed(db, cidr="10.79.0.0/30", block_size=30, nodes=["n1"])
    node_ns = lab.node("n1")
    for i in range(4):
        assert add(lab, node_ns, "n1", i)[0].code == 0
    res, cid, netns = add(lab, node_ns, "n1", 4)
    assert res.code != 0
    assert res.body["code"] == 100 and res.body["msg"] == "no free IP address"
    assert "10.79.0.0/30" in res.body["details"]
    assert len(links(node_ns)) == 4
    assert sh("ip", "netns", "exec", netns.rsplit("/", 1)[1], "ip", "-o", "link",
              "show").stdout.count("eth0") == 0
    handles = {h["spec"]["handleID"] for h in db.list(K_HANDLE).items}
    assert f"k8s-pod-network.{cid}" not in handles and len(handles) == 4
    assert len(db.list(K_WEP).items) == 4 and allocated(db) == 4


def test_missing_netns_is_error_3_and_allocates_nothing(db: EtcdBackend, lab: Lab) -> None:
    seed(db, cidr="10.80.0.0/24", block_size=26, nodes=["n1"])
    node_ns = lab.node("n1")
    res, _, _ = add(lab, node_ns, "n1", 0, netns=f"/var/run/netns/{lab.tag}-absent")
    assert res.code != 0 and res.body["code"] == 3
    assert db.list(K_HANDLE).items == [] and allocated(db) == 0


def test_datastore_down_before_add_is_error_11_and_leaves_no_interface(
    db: EtcdBackend, lab: Lab, etcd_server: EtcdServer
) -> None:
    seed(db, cidr="10.81.0.0/24", block_size=26, nodes=["n1"])
    node_ns = lab.node("n1")
    etcd_server.stop()
    try:
        res, cid, netns = add(lab, node_ns, "n1", 0)
    finally:
        etcd_server.start()
    assert res.code != 0 and res.body["code"] == 11, res.body
    assert links(node_ns) == []
    assert delete(lab, node_ns, "n1", 0, cid, netns).code == 0
    assert db.list(K_HANDLE).items == [] and allocated(db) == 0


def test_datastore_failing_during_adds_leaks_nothing(
    db: EtcdBackend, lab: Lab, etcd_server: EtcdServer
) -> None:
    seed(db, cidr="10.82.0.0/24", block_size=26, nodes=["n1"])
    node_ns = lab.node("n1")
    netnses = [lab.pod() for _ in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(add, lab, node_ns, "n1", i, netns=netnses[i]) for i in range(10)]
        # Stop etcd as soon as the first ADD has finished, while the others run.
        deadline = time.monotonic() + 60
        while not db.list(K_WEP).items and time.monotonic() < deadline:
            time.sleep(0.02)
        etcd_server.stop()
        results = [f.result() for f in futures]
    etcd_server.start()
    ok = [(i, r) for i, r in enumerate(results) if r[0].code == 0]
    bad = [(i, r) for i, r in enumerate(results) if r[0].code != 0]
    assert all(r[0].body["code"] in (11, 101, 5) for _, r in bad), [r[0].body for _, r in bad]
    # No interface of a failed ADD survives, even before anyone calls DEL.
    assert len(links(node_ns)) == len(ok)
    # The runtime calls DEL after every failed ADD; after that nothing of them remains.
    for i, (_, cid, netns) in bad:
        assert delete(lab, node_ns, "n1", i, cid, netns).code == 0
    handles = {h["spec"]["handleID"] for h in db.list(K_HANDLE).items}
    assert handles == {f"k8s-pod-network.{r[1]}" for _, r in ok}
    assert allocated(db) == len(ok) and len(db.list(K_WEP).items) == len(ok)


def test_check_passes_then_reports_a_missing_host_route(db: EtcdBackend, lab: Lab) -> None:
    seed(db, cidr="10.83.0.0/24", block_size=26, nodes=["n1"])
    node_ns = lab.node("n1")
    res, cid, netns = add(lab, node_ns, "n1", 0)
    assert res.code == 0
    conf: dict[str, Any] = netconf(endpoint=lab.etcd_endpoint, node="n1", prevResult=res.body)
    check = run_plugin("CHECK", node_ns=node_ns, conf=conf, container_id=cid, netns=netns,
                       pod="pod-n1-0")
    assert check.code == 0, check.body
    host_if = res.body["interfaces"][0]["name"]
    sh("ip", "-n", node_ns, "route", "del", f"{pod_ip(res)}/32", "dev", host_if)
    check = run_plugin("CHECK", node_ns=node_ns, conf=conf, container_id=cid, netns=netns,
                       pod="pod-n1-0")
    assert check.code != 0
    assert f"host route {pod_ip(res)}/32 dev {host_if} is missing" in check.body["details"]


def test_other_ipam_types_are_delegated_through_cni_path(
    db: EtcdBackend, lab: Lab, tmp_path: Path
) -> None:
    seed(db, cidr="10.85.0.0/24", block_size=26, nodes=["n1"])
    node_ns = lab.node("n1")
    (tmp_path / "site-ipam").symlink_to(WREN_EXE.parent / "wren-ipam")
    conf = netconf(endpoint=lab.etcd_endpoint, node="n1", ipam={"type": "site-ipam"})
    netns = lab.pod()
    res = run_plugin("ADD", node_ns=node_ns, conf=conf, container_id="deleg1", netns=netns,
                     pod="web-0", cni_path=f"/nonexistent:{tmp_path}")
    assert res.code == 0, res.body
    assert ping(node_ns, pod_ip(res))
    assert [h["spec"]["handleID"] for h in db.list(K_HANDLE).items] == ["k8s-pod-network.deleg1"]
    res = run_plugin("DEL", node_ns=node_ns, conf=conf, container_id="deleg1", netns=netns,
                     pod="web-0", cni_path=str(tmp_path))
    assert res.code == 0, res.body
    assert db.list(K_HANDLE).items == [] and links(node_ns) == []
    missing = run_plugin("ADD", node_ns=node_ns, conf={**conf, "ipam": {"type": "absent"}},
                         container_id="deleg2", netns=netns, pod="web-1",
                         cni_path=str(tmp_path))
    assert missing.code != 0 and missing.body["code"] == 7
    assert "'absent' not found" in missing.body["msg"]


def test_dual_stack_pod_answers_ipv4_and_ipv6_right_after_add(db: EtcdBackend, lab: Lab) -> None:
    seed(db, cidr="10.86.0.0/24", block_size=26, nodes=["n1"])
    db.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
               "metadata": {"name": "pool6"}, "spec": {"cidr": "fd00:86::/120",
                                                      "blockSize": 122}})
    node_ns = lab.node("n1")
    conf = netconf(endpoint=lab.etcd_endpoint, node="n1",
                   ipam={"type": "wren-ipam", "assign_ipv6": "true"})
    res = run_plugin("ADD", node_ns=node_ns, conf=conf, container_id="dual1", netns=lab.pod(),
                     pod="web-0")
    assert res.code == 0, res.body
    addrs = [ipaddress.ip_interface(i["address"]) for i in res.body["ips"]]
    assert sorted((a.version, a.network.prefixlen) for a in addrs) == [(4, 32), (6, 128)]
    assert {r["dst"] for r in res.body["routes"]} == {"0.0.0.0/0", "::/0"}
    assert [str(a.ip) for a in addrs if not ping(node_ns, str(a.ip))] == []
    check = run_plugin("CHECK", node_ns=node_ns, conf={**conf, "prevResult": res.body},
                       container_id="dual1", netns=res.body["interfaces"][1]["sandbox"],
                       pod="web-0")
    assert check.code == 0, check.body


def test_kernel_failure_after_allocation_rolls_the_allocation_back(
    db: EtcdBackend, lab: Lab, tmp_path: Path
) -> None:
    seed(db, cidr="10.88.0.0/24", block_size=26, nodes=["n1"])
    node_ns = lab.node("n1")
    not_a_netns = tmp_path / "not-a-netns"
    not_a_netns.write_text("")
    res, _, _ = add(lab, node_ns, "n1", 0, netns=str(not_a_netns))
    assert res.code != 0 and res.body["code"] == 5, res.body
    assert "veth" in res.body["details"]
    assert links(node_ns) == []
    assert db.list(K_HANDLE).items == [] and allocated(db) == 0
    assert db.list(K_WEP).items == []


def test_del_with_datastore_down_removes_the_interface_and_asks_to_retry(
    db: EtcdBackend, lab: Lab, etcd_server: EtcdServer
) -> None:
    seed(db, cidr="10.89.0.0/24", block_size=26, nodes=["n1"])
    node_ns = lab.node("n1")
    res, cid, netns = add(lab, node_ns, "n1", 0)
    assert res.code == 0
    etcd_server.stop()
    try:
        down = delete(lab, node_ns, "n1", 0, cid, netns)
    finally:
        etcd_server.start()
    assert down.code != 0 and down.body["code"] == 11
    assert links(node_ns) == []
    assert delete(lab, node_ns, "n1", 0, cid, netns).code == 0
    assert db.list(K_HANDLE).items == [] and db.list(K_WEP).items == [] and allocated(db) == 0
