"""The pod's veth pair, addresses, routes and sysctls, set up the way Calico's CNI plugin does.

          host (the node's netns)                    pod netns (CNI_NETNS)
    ┌───────────────────────────────────┐      ┌───────────────────────────────┐
    │ caliXXXXXXXXXXX  mac ee:ee:..:ee   │ veth │ eth0  10.0.0.5/32              │
    │   proxy_arp=1, proxy_delay=0       ├──────┤   169.254.1.1 dev eth0 link    │
    │   10.0.0.5/32 dev cali.. proto 80  │      │   default via 169.254.1.1      │
    └───────────────────────────────────┘      └───────────────────────────────┘

The pod's only route is a default via a link-local gateway that does not exist: the host side
answers ARP for it by proxy-ARP (so every pod sees the same gateway, and the host routes). Proxy
ARP answers only for addresses the host itself can route, so the node needs *some* route covering
169.254.1.1 — a default route does. The host side carries the fixed MAC ee:ee:ee:ee:ee:ee (so an
IPv6 pod can use fe80::ecee:eeff:feee:eeee as its gateway). Host routes carry
`wren.constants.ROUTE_PROTOCOL`, so the agent recognises them as its own and takes them over.

The process runs in the node's network namespace (the runtime calls the plugin there); sysctls
under /proc/sys/net are therefore the node's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wren.constants import POD_GATEWAY_V4, POD_GATEWAY_V6, ROUTE_PROTOCOL, WORKLOAD_IFACE_PREFIX
from wren.log import get_logger

__all__ = [
    "HOST_VETH_MAC",
    "Address",
    "DataplaneError",
    "NetnsGoneError",
    "WorkloadLinks",
    "check_workload",
    "setup_workload",
    "teardown_workload",
    "veth_name_for_workload",
]

log = get_logger(__name__)

HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"
SCOPE_LINK = 253
IFA_F_NODAD = 0x02
PROC_SYS = Path("/proc/sys/net")

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class DataplaneError(Exception):
    """A kernel operation for the pod's network failed; names the step and the device."""


class NetnsGoneError(DataplaneError):
    """CNI_NETNS does not exist (the sandbox was torn down under us)."""


@dataclass(frozen=True, slots=True)
class WorkloadLinks:
    host_ifname: str
    host_mac: str
    container_ifname: str
    container_mac: str


def veth_name_for_workload(namespace: str, pod: str, *, prefix: str = WORKLOAD_IFACE_PREFIX) -> str:
    """`cali` + 11 hex chars of sha1("<namespace>.<pod>"): stable across retries and restarts,
    so a retried ADD finds (and replaces) its own leftover, and the agent can compute the name
    from the endpoint alone. Same derivation as Calico, so names match on a migrated node."""
    digest = hashlib.sha1(f"{namespace}.{pod}".encode(), usedforsecurity=False).hexdigest()
    return f"{prefix}{digest[:11]}"


_CLONE_NEWNET = 0x40000000


def _setns(fd: int, *, what: str) -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into {what}: {os.strerror(err)}")


@contextlib.contextmanager
def _ipr(netns: str | None = None) -> Iterator[Any]:
    """A netlink socket in the node's netns, or in the pod's.

    For the pod's, this thread enters the namespace itself (setns) for the block and comes back
    after: pyroute2's own `IPRoute(netns=...)` starts a helper process and gives up if it does
    not answer in time, which a loaded node (or an emulated CPU) turns into a failed pod.
    """
    from pyroute2 import IPRoute

    if netns is None:
        with IPRoute() as ipr:
            yield ipr
        return
    try:
        target = os.open(netns, os.O_RDONLY)
    except FileNotFoundError:
        raise NetnsGoneError(f"network namespace {netns} does not exist") from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target, what=netns)
        try:
            with IPRoute() as ipr:
                yield ipr
        finally:
            _setns(own, what="the node's network namespace")
    finally:
        os.close(target)
        os.close(own)


def _netlink_error() -> type[Exception]:
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError  # type: ignore[no-any-return]


def _write_sysctl(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise DataplaneError(f"cannot set sysctl {path} = {value}: {exc}") from exc


def _lookup(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _mac(ipr: Any, index: int) -> str:
    return str(ipr.get_links(index)[0].get("address") or "")


def setup_workload(
    *, netns: str, ifname: str, host_ifname: str, addresses: Sequence[Address], mtu: int
) -> WorkloadLinks:
    """Create the veth pair and everything the pod needs to be reachable when this returns.

    A leftover host device of the same name (an ADD retried after a crash) is replaced. On any
    failure the pair is deleted again, so the caller only rolls back its own steps."""
    if not os.path.exists(netns):
        raise NetnsGoneError(f"network namespace {netns} does not exist")
    nl_error = _netlink_error()
    step = "open host netlink"
    try:
        with _ipr() as host:
            old = _lookup(host, host_ifname)
            if old is not None:
                log.info("replacing leftover host veth", host_ifname=host_ifname)
                host.link("del", index=old)
            step = f"create veth {host_ifname} <-> {ifname} in {netns}"
            fd = os.open(netns, os.O_RDONLY)
            try:
                host.link("add", ifname=host_ifname, kind="veth", address=HOST_VETH_MAC, mtu=mtu,
                          peer={"ifname": ifname, "net_ns_fd": fd, "mtu": mtu})
            finally:
                os.close(fd)
            host_index = _lookup(host, host_ifname)
            if host_index is None:
                raise DataplaneError(f"veth {host_ifname} vanished right after creation")
            step = f"host sysctls of {host_ifname}"
            _host_sysctls(host_ifname, v6=any(a.version == 6 for a in addresses))
            step = f"bring up {host_ifname}"
            host.link("set", index=host_index, state="up")
            step = f"configure {ifname} in {netns}"
            container_mac = _setup_container_side(netns=netns, ifname=ifname,
                                                  addresses=addresses)
            for addr in addresses:
                step = f"host route {addr.ip}/{addr.max_prefixlen} dev {host_ifname}"
                host.route("replace", dst=f"{addr.ip}/{addr.max_prefixlen}", oif=host_index,
                           scope=SCOPE_LINK if addr.version == 4 else 0, proto=ROUTE_PROTOCOL,
                           family=_family(addr))
            return WorkloadLinks(host_ifname=host_ifname, host_mac=_mac(host, host_index),
                                 container_ifname=ifname, container_mac=container_mac)
    except NetnsGoneError:
        _delete_link_quietly(host_ifname)
        raise
    except (nl_error, OSError, DataplaneError) as exc:
        _delete_link_quietly(host_ifname)
        if not os.path.exists(netns):
            raise NetnsGoneError(f"network namespace {netns} vanished during {step}") from exc
        if isinstance(exc, DataplaneError):
            raise
        raise DataplaneError(f"{step}: {exc}") from exc


def _family(addr: Address) -> int:
    import socket

    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def _host_sysctls(host_ifname: str, *, v6: bool) -> None:
    """proxy_arp answers the pod's ARP for 169.254.1.1; proxy_delay=0 answers at once instead of
    after a random delay of up to 0.8 s; forwarding lets the host route the pod's packets."""
    _write_sysctl(PROC_SYS / "ipv4/conf" / host_ifname / "proxy_arp", "1")
    _write_sysctl(PROC_SYS / "ipv4/neigh" / host_ifname / "proxy_delay", "0")
    _write_sysctl(PROC_SYS / "ipv4/conf" / host_ifname / "forwarding", "1")
    if v6:
        _write_sysctl(PROC_SYS / "ipv6/conf" / host_ifname / "disable_ipv6", "0")
        _write_sysctl(PROC_SYS / "ipv6/conf" / host_ifname / "accept_ra", "0")
        # The pod's IPv6 gateway is the host side's link-local address: without DAD it is
        # usable the moment the link is up, not a second later.
        _write_sysctl(PROC_SYS / "ipv6/conf" / host_ifname / "accept_dad", "0")
        _write_sysctl(PROC_SYS / "ipv6/conf" / host_ifname / "forwarding", "1")
        _write_sysctl(PROC_SYS / "ipv6/conf" / host_ifname / "proxy_ndp", "1")


def _setup_container_side(*, netns: str, ifname: str, addresses: Sequence[Address]) -> str:
    with _ipr(netns) as ipr:
        index = _lookup(ipr, ifname)
        if index is None:
            raise DataplaneError(f"{ifname} did not appear in {netns}")
        ipr.link("set", index=index, state="up")
        for addr in addresses:
            flags = IFA_F_NODAD if addr.version == 6 else 0
            ipr.addr("add", index=index, address=str(addr.ip), prefixlen=addr.max_prefixlen,
                     flags=flags)
        if any(a.version == 4 for a in addresses):
            ipr.route("add", dst=f"{POD_GATEWAY_V4}/32", oif=index, scope=SCOPE_LINK)
            ipr.route("add", dst="0.0.0.0/0", gateway=POD_GATEWAY_V4, oif=index)
        if any(a.version == 6 for a in addresses):
            import socket

            ipr.route("add", dst="::/0", gateway=POD_GATEWAY_V6, oif=index,
                      family=socket.AF_INET6)
        return _mac(ipr, index)


def _delete_link_quietly(ifname: str) -> None:
    nl_error = _netlink_error()
    try:
        with _ipr() as ipr:
            index = _lookup(ipr, ifname)
            if index is not None:
                ipr.link("del", index=index)
    except nl_error as exc:
        log.warning("rollback: cannot delete host veth", host_ifname=ifname, error=str(exc))


def teardown_workload(*, netns: str, ifname: str, host_ifname: str) -> bool:
    """Remove the pair (and with it the host routes on it). Idempotent: a missing netns or
    device is success. Returns whether anything was deleted."""
    nl_error = _netlink_error()
    deleted = False
    if netns and os.path.exists(netns):
        try:
            with _ipr(netns) as ipr:
                index = _lookup(ipr, ifname)
                if index is not None:
                    ipr.link("del", index=index)
                    deleted = True
        except NetnsGoneError:
            pass
        except nl_error as exc:
            if getattr(exc, "code", None) not in (errno.ENODEV, errno.ENOENT):
                raise DataplaneError(f"delete {ifname} in {netns}: {exc}") from exc
        except OSError as exc:
            # The netns file can be a stale bind mount of a namespace that is already gone.
            log.info("pod netns not usable on DEL", netns=netns, error=str(exc))
    try:
        with _ipr() as host:
            index = _lookup(host, host_ifname)
            if index is not None:
                host.link("del", index=index)
                deleted = True
    except nl_error as exc:
        if getattr(exc, "code", None) not in (errno.ENODEV, errno.ENOENT):
            raise DataplaneError(f"delete host veth {host_ifname}: {exc}") from exc
    return deleted


def check_workload(
    *, netns: str, ifname: str, host_ifname: str, addresses: Sequence[Address]
) -> list[str]:
    """Everything that differs from what ADD set up, one sentence each; empty when healthy."""
    problems: list[str] = []
    with _ipr() as host:
        host_index = _lookup(host, host_ifname)
        if host_index is None:
            problems.append(f"host veth {host_ifname} is missing")
        else:
            link = host.get_links(host_index)[0]
            if not link["flags"] & 1:
                problems.append(f"host veth {host_ifname} is down")
            for addr in addresses:
                dst = f"{addr.ip}/{addr.max_prefixlen}"
                routes = host.get_routes(family=_family(addr), dst=str(addr.ip),
                                         dst_len=addr.max_prefixlen, table=254)
                if not any(r.get("oif") == host_index for r in routes):
                    problems.append(f"host route {dst} dev {host_ifname} is missing")
    if not os.path.exists(netns):
        problems.append(f"network namespace {netns} does not exist")
        return problems
    with _ipr(netns) as ipr:
        index = _lookup(ipr, ifname)
        if index is None:
            problems.append(f"{ifname} is missing in {netns}")
            return problems
        have = {
            (a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=index)
        }
        for addr in addresses:
            if (str(addr.ip), addr.max_prefixlen) not in have:
                problems.append(f"address {addr.ip}/{addr.max_prefixlen} missing on {ifname}")
        if any(a.version == 4 for a in addresses):
            import socket

            defaults = [r for r in ipr.get_routes(family=socket.AF_INET, table=254)
                        if r["dst_len"] == 0 and r.get("oif") == index]
            v4_defaults = [r for r in defaults if r.get("gateway") == POD_GATEWAY_V4]
            if not v4_defaults:
                problems.append(f"default route via {POD_GATEWAY_V4} dev {ifname} is missing")
        if any(a.version == 6 for a in addresses):
            import socket

            v6_defaults = [r for r in ipr.get_routes(family=socket.AF_INET6, table=254)
                           if r["dst_len"] == 0 and r.get("oif") == index
                           and r.get("gateway") == POD_GATEWAY_V6]
            if not v6_defaults:
                problems.append(f"default route via {POD_GATEWAY_V6} dev {ifname} is missing")
    return problems
