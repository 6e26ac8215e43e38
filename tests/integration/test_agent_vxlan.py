"""The agent in real namespaces with a real etcd: VXLAN across two subnets, drift repair, no
churn on restart, foreign state untouched, invalid objects ignored, datastore outages."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cluster import LabCluster
from tests.integration.agent_support import agent_cluster, ip, routes, start_agent, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    with agent_cluster("vxlan", tmp_path_factory.mktemp("vxlan")) as c:
        for node in c.topo.nodes:
            c.add_pod(node, 1)
        yield c


def pods_talk(c: LabCluster) -> bool:
    a, b = c.pods[0], c.pods[1]
    return c.ping(a.netns, b.ip) and c.ping(b.netns, a.ip)


def test_pods_on_two_subnets_talk_through_vxlan(cluster: LabCluster) -> None:
    wait_for(lambda: pods_talk(cluster), what="pod-to-pod over VXLAN")
    n1 = cluster.topo.nodes[0]
    dev = ip(n1.netns, "-d", "link", "show", "vxlan.calico")
    assert "vxlan id 4096" in dev and "dstport 4789" in dev and "nolearning" in dev
    remote = [r for r in routes(n1.netns) if "dev vxlan.calico" in r]
    assert len(remote) == 1 and "onlink" in remote[0]
    assert "PERMANENT" in ip(n1.netns, "neigh", "show", "dev", "vxlan.calico")
    assert "dst 10.0.2.11" in subprocess.run(
        ["bridge", "-n", n1.netns, "fdb", "show", "dev", "vxlan.calico"],
        capture_output=True, text=True, check=False).stdout
    own = [r for r in routes(n1.netns) if r.startswith("blackhole")]
    assert len(own) == 1
    pod_route = [r for r in routes(n1.netns) if "dev cali" in r]
    assert pod_route and "scope link" in pod_route[0]
    mtu_file = Path(cluster.node_env(n1)["WREN_STATE_DIR"]) / "mtu"
    assert mtu_file.read_text().strip() == "1450"


def test_a_route_deleted_by_hand_comes_back(cluster: LabCluster) -> None:
    wait_for(lambda: pods_talk(cluster), what="pods talking")
    n1 = cluster.topo.nodes[0]
    remote = next(r for r in routes(n1.netns) if "dev vxlan.calico" in r)
    subprocess.run(["ip", "-n", n1.netns, "route", "del", remote.split()[0]], check=True)
    wait_for(lambda: remote in routes(n1.netns), timeout=10, what="the agent to repair the route")


def test_foreign_routes_are_left_alone(cluster: LabCluster) -> None:
    n1 = cluster.topo.nodes[0]
    subprocess.run(["ip", "-n", n1.netns, "route", "add", "10.99.0.0/24", "via", "10.0.1.1",
                    "proto", "static"], check=True)
    subprocess.run(["ip", "-n", n1.netns, "route", "add", "10.65.250.0/24", "via", "10.0.1.1",
                    "proto", "boot"], check=True)  # inside the pool, but not ours
    subprocess.run(["ip", "-n", n1.netns, "link", "add", "foreign0", "type", "veth", "peer",
                    "name", "foreign1"], check=True)
    subprocess.run(["ip", "-n", n1.netns, "addr", "add", "192.168.77.1/24", "dev", "foreign0"],
                   check=True)
    # Force a full resync: restart the agent (its first act is a kernel dump).
    cluster.procs.stop(f"{n1.name}-agent")
    start_agent(cluster, n1)
    wait_for(lambda: pods_talk(cluster), what="pods talking after restart")
    time.sleep(2)
    table = ip(n1.netns, "route", "show")
    assert "10.99.0.0/24 via 10.0.1.1 dev eth0 proto static" in table
    assert "10.65.250.0/24 via 10.0.1.1 dev eth0 \n" in table  # proto boot: not printed
    assert "foreign0" in ip(n1.netns, "link", "show")
    assert "192.168.77.1/24" in ip(n1.netns, "addr", "show", "dev", "foreign0")


def test_agent_restart_changes_no_route(cluster: LabCluster) -> None:
    wait_for(lambda: pods_talk(cluster), what="pods talking")
    n1 = cluster.topo.nodes[0]
    before = routes(n1.netns)
    monitor = subprocess.Popen(["ip", "-n", n1.netns, "monitor", "route"],
                               stdout=subprocess.PIPE, text=True)
    try:
        cluster.procs.stop(f"{n1.name}-agent")
        start_agent(cluster, n1)
        wait_for(lambda: readiness(cluster, 0)[0] == 200, what="the new agent to be ready")
        time.sleep(2)
    finally:
        monitor.terminate()
        out, _ = monitor.communicate(timeout=5)
    churn = [line for line in out.splitlines() if "proto 80" in line or "blackhole" in line]
    assert churn == [], f"restart changed routes: {churn}"
    assert routes(n1.netns) == before


def readiness(cluster: LabCluster, index: int) -> tuple[int, dict[str, object]]:
    node = cluster.topo.nodes[index]
    code = (
        "import json,urllib.request,urllib.error,sys\n"
        f"url='http://{node.address.ip}:9099/readiness'\n"
        "try:\n r=urllib.request.urlopen(url,timeout=2)\n"
        " print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n"
        "except OSError: print(0); print('{}')\n"
    )
    out = subprocess.run(["ip", "netns", "exec", node.netns, "python3", "-c", code],
                         capture_output=True, text=True, check=False).stdout.split("\n", 1)
    return int(out[0] or 0), json.loads(out[1] or "{}")


def test_invalid_object_in_the_datastore_is_ignored_and_changes_nothing(
    cluster: LabCluster,
) -> None:
    wait_for(lambda: pods_talk(cluster), what="pods talking")
    n1 = cluster.topo.nodes[0]
    before = routes(n1.netns)
    bad = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
           "metadata": {"name": "lab-pool"},
           "spec": {"cidr": "10.65.0.0/16", "vxlanMode": "Sometimes", "ipipMode": "Never"}}
    key = "/calico/resources/v3/projectcalico.org/ippools/lab-pool"
    etcdctl = ["ip", "netns", "exec", cluster.topo.router_ns, "etcdctl", "--endpoints",
               cluster.topo.etcd_endpoint]
    good = subprocess.run([*etcdctl, "get", "--print-value-only", key], check=True,
                          capture_output=True, text=True).stdout.strip()
    # Written behind wrenctl's back, as a broken controller might.
    subprocess.run([*etcdctl, "put", key, json.dumps(bad)], check=True, capture_output=True)
    try:
        time.sleep(3)
        assert routes(n1.netns) == before
        assert pods_talk(cluster)
        log = cluster.procs.procs[f"{n1.name}-agent"].log.read_text()
        assert "ignoring invalid resource" in log and "vxlanMode" in log
    finally:
        subprocess.run([*etcdctl, "put", key, good], check=True, capture_output=True)


def test_datastore_down_keeps_the_dataplane_and_recovers(cluster: LabCluster) -> None:
    wait_for(lambda: pods_talk(cluster), what="pods talking")
    n1 = cluster.topo.nodes[0]
    before = routes(n1.netns)
    etcd = cluster.procs.procs["etcd"]
    cluster.procs.stop("etcd")
    try:
        time.sleep(3)
        assert routes(n1.netns) == before
        assert pods_talk(cluster)
        wait_for(lambda: "unreachable" in json.dumps(readiness(cluster, 0)[1]),
                 timeout=20, what="readiness to report the datastore outage")
    finally:
        cluster.start_etcd_again(etcd)
    wait_for(lambda: readiness(cluster, 0)[0] == 200, timeout=60,
             what="the agent to reconnect")
    pod = cluster.add_pod(cluster.topo.nodes[1], 2)  # a change after the outage propagates
    wait_for(lambda: cluster.ping(cluster.pods[0].netns, pod.ip), timeout=30,
             what="a pod created after the outage to be reachable")


def test_nat_outgoing_lets_pods_reach_a_host_with_no_route_back(cluster: LabCluster) -> None:
    wait_for(lambda: pods_talk(cluster), what="pods talking")
    pod = cluster.pods[0]
    inet = str(cluster.topo.inet_host)
    wait_for(lambda: cluster.ping(pod.netns, inet), timeout=20,
             what="a pod to reach the internet host through NAT")
    n1 = cluster.topo.nodes[0]
    # The internet host sees the node's address, not the pod's (it has no route to pods).
    assert udp_source(cluster.topo.inet_ns, pod.netns, inet) == str(n1.address.ip)
    nat = subprocess.run(["ip", "netns", "exec", n1.netns, "iptables-nft-save", "-t", "nat"],
                         capture_output=True, text=True, check=False).stdout
    assert "cali40masq-ipam-pools" in nat and "MASQUERADE" in nat

    cluster.wrenctl("patch", "ippool", "lab-pool", "-p", '{"spec":{"natOutgoing":false}}')
    try:
        wait_for(lambda: not cluster.ping(pod.netns, inet), timeout=20,
                 what="the internet host to become unreachable without NAT")
        assert pods_talk(cluster)  # pod-to-pod never depended on NAT
    finally:
        cluster.wrenctl("patch", "ippool", "lab-pool", "-p", '{"spec":{"natOutgoing":true}}')
    wait_for(lambda: cluster.ping(pod.netns, inet), timeout=20, what="NAT to come back")


def udp_source(recv_ns: str, send_ns: str, dst: str) -> str:
    """Send a UDP datagram from `send_ns` to `dst` and return the source the receiver saw.

    The receiver says when it is bound (a loaded machine can take seconds to start Python),
    and the datagram is re-sent until it arrives, so only a wrong source can fail this.
    """
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", recv_ns, "timeout", "60", "python3", "-c",
         "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
         "s.bind(('0.0.0.0',9999));print('ready',flush=True);"
         "d,addr=s.recvfrom(100);print(addr[0])"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready", "the UDP receiver did not start"
        for _ in range(10):
            subprocess.run(["ip", "netns", "exec", send_ns, "python3", "-c",
                            "import socket;socket.socket(socket.AF_INET,socket.SOCK_DGRAM)"
                            f".sendto(b'x',('{dst}',9999))"], check=True)
            try:
                out, _ = receiver.communicate(timeout=2)
                return out.strip()
            except subprocess.TimeoutExpired:
                continue
        return ""
    finally:
        if receiver.poll() is None:
            receiver.terminate()  # `timeout` passes it on to the Python it started
            receiver.wait()


def test_pod_to_pod_traffic_keeps_its_source_address(cluster: LabCluster) -> None:
    wait_for(lambda: pods_talk(cluster), what="pods talking")
    a, b = cluster.pods[0], cluster.pods[1]
    assert udp_source(b.netns, a.netns, b.ip) == a.ip


def test_prometheus_metrics_count_programmed_routes(cluster: LabCluster) -> None:
    wait_for(lambda: pods_talk(cluster), what="pods talking")
    node = cluster.topo.nodes[0]
    code = ("import urllib.request;print(urllib.request.urlopen("
            f"'http://{node.address.ip}:9091/metrics',timeout=3).read().decode())")
    text = subprocess.run(["ip", "netns", "exec", node.netns, "python3", "-c", code],
                          capture_output=True, text=True, check=True).stdout
    programmed = [line for line in text.splitlines()
                  if line.startswith('wren_routes_programmed{kind="all"}')]
    assert programmed and float(programmed[0].split()[-1]) >= 3  # pod, blackhole, remote block
    assert "wren_dataplane_apply_seconds_count" in text
    assert "wren_invalid_resources_total" in text
