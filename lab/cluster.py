"""A whole Wren cluster in the lab topology: etcd, an external BIRD router, and per node a
`wren-agent`, a `wren-bgp` sidecar and pods made by the real CNI plugin.

Everything runs from this checkout's virtualenv; every process is started inside a namespace
made by `Topology` and stopped by PID. Per-node files live under the lab's work directory
(`WREN_RUN_DIR` / `WREN_STATE_DIR` per node), so nodes never collide on the shared filesystem.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.procs import ProcessGroup
from lab.topology import LabNode, Topology, netns_exec

__all__ = ["MODES", "LabCluster", "Pod"]

MODES = ("bgp", "rr", "vxlan", "vxlan-crosssubnet", "ipip", "ipip-crosssubnet")
POOL_CIDR = "10.65.0.0/16"
ROUTER_AS = 65000
NODE_AS = 64512
BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    node: str
    netns: str
    ip: str
    container_id: str
    ip6: str | None = None  # dual-stack pods (`add_pod(..., ipv6=True)`)


def _pool_modes(mode: str) -> tuple[str, str]:
    return {
        "bgp": ("Never", "Never"),
        "rr": ("Never", "Never"),
        "vxlan": ("Never", "Always"),
        "vxlan-crosssubnet": ("Never", "CrossSubnet"),
        "ipip": ("Always", "Never"),
        "ipip-crosssubnet": ("CrossSubnet", "Never"),
    }[mode]


def resources_for(mode: str, topo: Topology, *, nat_outgoing: bool = True) -> list[dict[str, Any]]:
    """The Calico resources a user would `kubectl apply` for this mode."""
    ipip, vxlan = _pool_modes(mode)
    docs: list[dict[str, Any]] = [
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
         "metadata": {"name": "lab-pool"},
         "spec": {"cidr": POOL_CIDR, "blockSize": 26, "ipipMode": ipip, "vxlanMode": vxlan,
                  "natOutgoing": nat_outgoing, "nodeSelector": "all()"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
         "metadata": {"name": "default"},
         "spec": {"asNumber": NODE_AS, "nodeToNodeMeshEnabled": mode != "rr",
                  "logSeverityScreen": "Info"}},
    ]
    for idx, subnet in enumerate("ab"):
        docs.append({
            "apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
            "metadata": {"name": f"router-{subnet}"},
            "spec": {"peerIP": str(topo.router_ips[idx]), "asNumber": ROUTER_AS,
                     "nodeSelector": f"lab.wren.io/subnet == '{subnet}'"},
        })
    reflectors = route_reflectors(topo) if mode == "rr" else set()
    if mode == "rr":
        docs.append({
            "apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
            "metadata": {"name": "peer-with-route-reflectors"},
            "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
        })
    for node in topo.nodes:
        labels = {"lab.wren.io/subnet": "ab"[node.subnet_index],
                  "kubernetes.io/hostname": node.name}
        bgp: dict[str, Any] = {"ipv4Address": str(node.address)}
        if node.name in reflectors:
            labels["route-reflector"] = "true"
            bgp["routeReflectorClusterID"] = "244.0.0.1"
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                     "metadata": {"name": node.name, "labels": labels}, "spec": {"bgp": bgp}})
    return docs


def route_reflectors(topo: Topology) -> set[str]:
    """One reflector per subnet (the first node of each), sharing one cluster ID."""
    firsts: dict[int, str] = {}
    for node in topo.nodes:
        firsts.setdefault(node.subnet_index, node.name)
    return set(firsts.values())


def router_bird_config(topo: Topology) -> str:
    lines = [
        f"router id {topo.router_ips[0]};",
        "protocol device {}",
        "protocol kernel { ipv4 { import none; export all; }; }",
        "template bgp wrennode {",
        f"  local as {ROUTER_AS};",
        "  ipv4 { import all; export none; };",
        "}",
    ]
    for node in topo.nodes:
        src = topo.router_ips[node.subnet_index]
        lines.append(f"protocol bgp node_{node.name} from wrennode {{ "
                     f"neighbor {node.address.ip} as {NODE_AS}; source address {src}; }}")
    return "\n".join(lines) + "\n"


@dataclass
class LabCluster:
    topo: Topology
    mode: str = "bgp"
    work: Path = Path("lab/run")
    pods_per_node: int = 2
    procs: ProcessGroup = field(init=False)
    pods: list[Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"MODE={self.mode!r}: must be one of {', '.join(MODES)}")
        self.work = self.work.resolve()
        self.procs = ProcessGroup(self.work / "logs")

    # -- environment for our programs -------------------------------------------------------
    def datastore_env(self) -> dict[str, str]:
        return {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": self.topo.etcd_endpoint,
                "LOG_LEVEL": "info"}

    def node_env(self, node: LabNode) -> dict[str, str]:
        return {
            **self.datastore_env(),
            "NODENAME": node.name,
            "IP": "autodetect",
            "IP_AUTODETECTION_METHOD": "interface=eth0",
            "WREN_RUN_DIR": str(self.work / node.name / "run"),
            "WREN_STATE_DIR": str(self.work / node.name / "state"),
            "FELIX_HEALTHHOST": str(node.address.ip),
            "FELIX_ROUTEREFRESHINTERVAL": "30",
        }

    def wrenctl(self, *args: str, stdin: str | None = None, node: LabNode | None = None) -> str:
        env = self.node_env(node) if node else self.datastore_env()
        ns = node.netns if node else self.topo.router_ns
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, str(BIN / "wrenctl"), *args], input=stdin,
            capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env},
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"wrenctl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    # -- bring-up ---------------------------------------------------------------------------
    def start_etcd(self, *, keep_data: bool = False) -> None:
        data = self.work / "etcd"
        if not keep_data:
            shutil.rmtree(data, ignore_errors=True)
        url = self.topo.etcd_endpoint
        self.procs.start("etcd", self.topo.router_ns, [
            "etcd", "--name", "lab", "--data-dir", str(data),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "lab=http://127.0.0.1:2380",
        ])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["ip", "netns", "exec", self.topo.router_ns, "etcdctl", "--endpoints", url,
                 "endpoint", "health"], capture_output=True, text=True, check=False)
            if "is healthy" in probe.stdout + probe.stderr:
                return
            time.sleep(0.2)
        raise RuntimeError(f"etcd did not start:\n{self.procs.procs['etcd'].tail()}")

    def start_etcd_again(self, _old: object = None) -> None:
        """Restart etcd on its data after a test stopped it (an etcd outage)."""
        self.start_etcd(keep_data=True)

    def start_router(self) -> None:
        conf = self.work / "router-bird.conf"
        conf.write_text(router_bird_config(self.topo))
        sock = self.work / "router-bird.ctl"
        self.procs.start("router-bird", self.topo.router_ns,
                         ["bird", "-f", "-c", str(conf), "-s", str(sock)])

    def configure(self, docs: Iterable[dict[str, Any]]) -> None:
        self.wrenctl("apply", "-f", "-", stdin=yaml.safe_dump_all(list(docs)))

    @property
    def uses_bgp(self) -> bool:
        """VXLAN modes need no BGP (Calico's `calico_backend: vxlan`): routes come from the
        datastore. Every other mode learns routes through the sidecar."""
        return not self.mode.startswith("vxlan")

    def start_node(self, node: LabNode) -> None:
        env = self.node_env(node)
        for key in ("WREN_RUN_DIR", "WREN_STATE_DIR"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        self.procs.start(f"{node.name}-agent", node.netns, [str(BIN / "wren-agent")], env=env)
        if self.uses_bgp:
            self.procs.start(f"{node.name}-bgp", node.netns, [str(BIN / "wren-bgp")], env=env)

    def stop_node(self, node: LabNode) -> None:
        self.procs.stop(f"{node.name}-bgp")
        self.procs.stop(f"{node.name}-agent")

    def add_pod(self, node: LabNode, index: int, *, ipv6: bool = False) -> Pod:
        """A pod made by the real CNI plugin; `ipv6` asks its IPAM for an IPv6 address too
        (Calico's `assign_ipv6`), from an IPv6 pool that must exist."""
        name = f"{node.name}-pod{index}"
        netns = f"{self.topo.prefix}{name}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        # Unique per pod (a padded name made pod 1 and pod 10 the same container).
        container_id = hashlib.sha256(netns.encode()).hexdigest()[:16]
        conf = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "wren",
                "ipam": {"type": "wren-ipam", "assign_ipv6": "true" if ipv6 else "false"},
                "datastore_type": "etcdv3",
                "etcd_endpoints": self.topo.etcd_endpoint, "nodename": node.name,
                "log_level": "warning"}
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": "ADD", "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/var/run/netns/{netns}", "CNI_IFNAME": "eth0",
            "CNI_PATH": str(BIN),
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME={name}",
            "WREN_STATE_DIR": str(self.work / node.name / "state"),
        }
        proc = subprocess.run(["ip", "netns", "exec", node.netns, str(BIN / "wren")],
                              input=json.dumps(conf), env=env, capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"CNI ADD for {name} failed: {proc.stdout} {proc.stderr}")
        result = json.loads(proc.stdout)
        addresses = [entry["address"].split("/")[0] for entry in result["ips"]]
        ip = next(a for a in addresses if ":" not in a)
        ip6 = next((a for a in addresses if ":" in a), None)
        pod = Pod(name=name, node=node.name, netns=netns, ip=ip, container_id=container_id,
                  ip6=ip6)
        self.pods.append(pod)
        return pod

    # -- checks -----------------------------------------------------------------------------
    def ping(self, src_ns: str, dst: str) -> bool:
        proc = subprocess.run(["ip", "netns", "exec", src_ns, "ping", "-c1", "-W1", "-q", dst],
                              capture_output=True, check=False)
        return proc.returncode == 0

    def matrix(self) -> dict[tuple[str, str], bool]:
        """Every pod to every other pod, and every pod to the internet host, in parallel."""
        pairs = [(a.netns, a.name, b.ip, b.name) for a in self.pods for b in self.pods if a != b]
        pairs += [(a.netns, a.name, str(self.topo.inet_host), "internet") for a in self.pods]
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            results = pool.map(lambda p: ((p[1], p[3]), self.ping(p[0], p[2])), pairs)
            return dict(results)

    def wait_converged(
        self, timeout: float = 90.0
    ) -> tuple[bool, float, dict[tuple[str, str], bool]]:
        start = time.monotonic()
        result = self.matrix()
        while not all(result.values()) and time.monotonic() - start < timeout:
            time.sleep(1.0)
            result = self.matrix()
        return all(result.values()), time.monotonic() - start, result

    def node_status(self, node: LabNode) -> str:
        try:
            return self.wrenctl("node", "status", node=node)
        except RuntimeError as err:
            return str(err)

    def pod_routes(self, node: LabNode) -> str:
        return netns_exec(node.netns, "ip", "route", "show", "proto", "80", check=False)

    # -- teardown ---------------------------------------------------------------------------
    def down(self) -> None:
        self.procs.stop_all()
        self.topo.destroy()
        for node in self.topo.nodes:  # per-node run/state dirs: no stale BGP intent cache
            shutil.rmtree(self.work / node.name, ignore_errors=True)
