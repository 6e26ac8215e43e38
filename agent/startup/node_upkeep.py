"""Keeps this node's own records true, as calico-node's startup does, and keeps them true later.

- `Node.spec.bgp.ipv4Address`: from `IP` (an address, `autodetect` or `none`), re-detected
  every `AUTODETECT_POLL_INTERVAL`; the prefix is kept because CrossSubnet compares subnets.
- `Node.spec.bgp.ipv6Address`: the same from `IP6` and `IP6_AUTODETECTION_METHOD`; with `IP6`
  unset the Node's IPv6 address is left as it is (set by hand, as calico-node does).
- the default pool from `CALICO_IPV4POOL_*`, only when no pool exists at all;
- tunnel addresses: an IPIP address (`spec.bgp.ipv4IPIPTunnelAddr`) while a pool uses IPIP, a
  VXLAN address and MAC (`spec.ipv4VXLANTunnelAddr`, `spec.vxlanTunnelMACAddr`) while one uses
  VXLAN, allocated by IPAM from pools that allow `Tunnel`; released when no pool needs them.

It runs on its own thread and writes only to the datastore; what it writes comes back to the
agent's loop through the watchers like any other change. Every write re-reads and retries on a
conflict, so it never overwrites a change someone else made to the Node meanwhile.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
from collections.abc import Callable, Mapping
from typing import Literal

from agent.calc.dataplane_calc import needs_vxlan_device, vxlan_mac_for
from agent.startup.autodetect import AutodetectError, HostInterface, choose_address
from agent.startup.default_pool import default_pool_body
from wren.client import Client
from wren.errors import AlreadyExists, Conflict, NotFound, ValidationError, WrenError
from wren.ipam.allocator import Ipam, tunnel_handle_id
from wren.log import get_logger
from wren.model import IPPool, Metadata, Node, NodeBGPSpec, NodeSpec, parse

__all__ = ["NodeUpkeep", "resolve_address", "resolve_address6"]

_log = get_logger(__name__)
IPv4Interface = ipaddress.IPv4Interface
IPv6Interface = ipaddress.IPv6Interface
_RouteLookup = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address],
                        ipaddress.IPv4Address | ipaddress.IPv6Address | None]


def resolve_address(
    ip_setting: str,
    method: str,
    interfaces: list[HostInterface],
    *,
    route_lookup: _RouteLookup | None = None,
    internal_ip: ipaddress.IPv4Address | None = None,
) -> IPv4Interface | None:
    """`IP`: `none` → no address; an address (with or without prefix) → that address, with the
    prefix of the interface holding it when none is given; `autodetect` → the method."""
    found = _resolve("IP", 4, ip_setting, method, interfaces, route_lookup=route_lookup,
                     internal_ip=internal_ip)
    assert found is None or isinstance(found, IPv4Interface)
    return found


def resolve_address6(
    ip6_setting: str,
    method: str,
    interfaces: list[HostInterface],
    *,
    route_lookup: _RouteLookup | None = None,
    internal_ip: ipaddress.IPv6Address | None = None,
) -> IPv6Interface | None:
    """`IP6`, read as `IP` is, for the Node's IPv6 address (link-local addresses never count)."""
    found = _resolve("IP6", 6, ip6_setting, method, interfaces, route_lookup=route_lookup,
                     internal_ip=internal_ip)
    assert found is None or isinstance(found, IPv6Interface)
    return found


def _resolve(name: str, version: int, setting_text: str, method: str,
             interfaces: list[HostInterface], *, route_lookup: _RouteLookup | None,
             internal_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             ) -> IPv4Interface | IPv6Interface | None:
    setting = setting_text.strip().lower()
    if setting == "none":
        return None
    if setting in ("", "autodetect"):
        return choose_address(method, interfaces, version=version, route_lookup=route_lookup,
                              internal_ip=internal_ip)
    kind = IPv4Interface if version == 4 else IPv6Interface
    try:
        given: IPv4Interface | IPv6Interface = kind(setting_text.strip())
    except ValueError:
        raise AutodetectError(f"{name}={setting_text}", f"not an IPv{version} address",
                              interfaces) from None
    if "/" not in setting_text:
        for iface in interfaces:
            for addr in iface.addresses:
                if addr.ip == given.ip and isinstance(addr, kind):
                    return addr
    return given


class NodeUpkeep:
    def __init__(
        self,
        *,
        node_name: str,
        client: Client,
        ipam: Ipam,
        detect_address: Callable[[Node | None], IPv4Interface | None],
        env: Mapping[str, str],
        detect_address6: Callable[[Node | None], IPv6Interface | None] | None = None,
        interval: float = 60.0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.node_name = node_name
        self._client = client
        self._ipam = ipam
        self._detect = detect_address
        self._detect6 = detect_address6  # None: IP6 unset, the Node's IPv6 address is not ours
        self._env = env
        self._interval = interval
        self._on_error = on_error
        self._poke = threading.Event()
        self.last_error = ""

    def poke(self) -> None:
        """Run again soon (pools changed: tunnel addresses may be needed)."""
        self._poke.set()

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_once()
            self._poke.wait(self._interval if not self.last_error else min(5.0, self._interval))
            self._poke.clear()

    def run_once(self) -> bool:
        try:
            self.ensure_default_pool()
            node = self.ensure_node()
            self.ensure_tunnel_addresses(node)
        except (WrenError, AutodetectError, ValueError) as err:
            self.last_error = str(err)
            _log.warning("node upkeep failed; will retry", node=self.node_name, error=str(err))
            if self._on_error is not None:
                self._on_error(str(err))
            return False
        self.last_error = ""
        return True

    # -- the duties ------------------------------------------------------------------------
    def ensure_default_pool(self) -> None:
        body = default_pool_body(self._env)
        if body is None or self._client.list(IPPool):
            return
        pool = parse(body)
        try:
            self._client.create(pool)
            _log.info("created the default pool", pool=pool.metadata.name,
                      cidr=str(body["spec"]["cidr"]))
        except AlreadyExists:
            pass

    def ensure_node(self) -> Node:
        """Create or update our Node with the address we detect now."""
        for _ in range(10):
            try:
                current: Node | None = self._client.get(Node, self.node_name)
            except NotFound:
                current = None
            address = self._detect(current)
            bgp = (current.spec.bgp if current is not None else None) or NodeBGPSpec()
            address6 = self._detect6(current) if self._detect6 is not None else bgp.ipv6_address
            if current is None:
                node = Node(metadata=Metadata(name=self.node_name),
                            spec=NodeSpec(bgp=NodeBGPSpec(ipv4_address=address,
                                                          ipv6_address=address6)))
                try:
                    created = self._client.create(node)
                    _log.info("registered node", node=self.node_name, address=str(address),
                              address6=str(address6))
                    return created
                except AlreadyExists:
                    continue
            if (bgp.ipv4_address, bgp.ipv6_address) == (address, address6):
                return current
            changed = dataclasses.replace(
                current, spec=dataclasses.replace(
                    current.spec, bgp=dataclasses.replace(bgp, ipv4_address=address,
                                                          ipv6_address=address6)))
            try:
                updated = self._client.update(changed)
                _log.info("node address changed", node=self.node_name,
                          old=str(bgp.ipv4_address), new=str(address),
                          old6=str(bgp.ipv6_address), new6=str(address6))
                return updated
            except Conflict:
                continue
        raise Conflict("Node", self.node_name, "gave up after 10 conflicting updates")

    def ensure_tunnel_addresses(self, node: Node) -> None:
        pools = [p for p in self._client.list(IPPool) if not p.spec.disabled]
        want_ipip = any(p.spec.ipip_mode != "Never" for p in pools)
        want_vxlan = needs_vxlan_device(pools)
        for _ in range(10):
            try:
                self._set_tunnels(node, want_ipip=want_ipip, want_vxlan=want_vxlan)
                return
            except Conflict:
                node = self._client.get(Node, self.node_name)
        raise Conflict("Node", self.node_name, "gave up after 10 conflicting updates")

    def _set_tunnels(self, node: Node, *, want_ipip: bool, want_vxlan: bool) -> None:
        bgp = node.spec.bgp or NodeBGPSpec()
        ipip = self._tunnel("ipip", want_ipip, bgp.ipv4_ipip_tunnel_addr)
        vxlan = self._tunnel("vxlan", want_vxlan, node.spec.ipv4_vxlan_tunnel_addr)
        mac = node.spec.vxlan_tunnel_mac_addr
        if vxlan is not None and not mac:
            mac = vxlan_mac_for(self.node_name)
        elif vxlan is None:
            mac = ""
        spec = dataclasses.replace(
            node.spec,
            bgp=dataclasses.replace(bgp, ipv4_ipip_tunnel_addr=ipip) if node.spec.bgp or ipip
            else node.spec.bgp,
            ipv4_vxlan_tunnel_addr=vxlan, vxlan_tunnel_mac_addr=mac,
        )
        if spec != node.spec:
            self._client.update(dataclasses.replace(node, spec=spec))
            _log.info("tunnel addresses", node=self.node_name, ipip=str(ipip), vxlan=str(vxlan))

    def _tunnel(
        self, kind: Literal["ipip", "vxlan"], wanted: bool, current: ipaddress.IPv4Address | None
    ) -> ipaddress.IPv4Address | None:
        if not wanted:
            if current is not None or self._ipam.ips_by_handle(tunnel_handle_id(self.node_name,
                                                                                 kind)):
                self._ipam.release_by_handle(tunnel_handle_id(self.node_name, kind))
            return None
        addr = self._ipam.tunnel_address(node=self.node_name, kind=kind)
        if not isinstance(addr, ipaddress.IPv4Address):
            raise ValidationError(kind="Node", name=self.node_name, field=f"{kind} tunnel",
                                  rule="IPAM returned a non-IPv4 tunnel address")
        return addr
