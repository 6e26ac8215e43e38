"""Helpers for the CNI integration tests: node namespaces that reach the test's etcd, pod
namespaces, and the installed plugin run exactly as a container runtime runs it.

etcd (tests.servers.EtcdServer) listens on 127.0.0.1 of the test's own namespace, which a node
namespace cannot see. Each node namespace therefore gets a forwarder: a socket listening on
127.0.0.1:<etcd port> *inside* the node namespace (created by a thread that entered it), whose
connections are relayed to the real etcd on loopback. The plugin's `etcd_endpoints` is then the
same URL everywhere, all traffic stays on loopbacks, and stopping etcd breaks the plugin's
connections the way a real outage does.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WREN_EXE = Path(sys.executable).parent / "wren"
WRENCTL_EXE = Path(sys.executable).parent / "wrenctl"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def _in_netns(path: str, fn: Any) -> Any:
    """Run fn() on a fresh thread that has entered the namespace at `path` (setns is per
    thread for network namespaces), so sockets fn creates live there."""
    box: dict[str, Any] = {}

    def target() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {path}")
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            os.close(fd)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class Forwarder:
    """127.0.0.1:port inside a namespace → 127.0.0.1:port here."""

    def __init__(self, netns_path: str, port: int) -> None:
        self.port = port

        def listen() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(256)
            return s

        self._listener: socket.socket = _in_netns(netns_path, listen)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()  # etcd is down: the plugin sees a refused/reset connection
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.close()
        self._thread.join(timeout=5)


@dataclass
class Lab:
    """Namespaces (all named `<tag>-...`) for one test; `close()` removes exactly those."""

    etcd_endpoint: str
    tag: str = field(default_factory=lambda: f"wc{secrets.token_hex(2)}")
    namespaces: list[str] = field(default_factory=list)
    forwarders: list[Forwarder] = field(default_factory=list)
    counter: int = 0

    def node(self, name: str, *, extra_ports: tuple[int, ...] = ()) -> str:
        """A node namespace with a default route (proxy-ARP answers only for routable
        addresses) and forwarders to etcd (and `extra_ports`, e.g. a kube-apiserver's).
        Returns the namespace name."""
        ns = f"{self.tag}-{name}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "up0", "type", "bridge")
        sh("ip", "-n", ns, "addr", "add", "192.168.250.1/24", "dev", "up0")
        sh("ip", "-n", ns, "link", "set", "up0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "dev", "up0")
        # A global IPv6 address to answer IPv6 pods from, and a default route for proxy-NDP.
        sh("ip", "-n", ns, "addr", "add", "fd00:250::1/64", "dev", "up0", "nodad")
        sh("ip", "-n", ns, "-6", "route", "add", "default", "dev", "up0")
        port = int(self.etcd_endpoint.rsplit(":", 1)[1])
        for p in (port, *extra_ports):
            self.forwarders.append(Forwarder(f"/var/run/netns/{ns}", p))
        return ns

    def pod(self) -> str:
        """A fresh pod namespace; returns its path (what CNI_NETNS carries)."""
        self.counter += 1
        ns = f"{self.tag}-p{self.counter}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        return f"/var/run/netns/{ns}"

    def close(self) -> None:
        for f in self.forwarders:
            f.close()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)


def netconf(*, endpoint: str, node: str, name: str = "k8s-pod-network",
            **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0", "name": name, "type": "wren",
        "ipam": {"type": "wren-ipam"}, "datastore_type": "etcdv3",
        "etcd_endpoints": endpoint, "mtu": 1440, "nodename": node, "log_level": "info",
    }
    conf.update(extra)
    return conf


@dataclass(frozen=True)
class PluginRun:
    code: int
    body: dict[str, Any]
    stderr: str


def run_plugin(
    command: str, *, node_ns: str, conf: dict[str, Any], container_id: str, netns: str,
    pod: str = "", namespace: str = "default", ifname: str = "eth0", exe: Path = WREN_EXE,
    cni_path: str = "", timeout: float = 120,
) -> PluginRun:
    """Run the installed plugin in the node namespace with env + stdin as a runtime does."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": cni_path or str(exe.parent),
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}"
        if pod else "",
    }
    proc = subprocess.run(["ip", "netns", "exec", node_ns, str(exe)], input=json.dumps(conf),
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)
    body = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return PluginRun(proc.returncode, body, proc.stderr)


def links(ns: str, prefix: str = "cali") -> list[str]:
    out = sh("ip", "-n", ns, "-o", "link", "show").stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if n.startswith(prefix)]


def ping(node_ns: str, ip: str) -> bool:
    family = "-6" if ":" in ip else "-4"
    return sh("ip", "netns", "exec", node_ns, "ping", family, "-c", "1", "-W", "2", ip,
              check=False).returncode == 0


@contextlib.contextmanager
def lab_for(endpoint: str) -> Iterator[Lab]:
    lab = Lab(endpoint)
    try:
        yield lab
    finally:
        lab.close()
