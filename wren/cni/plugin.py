"""The `wren` CNI plugin: a pod's veth pair, its addresses from IPAM, and its WorkloadEndpoint.

    ADD   IPAM (addresses under handle <network>.<containerID>)
            → veth pair, addresses, routes, sysctls (pod reachable from the node from here on)
            → WorkloadEndpoint in the datastore
          a failure at any step undoes the earlier ones in reverse order
    DEL   veth pair (and its host routes) → addresses of the handle → WorkloadEndpoint;
          every step treats "already gone" as done, so DEL can be repeated
    CHECK the veth pair, addresses and routes of prevResult, the handle and the endpoint

IPAM: when `ipam.type` is `wren-ipam` the library is called in-process (one process start and
one datastore connection per pod instead of two; the behaviour is the same as running the
`wren-ipam` executable). Any other `ipam.type` is run the way every CNI plugin delegates:
the executable of that name found on CNI_PATH, with the same environment and stdin.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wren.cni.dataplane import (
    Address,
    DataplaneError,
    NetnsGoneError,
    check_workload,
    setup_workload,
    teardown_workload,
    veth_name_for_workload,
)
from wren.cni.runtime import node_name, open_backend, owner_attributes, run
from wren.cni.spec import (
    ERR_CONTAINER_UNKNOWN,
    ERR_INVALID_CONFIG,
    ERR_IO,
    CniEnv,
    CniError,
    CniInterface,
    CniIP,
    CniResult,
    NetConf,
    handle_id,
)
from wren.constants import WORKLOAD_IFACE_PREFIX
from wren.datastore.backend import Backend, Body
from wren.errors import AlreadyExists, NotFound, TemporaryError, WrenError
from wren.ipam.allocator import Ipam
from wren.kinds import kind_by_name
from wren.log import get_logger
from wren.paths import node_state_dir

__all__ = [
    "ERR_CHECK_FAILED",
    "WREN_IPAM",
    "Workload",
    "endpoint_body",
    "endpoint_name",
    "main",
    "pod_mtu",
]

log = get_logger(__name__)

WREN_IPAM = "wren-ipam"
ERR_CHECK_FAILED = 102
DEFAULT_MTU = 1500
K_WEP = kind_by_name("WorkloadEndpoint")
ROLLBACK_BUDGET_S = 5.0


def endpoint_name(*, node: str, orchestrator: str, workload: str, endpoint: str) -> str:
    """Calico's WorkloadEndpoint name: the parts joined by '-', each '-' in a part doubled."""
    return "-".join(p.replace("-", "--") for p in (node, orchestrator, workload, endpoint))


@dataclass(frozen=True, slots=True)
class Workload:
    """Who the pod is, and every name derived from that."""

    node: str
    namespace: str
    pod: str
    container_id: str
    ifname: str
    netns: str
    handle: str

    @staticmethod
    def from_invocation(cni: CniEnv, conf: NetConf, node: str) -> Workload:
        # Without Kubernetes arguments the container ID is the identity (plain `cnitool` use).
        namespace = cni.pod_namespace or "default"
        pod = cni.pod_name or cni.container_id
        return Workload(node=node, namespace=namespace, pod=pod, container_id=cni.container_id,
                        ifname=cni.ifname, netns=cni.netns,
                        handle=handle_id(conf.name, cni.container_id))

    @property
    def orchestrator(self) -> str:
        return "k8s" if self.pod != self.container_id else "cni"

    @property
    def host_ifname(self) -> str:
        return veth_name_for_workload(self.namespace, self.pod, prefix=WORKLOAD_IFACE_PREFIX)

    @property
    def endpoint_name(self) -> str:
        return endpoint_name(node=self.node, orchestrator=self.orchestrator, workload=self.pod,
                             endpoint=self.ifname)


def pod_mtu(conf: NetConf, node: str, env: Mapping[str, str]) -> int:
    """The config's `mtu`, else the MTU file the agent writes for this node, else 1500."""
    if conf.mtu:
        return conf.mtu
    path = node_state_dir(node, env) / "mtu"
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return DEFAULT_MTU
    except ValueError as exc:
        raise CniError(ERR_INVALID_CONFIG, "unreadable MTU file", f"{path}: {exc}") from None


# ------------------------------------------------------------------------------------ IPAM
class _IpamStep:
    """Allocate / release through the library or a delegated plugin; same interface for both."""

    def __init__(self, cni: CniEnv, conf: NetConf, *, env: Mapping[str, str], wl: Workload,
                 backend: Backend) -> None:
        self.cni, self.conf, self.env, self.wl, self.backend = cni, conf, env, wl, backend

    def add(self) -> list[Address]:
        if self.conf.ipam.type != WREN_IPAM:
            result = CniResult.from_json(self._delegate("ADD") or {})
            return [_host_address(ip.address) for ip in result.ips]
        ipam = Ipam(self.backend)
        existing = ipam.ips_by_handle(self.wl.handle)
        if existing:
            log.info("reusing addresses of a retried ADD", handle=self.wl.handle,
                     ips=[str(i) for i in existing])
            return [_host_address(i) for i in existing]
        ips = ipam.auto_assign(
            handle_id=self.wl.handle, node=self.wl.node,
            num4=int(self.conf.ipam.assign_ipv4), num6=int(self.conf.ipam.assign_ipv6),
            attrs=owner_attributes(self.cni, self.wl.node),
            ipv4_pools=self.conf.ipam.ipv4_pools, ipv6_pools=self.conf.ipam.ipv6_pools)
        return [_host_address(i) for i in ips]

    def release(self) -> None:
        if self.conf.ipam.type != WREN_IPAM:
            self._delegate("DEL")
            return
        Ipam(self.backend).release_by_handle(self.wl.handle)

    def holds(self) -> set[Any]:
        if self.conf.ipam.type != WREN_IPAM:
            return set()
        return set(Ipam(self.backend).ips_by_handle(self.wl.handle))

    def _delegate(self, command: str) -> dict[str, Any] | None:
        exe = _find_plugin(self.conf.ipam.type, self.cni.path)
        env = dict(self.env)
        env["CNI_COMMAND"] = command
        stdin = json.dumps(dict(self.conf.raw))
        proc = subprocess.run([str(exe)], input=stdin.encode(), env=env, capture_output=True,
                              timeout=120, check=False)
        body: dict[str, Any] | None = None
        if proc.stdout.strip():
            try:
                body = json.loads(proc.stdout)
            except ValueError:
                raise CniError(ERR_IO, f"IPAM plugin {exe} wrote no JSON",
                               proc.stdout[:200].decode(errors="replace")) from None
        if proc.returncode != 0:
            body = body or {}
            raise CniError(int(body.get("code") or ERR_IO),
                           str(body.get("msg") or f"IPAM plugin {exe} failed"),
                           str(body.get("details") or proc.stderr[-500:].decode(errors="replace")))
        return body


def _find_plugin(name: str, path: tuple[str, ...]) -> Path:
    if not name or "/" in name:
        raise CniError(ERR_INVALID_CONFIG, "invalid network configuration",
                       f"field ipam.type: {name!r} is not a plugin name")
    for d in path:
        exe = Path(d) / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    raise CniError(ERR_INVALID_CONFIG, f"IPAM plugin {name!r} not found",
                   f"searched CNI_PATH {':'.join(path) or '(empty)'}")


def _host_address(ip: Any) -> Address:
    """Pods get /32 (/128): the host routes each one to its veth; the pod needs no subnet."""
    addr = ip.ip if isinstance(ip, ipaddress.IPv4Interface | ipaddress.IPv6Interface) else ip
    return ipaddress.ip_interface(f"{addr}/{addr.max_prefixlen}")


# ------------------------------------------------------------------------------ endpoint
def endpoint_body(wl: Workload, *, host_ifname: str, mac: str,
                   addresses: list[Address]) -> Body:
    labels = {"projectcalico.org/namespace": wl.namespace,
              "projectcalico.org/orchestrator": wl.orchestrator}
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": wl.endpoint_name, "namespace": wl.namespace, "labels": labels},
        "spec": {
            "orchestrator": wl.orchestrator,
            "node": wl.node,
            "pod": wl.pod,
            "containerID": wl.container_id,
            "endpoint": wl.ifname,
            "interfaceName": host_ifname,
            "mac": mac,
            "ipNetworks": [str(a) for a in addresses],
            "profiles": [f"kns.{wl.namespace}"],
        },
    }


def _write_endpoint(backend: Backend, body: Body) -> None:
    try:
        backend.create(body)
    except AlreadyExists:
        # A pod recreated under the same name before its old sandbox was deleted: ours now.
        backend.update(body)


def _delete_endpoint(backend: Backend, wl: Workload) -> None:
    """Delete the endpoint only if it is still this container's (a newer sandbox of the same
    pod may have replaced it)."""
    try:
        body = backend.get(K_WEP, wl.endpoint_name, wl.namespace)
    except NotFound:
        return
    cid = (body.get("spec") or {}).get("containerID") or ""
    if cid and cid != wl.container_id:
        log.info("endpoint belongs to a newer container; kept", endpoint=wl.endpoint_name,
                 container=cid)
        return
    with contextlib.suppress(NotFound):
        backend.delete(K_WEP, wl.endpoint_name, wl.namespace,
                       resource_version=str(body["metadata"].get("resourceVersion") or ""))


def _retrying(what: str, action: Callable[[], None]) -> None:
    """Rollback of datastore writes: retry briefly through a datastore blip. If it stays
    down, the runtime's DEL (which follows every failed ADD) releases the handle later."""
    deadline = time.monotonic() + ROLLBACK_BUDGET_S
    delay = 0.1
    while True:
        try:
            action()
            return
        except TemporaryError as exc:
            if time.monotonic() + delay > deadline:
                log.error("rollback step failed; the runtime's DEL will finish it", step=what,
                          error=str(exc))
                return
            time.sleep(delay)
            delay = min(1.0, delay * 2)
        except WrenError as exc:
            log.error("rollback step failed", step=what, error=str(exc))
            return


# ------------------------------------------------------------------------------ commands
def cmd_add(cni: CniEnv, conf: NetConf, env: Mapping[str, str]) -> dict[str, Any]:
    wl = Workload.from_invocation(cni, conf, node_name(conf, env))
    log.info("ADD", container=wl.container_id, pod=f"{wl.namespace}/{wl.pod}", node=wl.node,
             netns=wl.netns)
    if not os.path.exists(wl.netns):
        raise CniError(ERR_CONTAINER_UNKNOWN, "network namespace does not exist", wl.netns)
    mtu = pod_mtu(conf, wl.node, env)
    backend = open_backend(conf, env)
    ipam = _IpamStep(cni, conf, env=env, wl=wl, backend=backend)
    undo: list[tuple[str, Callable[[], object]]] = []
    try:
        addresses = ipam.add()
        undo.append(("release addresses", lambda: _retrying("release", ipam.release)))
        if not addresses:
            raise CniError(ERR_INVALID_CONFIG, "IPAM returned no address",
                           f"ipam.type {conf.ipam.type}: assign_ipv4/assign_ipv6 both off?")
        try:
            links = setup_workload(netns=wl.netns, ifname=wl.ifname, host_ifname=wl.host_ifname,
                                   addresses=addresses, mtu=mtu)
        except NetnsGoneError as exc:
            raise CniError(ERR_CONTAINER_UNKNOWN, "network namespace vanished", str(exc)) from None
        except DataplaneError as exc:
            raise CniError(ERR_IO, "cannot set up the pod's interface", str(exc)) from None
        undo.append(("remove veth", lambda: teardown_workload(
            netns=wl.netns, ifname=wl.ifname, host_ifname=wl.host_ifname)))
        _write_endpoint(backend, endpoint_body(wl, host_ifname=links.host_ifname,
                                                mac=links.container_mac, addresses=addresses))
    except BaseException:
        for what, step in reversed(undo):
            try:
                step()
            except Exception as exc:  # each undo step is attempted whatever the one before did
                log.error("rollback step failed", step=what, error=str(exc))
        raise
    finally:
        backend.close()
    result = CniResult(
        interfaces=(CniInterface(name=links.host_ifname, mac=links.host_mac),
                    CniInterface(name=wl.ifname, mac=links.container_mac, sandbox=wl.netns)),
        ips=tuple(CniIP(address=a, interface=1) for a in addresses),
        routes=tuple(("0.0.0.0/0" if a.version == 4 else "::/0", "") for a in
                     {a.version: a for a in addresses}.values()),
    )
    log.info("ADD done", container=wl.container_id, ips=[str(a) for a in addresses],
             host_ifname=links.host_ifname)
    return result.to_json(conf.cni_version)


def cmd_del(cni: CniEnv, conf: NetConf, env: Mapping[str, str]) -> None:
    wl = Workload.from_invocation(cni, conf, node_name(conf, env))
    log.info("DEL", container=wl.container_id, pod=f"{wl.namespace}/{wl.pod}", node=wl.node)
    try:
        teardown_workload(netns=wl.netns, ifname=wl.ifname, host_ifname=wl.host_ifname)
    except DataplaneError as exc:
        raise CniError(ERR_IO, "cannot remove the pod's interface", str(exc)) from None
    backend = open_backend(conf, env)
    try:
        _IpamStep(cni, conf, env=env, wl=wl, backend=backend).release()
        _delete_endpoint(backend, wl)
    finally:
        backend.close()


def cmd_check(cni: CniEnv, conf: NetConf, env: Mapping[str, str]) -> None:
    wl = Workload.from_invocation(cni, conf, node_name(conf, env))
    if conf.prev_result is None:
        raise CniError(ERR_INVALID_CONFIG, "CHECK needs prevResult in the network configuration")
    prev = CniResult.from_json(conf.prev_result)
    addresses = [_host_address(ip.address) for ip in prev.ips]
    problems = check_workload(netns=wl.netns, ifname=wl.ifname, host_ifname=wl.host_ifname,
                              addresses=addresses)
    backend = open_backend(conf, env)
    try:
        held = _IpamStep(cni, conf, env=env, wl=wl, backend=backend).holds()
        if conf.ipam.type == WREN_IPAM:
            for a in addresses:
                if a.ip not in held:
                    problems.append(f"address {a.ip} is not allocated to handle {wl.handle}")
        try:
            body = backend.get(K_WEP, wl.endpoint_name, wl.namespace)
            nets = set((body.get("spec") or {}).get("ipNetworks") or [])
            for a in addresses:
                if str(a) not in nets:
                    problems.append(f"workload endpoint {wl.endpoint_name} lacks {a}")
        except NotFound:
            problems.append(f"workload endpoint {wl.namespace}/{wl.endpoint_name} is missing")
    finally:
        backend.close()
    if problems:
        raise CniError(ERR_CHECK_FAILED, "pod network check failed", "; ".join(problems))


def _dispatch(cni: CniEnv, conf: NetConf, env: Mapping[str, str]) -> dict[str, Any] | None:
    if cni.command == "ADD":
        return cmd_add(cni, conf, env)
    if cni.command == "DEL":
        cmd_del(cni, conf, env)
        return None
    cmd_check(cni, conf, env)
    return None


def main() -> None:
    raise SystemExit(run(_dispatch))
