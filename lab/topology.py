"""Network namespaces that make a small data centre on one machine.

                       ┌──────────────── <p>router ────────────────┐
                       │  br-a 10.0.1.1/24      br-b 10.0.2.1/24   │  BIRD 2 (external router)
                       │        │                     │            │  etcd on 10.0.1.1:2379
                       │        │   inet 198.18.0.1/24│            │
                       └────────┼──────────┬──────────┼────────────┘
                 eth0 10.0.1.11 │          │          │ eth0 10.0.2.11
              ┌─ <p>n1 ─┐  ┌─ <p>n2 ─┐  ┌─ <p>inet ─┐  ┌─ <p>n3 ─┐  ┌─ <p>n4 ─┐
              │ pods    │  │ pods    │  │198.18.0.2 │  │ pods    │  │ pods    │
              └─────────┘  └─────────┘  └───────────┘  └─────────┘  └─────────┘

Two L2 subnets (bridges in the router namespace) joined by the router, so CrossSubnet means
something. The "internet" host knows a route to the node subnets but none to the pods: pods reach
it only through natOutgoing. Every name starts with a prefix, so several labs (or tests) can share
a machine, and `destroy` removes exactly what `create` made, also after a crash.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["LabNode", "Topology", "netns_exec", "run"]

SUBNETS = (ipaddress.IPv4Network("10.0.1.0/24"), ipaddress.IPv4Network("10.0.2.0/24"))
INET_NET = ipaddress.IPv4Network("198.18.0.0/24")


def run(args: Sequence[str], *, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def netns_exec(ns: str, *args: str, check: bool = True) -> str:
    return run(["ip", "netns", "exec", ns, *args], check=check)


@dataclass(frozen=True, slots=True)
class LabNode:
    name: str  # node name, e.g. "n1"
    netns: str  # e.g. "wl-n1"
    address: ipaddress.IPv4Interface  # 10.0.1.11/24
    subnet_index: int  # 0: subnet A, 1: subnet B
    gateway: ipaddress.IPv4Address


@dataclass
class Topology:
    prefix: str = "wl-"
    node_count: int = 4
    nodes: list[LabNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nodes:
            for i in range(self.node_count):
                subnet_index = 0 if i < (self.node_count + 1) // 2 else 1
                subnet = SUBNETS[subnet_index]
                host = 11 + sum(1 for n in self.nodes if n.subnet_index == subnet_index)
                self.nodes.append(LabNode(
                    name=f"n{i + 1}",
                    netns=f"{self.prefix}n{i + 1}",
                    address=ipaddress.IPv4Interface(f"{subnet[host]}/{subnet.prefixlen}"),
                    subnet_index=subnet_index,
                    gateway=subnet[1],
                ))

    @property
    def router_ns(self) -> str:
        return f"{self.prefix}router"

    @property
    def inet_ns(self) -> str:
        return f"{self.prefix}inet"

    @property
    def router_ips(self) -> tuple[ipaddress.IPv4Address, ...]:
        return tuple(s[1] for s in SUBNETS)

    @property
    def inet_host(self) -> ipaddress.IPv4Address:
        return INET_NET[2]

    @property
    def etcd_endpoint(self) -> str:
        return f"http://{SUBNETS[0][1]}:2379"

    def namespaces(self) -> list[str]:
        return [self.router_ns, self.inet_ns, *(n.netns for n in self.nodes)]

    # -- lifecycle ---------------------------------------------------------------------------
    def create(self) -> None:
        """Build every namespace and link; on any failure, remove what was made."""
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise

    def _create(self) -> None:
        r = self.router_ns
        for ns in self.namespaces():
            run(["ip", "netns", "add", ns])
            netns_exec(ns, "ip", "link", "set", "lo", "up")
        netns_exec(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for idx, subnet in enumerate(SUBNETS):
            br = f"br-{'ab'[idx]}"
            netns_exec(r, "ip", "link", "add", br, "type", "bridge")
            netns_exec(r, "ip", "addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", br)
            netns_exec(r, "ip", "link", "set", br, "up")
        for node in self.nodes:
            outside = f"{self.prefix}{node.name}"[:15]
            run(["ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0",
                 "netns", node.netns])
            run(["ip", "link", "set", outside, "netns", r])
            netns_exec(r, "ip", "link", "set", outside, "master", f"br-{'ab'[node.subnet_index]}",
                       "up")
            netns_exec(node.netns, "ip", "addr", "add", str(node.address), "dev", "eth0")
            netns_exec(node.netns, "ip", "link", "set", "eth0", "up")
            netns_exec(node.netns, "ip", "route", "add", "default", "via", str(node.gateway))
        inet_if = f"{self.prefix}inet"[:15]
        run(["ip", "link", "add", inet_if, "type", "veth", "peer", "name", "eth0",
             "netns", self.inet_ns])
        run(["ip", "link", "set", inet_if, "netns", r])
        netns_exec(r, "ip", "addr", "add", f"{INET_NET[1]}/{INET_NET.prefixlen}", "dev", inet_if)
        netns_exec(r, "ip", "link", "set", inet_if, "up")
        netns_exec(self.inet_ns, "ip", "addr", "add", f"{self.inet_host}/{INET_NET.prefixlen}",
                   "dev", "eth0")
        netns_exec(self.inet_ns, "ip", "link", "set", "eth0", "up")
        # The internet host reaches the node subnets, never the pods.
        for subnet in SUBNETS:
            netns_exec(self.inet_ns, "ip", "route", "add", str(subnet), "via", str(INET_NET[1]))

    def destroy(self) -> None:
        """Remove every namespace with our prefix (links inside go with them). Idempotent."""
        existing = run(["ip", "netns", "list"], check=False).split("\n")
        names = {line.split()[0] for line in existing if line.strip()}
        ours = sorted(n for n in names if n.startswith(self.prefix))
        pids = {int(p) for ns in ours
                for p in run(["ip", "netns", "pids", ns], check=False).split()}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if _alive(p)}
            time.sleep(0.05)
        for pid in pids:  # still there after 5 s
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for ns in ours:
            run(["ip", "netns", "del", ns], check=False)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
