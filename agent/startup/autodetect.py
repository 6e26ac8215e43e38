"""Which of the host's addresses is the node's address — Calico's IP_AUTODETECTION_METHOD.

The choice is pure (`choose_address` over a list of `HostInterface`s); gathering the interfaces
and asking the kernel for a route (`can-reach`) are the only I/O, in `read_host_interfaces` and
`route_source`. Methods, as in Calico:

    first-found                 first usable address on an interface Calico does not skip
    interface=REGEX,...         first address on an interface whose name matches one regex
    skip-interface=REGEX,...    first-found, but also skipping interfaces matching these
    can-reach=DEST              the source address the kernel would use to reach DEST
    cidr=CIDR,...               first address inside one of the CIDRs (skip list applies)
    kubernetes-internal-ip      the Node's InternalIP address (from its status)

The result keeps its prefix length: `Node.spec.bgp.ipv4Address` is `10.0.1.5/24`, and the
prefix is what CrossSubnet compares.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "SKIPPED_INTERFACES",
    "AutodetectError",
    "HostInterface",
    "choose_address",
    "read_host_interfaces",
    "route_source",
]

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Interfaces first-found never picks (Calico's default exclusion list, plus our own devices).
SKIPPED_INTERFACES: tuple[str, ...] = (
    r"^docker.*", r"^cbr.*", r"^dummy.*", r"^virbr.*", r"^lxcbr.*", r"^veth.*", r"^lo$",
    r"^cali.*", r"^tunl.*", r"^flannel.*", r"^kube-ipvs.*", r"^cni.*", r"^vxlan\.calico.*",
    r"^vxlan-v6\.calico.*", r"^wireguard\.cali.*", r"^wg-v6\.cali.*", r"^br-.*", r"^nodelocaldns.*",
    r"^podman.*",
)


class AutodetectError(Exception):
    """No address found; names the method and what it saw, so the fix is obvious."""

    def __init__(self, method: str, reason: str, seen: Sequence[HostInterface]) -> None:
        listing = ", ".join(
            f"{i.name}[{' '.join(str(a) for a in i.addresses) or 'no address'}]" for i in seen
        )
        super().__init__(
            f"IP autodetection method {method!r} found no address: {reason}; "
            f"interfaces seen: {listing or 'none'}"
        )
        self.method = method


@dataclass(frozen=True, slots=True)
class HostInterface:
    name: str
    index: int
    addresses: tuple[IPInterface, ...]


def _usable(addr: IPInterface, version: int) -> bool:
    ip = addr.ip
    return ip.version == version and not (ip.is_loopback or ip.is_link_local or ip.is_multicast)


def _first(ifaces: Sequence[HostInterface], version: int) -> IPInterface | None:
    for iface in sorted(ifaces, key=lambda i: i.index):
        for addr in iface.addresses:
            if _usable(addr, version):
                return addr
    return None


def _regexes(method: str, spec: str) -> list[re.Pattern[str]]:
    try:
        return [re.compile(p.strip()) for p in spec.split(",") if p.strip()]
    except re.error as err:
        raise AutodetectError(method, f"bad regular expression: {err}", []) from None


def choose_address(
    method: str,
    interfaces: Sequence[HostInterface],
    *,
    version: int = 4,
    route_lookup: Callable[[IPAddress], IPAddress | None] | None = None,
    internal_ip: IPAddress | None = None,
) -> IPInterface:
    """Apply one autodetection method to the host's interfaces."""
    method = method.strip() or "first-found"
    name, _, arg = method.partition("=")
    skip = [re.compile(p) for p in SKIPPED_INTERFACES]

    def not_skipped(extra: Sequence[re.Pattern[str]] = ()) -> list[HostInterface]:
        return [i for i in interfaces if not any(p.search(i.name) for p in (*skip, *extra))]

    found: IPInterface | None
    if name == "first-found":
        found = _first(not_skipped(), version)
        reason = "no usable address on an interface that is not skipped"
    elif name == "interface":
        pats = _regexes(method, arg)
        found = _first([i for i in interfaces if any(p.search(i.name) for p in pats)], version)
        reason = f"no interface matching {arg!r} has a usable IPv{version} address"
    elif name == "skip-interface":
        found = _first(not_skipped(_regexes(method, arg)), version)
        reason = f"every interface is skipped or matches {arg!r}"
    elif name == "cidr":
        try:
            nets = [ipaddress.ip_network(c.strip(), strict=False) for c in arg.split(",") if c]
        except ValueError as err:
            raise AutodetectError(method, f"bad CIDR: {err}", interfaces) from None
        found = _first(
            [
                HostInterface(i.name, i.index, tuple(a for a in i.addresses
                                                     if any(a.ip in n for n in nets)))
                for i in not_skipped()
            ],
            version,
        )
        reason = f"no address inside {arg} on an interface that is not skipped"
    elif name == "can-reach":
        try:
            dest = ipaddress.ip_address(arg.strip())
        except ValueError:
            raise AutodetectError(method, f"{arg!r} is not an IP address", interfaces) from None
        source = route_lookup(dest) if route_lookup is not None else None
        found = _owning_interface_address(interfaces, source)
        reason = f"the kernel has no route to {dest}" if source is None else (
            f"source {source} of the route to {dest} is on no interface")
    elif name == "kubernetes-internal-ip":
        found = _owning_interface_address(interfaces, internal_ip)
        reason = ("the Kubernetes Node has no InternalIP" if internal_ip is None
                  else f"InternalIP {internal_ip} is on no host interface")
    else:
        raise AutodetectError(
            method,
            "unknown method (use first-found, interface=, skip-interface=, can-reach=, cidr= "
            "or kubernetes-internal-ip)",
            interfaces,
        )
    if found is None:
        raise AutodetectError(method, reason, interfaces)
    return found


def _owning_interface_address(
    interfaces: Sequence[HostInterface], ip: IPAddress | None
) -> IPInterface | None:
    if ip is None:
        return None
    for iface in interfaces:
        for addr in iface.addresses:
            if addr.ip == ip:
                return addr
    return None


def read_host_interfaces(version: int = 4) -> list[HostInterface]:
    """The host's interfaces that hold an address of `version` usable as the node's (for IPv6:
    not link-local), with those addresses, from netlink.

    Not a dump of every link and address: a node with 10,000 pods has 10,000 `cali*` veths, each
    with an IPv6 link-local address, and pyroute2 took seconds and hundreds of MB to build them
    all, on every upkeep run. IPv6 (only with `IP6=autodetect`) does read those link-local
    addresses, but builds an interface only for the links that hold another address."""
    from pyroute2 import IPRoute  # local: keep `import agent` cheap for the CLI
    from pyroute2.netlink.exceptions import NetlinkError

    family = socket.AF_INET if version == 4 else socket.AF_INET6
    by_index: dict[int, list[IPInterface]] = {}
    result: list[HostInterface] = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr(family=family):
            addr = msg.get_attr("IFA_ADDRESS")
            if not addr or (version == 6 and addr.lower().startswith("fe80:")):
                continue
            by_index.setdefault(msg["index"], []).append(
                ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}"))
        for index, addrs in sorted(by_index.items()):
            try:
                links = ipr.get_links(index)
            except NetlinkError:
                continue  # gone since the address dump
            for link in links:
                result.append(HostInterface(str(link.get_attr("IFLA_IFNAME")), index,
                                            tuple(addrs)))
    return result


def route_source(dest: IPAddress) -> IPAddress | None:
    """The source address the kernel would pick to reach `dest` (a lookup: nothing is sent)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=str(dest),
                               family=socket.AF_INET if dest.version == 4 else socket.AF_INET6)
        except NetlinkError:
            return None
    for route in routes:
        src = route.get_attr("RTA_PREFSRC")
        if src:
            return ipaddress.ip_address(src)
    return None
