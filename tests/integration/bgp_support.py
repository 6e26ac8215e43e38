"""BGP speakers this project did not write (BIRD 2, GoBGP) as peers of a Wren cluster.

Each speaker runs in a namespace of its own (named with the cluster's prefix), plugged by a veth
into one of the lab's subnet bridges in the router namespace, and is started through the
cluster's ProcessGroup. `external_host` stops what it started by PID and deletes the namespace
(the veth goes with it) on the way out, also when the test failed; the cluster's own teardown
would catch anything left over, since every name carries its prefix.

    <p>router: br-a ── veth ── <p><name>: eth0 10.0.1.<host>/24, default via 10.0.1.1
                                           BIRD (control socket in the lab's work dir) or GoBGP
                                           (gRPC API on 127.0.0.1 inside the namespace)
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.cluster import LabCluster
from lab.topology import SUBNETS, netns_exec, run
from tests.integration.agent_support import wait_for

__all__ = ["Bird", "ExternalHost", "GoBGP", "external_host"]


# -- a host of our own on a lab subnet ----------------------------------------------------------
@dataclass
class ExternalHost:
    cluster: LabCluster
    name: str
    netns: str
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    procs: list[str] = field(default_factory=list)  # names in the cluster's ProcessGroup
    router_routes: list[str] = field(default_factory=list)  # prefixes the router sends us

    @property
    def ip(self) -> str:
        return str(self.address.ip)

    def exec(self, *args: str, check: bool = True) -> str:
        return netns_exec(self.netns, *args, check=check)

    def start(self, suffix: str, argv: Sequence[str]) -> None:
        name = f"{self.name}-{suffix}"
        self.cluster.procs.start(name, self.netns, argv)
        self.procs.append(name)

    def alive(self, suffix: str) -> bool:
        proc = self.cluster.procs.procs.get(f"{self.name}-{suffix}")
        return proc is not None and proc.alive()

    def log(self, suffix: str, lines: int = 40) -> str:
        proc = self.cluster.procs.procs.get(f"{self.name}-{suffix}")
        return proc.tail(lines) if proc else ""

    def route_from_router(self, prefix: str) -> None:
        """The lab router (the fabric between the subnets) sends `prefix` to this host."""
        netns_exec(self.cluster.topo.router_ns, "ip", "route", "add", prefix, "via", self.ip)
        self.router_routes.append(prefix)

    def file(self, suffix: str) -> Path:
        return self.cluster.work / f"{self.name}-{suffix}"


@contextlib.contextmanager
def external_host(cluster: LabCluster, name: str, *, host: int,
                  subnet_index: int = 0) -> Iterator[ExternalHost]:
    """A namespace `<prefix><name>` with eth0 = `.<host>` on the lab subnet, bridged in the
    router namespace. Stops its processes by PID and removes the namespace on exit."""
    subnet = SUBNETS[subnet_index]
    netns = f"{cluster.topo.prefix}{name}"
    ext = ExternalHost(cluster=cluster, name=name, netns=netns,
                       address=ipaddress.IPv4Interface(f"{subnet[host]}/{subnet.prefixlen}"),
                       gateway=subnet[1])
    router = cluster.topo.router_ns
    outside = f"x-{name}"[:15]
    try:
        run(["ip", "netns", "add", netns])
        ext.exec("ip", "link", "set", "lo", "up")
        run(["ip", "-n", router, "link", "add", outside, "type", "veth", "peer", "name", "eth0",
             "netns", netns])
        run(["ip", "-n", router, "link", "set", outside, "master", f"br-{'ab'[subnet_index]}",
             "up"])
        ext.exec("ip", "addr", "add", str(ext.address), "dev", "eth0")
        ext.exec("ip", "link", "set", "eth0", "up")
        ext.exec("ip", "route", "add", "default", "via", str(ext.gateway))
        yield ext
    finally:
        for proc in reversed(ext.procs):
            cluster.procs.stop(proc)
        for prefix in ext.router_routes:
            run(["ip", "-n", router, "route", "del", prefix], check=False)
        # Deleting the namespace deletes eth0, and with it its veth peer in the router.
        run(["ip", "netns", "del", netns], check=False)
        run(["ip", "-n", router, "link", "del", outside], check=False)


# -- BIRD 2 ---------------------------------------------------------------------------------------
@dataclass
class Bird:
    """A BIRD 2 daemon on an external host, with its own control socket."""

    host: ExternalHost

    @property
    def conf(self) -> Path:
        return self.host.file("bird.conf")

    @property
    def sock(self) -> Path:
        return self.host.file("bird.ctl")

    def start(self, config: str) -> None:
        self.conf.write_text(config)
        self.host.exec("bird", "-p", "-c", str(self.conf))  # parse only: a clear error early
        self.host.start("bird", ["bird", "-f", "-c", str(self.conf), "-s", str(self.sock)])
        wait_for(self._ready, timeout=15, what=f"BIRD on {self.host.name} to start")

    def _ready(self) -> bool:
        if not self.host.alive("bird"):
            raise AssertionError(f"BIRD on {self.host.name} died:\n{self.host.log('bird')}")
        return "Daemon is up and running" in self.birdc("show", "status", check=False)

    def reconfigure(self, config: str) -> None:
        self.conf.write_text(config)
        out = self.birdc("configure")
        if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
            raise AssertionError(f"birdc configure: {out}")

    def birdc(self, *args: str, check: bool = True) -> str:
        return self.host.exec("birdc", "-s", str(self.sock), *args, check=check)

    def protocols(self) -> dict[str, tuple[str, str]]:
        """BGP protocol name → (state, info), e.g. ("up", "Established")."""
        out: dict[str, tuple[str, str]] = {}
        for line in self.birdc("show", "protocols").splitlines():
            cols = line.split()
            if len(cols) >= 4 and cols[1] == "BGP":
                out[cols[0]] = (cols[3], " ".join(cols[5:]) if len(cols) > 5 else "")
        return out

    def routes(self) -> dict[str, tuple[str, str]]:
        """prefix → (BGP next hop, protocol) of BIRD's best route, from `show route all`."""
        out: dict[str, tuple[str, str]] = {}
        prefix = proto = ""
        for line in self.birdc("show", "route", "all").splitlines():
            if line and not line[0].isspace() and "/" in line.split()[0]:
                prefix = line.split()[0]
                proto = line.split("[", 1)[1].split()[0] if "[" in line else ""
            elif line.strip().startswith("BGP.next_hop:") and prefix:
                out.setdefault(prefix, (line.split(":", 1)[1].strip(), proto))
        return out


# -- GoBGP ----------------------------------------------------------------------------------------
@dataclass
class GoBGP:
    """gobgpd on an external host; its gRPC API on 127.0.0.1:<api_port> inside the namespace."""

    host: ExternalHost
    api_port: int = 50051

    @property
    def conf(self) -> Path:
        return self.host.file("gobgpd.toml")

    def start(self, config: str) -> None:
        self.conf.write_text(config)
        self.host.start("gobgpd", ["gobgpd", "-f", str(self.conf), "-t", "toml",
                                   "--api-hosts", f"127.0.0.1:{self.api_port}"])
        wait_for(self._ready, timeout=20, what=f"gobgpd on {self.host.name} to start")

    def _ready(self) -> bool:
        if not self.host.alive("gobgpd"):
            raise AssertionError(f"gobgpd on {self.host.name} died:\n{self.host.log('gobgpd')}")
        return "Router-ID:" in self.gobgp("global", check=False)

    def gobgp(self, *args: str, check: bool = True) -> str:
        return self.host.exec("gobgp", "-p", str(self.api_port), *args, check=check)

    def neighbors(self) -> dict[str, str]:
        """neighbor address → session state ("established", "active", ...)."""
        raw = json.loads(self.gobgp("neighbor", "-j") or "[]")
        out: dict[str, str] = {}
        for peer in raw or []:
            addr = peer.get("conf", {}).get("neighbor_address", "")
            state = peer.get("state", {}).get("session_state", 0)
            out[addr] = _GOBGP_STATES.get(state, str(state)) if isinstance(state, int) else \
                str(state).lower()
        return out

    def add_route(self, prefix: str) -> None:
        self.gobgp("global", "rib", "add", "-a", "ipv4", prefix)

    def rib(self) -> dict[str, str]:
        """prefix → next hop of GoBGP's best path, from its global RIB."""
        raw: dict[str, list[dict[str, Any]]] = json.loads(
            self.gobgp("global", "rib", "-a", "ipv4", "-j") or "{}") or {}
        out: dict[str, str] = {}
        for prefix, paths in raw.items():
            best = next((p for p in paths if p.get("best")), paths[0] if paths else None)
            if best is None:
                continue
            for attr in best.get("attrs", []):
                if "nexthop" in attr:  # NEXT_HOP (type 3) or MP_REACH_NLRI (type 14)
                    out[prefix] = str(attr["nexthop"])
        return out


# GoBGP's API enum PeerState.SessionState, as `gobgp neighbor -j` prints it.
_GOBGP_STATES = {0: "unknown", 1: "idle", 2: "connect", 3: "active", 4: "opensent",
                 5: "openconfirm", 6: "established"}


def kernel_route(ns: str, prefix: str) -> str:
    """Every route for exactly `prefix` in every table of a namespace ("" if none)."""
    return subprocess.run(["ip", "-n", ns, "route", "show", "table", "all", "exact", prefix],
                          capture_output=True, text=True, check=False).stdout.strip()
