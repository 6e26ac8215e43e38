"""Node: a host in the cluster, its BGP identity and its tunnel addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wren.model._fields import (
    AS_NUMBER,
    MAC,
    NAME,
    STR,
    Addr,
    Enum,
    FieldError,
    Iface,
    IPAddress,
    ListOf,
    Obj,
    Str,
    j,
    sub,
)
from wren.model.base import Resource, register

__all__ = ["Node", "NodeAddress", "NodeBGPSpec", "NodeSpec", "OrchRef"]


def _check_ip_or_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return f"{value!r} is not an IP address or CIDR"
    return None


@dataclass(frozen=True, kw_only=True)
class NodeBGPSpec:
    """The node's BGP identity. Addresses carry their prefix (192.0.2.10/24): the prefix says
    which subnet the node is on, which CrossSubnet encapsulation decides by."""

    as_number: int | None = field(default=None, metadata=j("asNumber", AS_NUMBER))
    ipv4_address: ipaddress.IPv4Interface | None = field(
        default=None, metadata=j("ipv4Address", Iface(4))
    )
    ipv6_address: ipaddress.IPv6Interface | None = field(
        default=None, metadata=j("ipv6Address", Iface(6))
    )
    ipv4_ipip_tunnel_addr: ipaddress.IPv4Address | None = field(
        default=None, metadata=j("ipv4IPIPTunnelAddr", Addr(4))
    )
    route_reflector_cluster_id: ipaddress.IPv4Address | None = field(
        default=None, metadata=j("routeReflectorClusterID", Addr(4))
    )


@dataclass(frozen=True, kw_only=True)
class OrchRef:
    orchestrator: str = field(metadata=j("orchestrator", STR, required=True))
    node_name: str = field(default="", metadata=j("nodeName", STR))


@dataclass(frozen=True, kw_only=True)
class NodeAddress:
    address: str = field(metadata=j("address", Str(_check_ip_or_cidr), required=True))
    type: str | None = field(
        default=None, metadata=j("type", Enum("CalicoNodeIP", "InternalIP", "ExternalIP"))
    )


@dataclass(frozen=True, kw_only=True)
class NodeWireguardSpec:
    interface_ipv4_address: IPAddress | None = field(
        default=None, metadata=j("interfaceIPv4Address", Addr(4))
    )
    interface_ipv6_address: IPAddress | None = field(
        default=None, metadata=j("interfaceIPv6Address", Addr(6))
    )


@dataclass(frozen=True, kw_only=True)
class NodeInterface:
    name: str = field(default="", metadata=j("name", NAME))
    addresses: tuple[str, ...] = field(
        default=(), metadata=j("addresses", ListOf(Str(_check_ip_or_cidr)))
    )


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    bgp: NodeBGPSpec | None = field(default=None, metadata=j("bgp", Obj(NodeBGPSpec)))
    ipv4_vxlan_tunnel_addr: ipaddress.IPv4Address | None = field(
        default=None, metadata=j("ipv4VXLANTunnelAddr", Addr(4))
    )
    vxlan_tunnel_mac_addr: str = field(default="", metadata=j("vxlanTunnelMACAddr", MAC))
    ipv6_vxlan_tunnel_addr: ipaddress.IPv6Address | None = field(
        default=None, metadata=j("ipv6VXLANTunnelAddr", Addr(6))
    )
    vxlan_tunnel_mac_addr_v6: str = field(default="", metadata=j("vxlanTunnelMACAddrV6", MAC))
    orch_refs: tuple[OrchRef, ...] = field(default=(), metadata=j("orchRefs", ListOf(Obj(OrchRef))))
    addresses: tuple[NodeAddress, ...] = field(
        default=(), metadata=j("addresses", ListOf(Obj(NodeAddress)))
    )
    wireguard: NodeWireguardSpec | None = field(
        default=None, metadata=j("wireguard", Obj(NodeWireguardSpec))
    )
    interfaces: tuple[NodeInterface, ...] = field(
        default=(), metadata=j("interfaces", ListOf(Obj(NodeInterface)))
    )

    def _check(self, path: str) -> None:
        if self.bgp is not None and self.bgp == NodeBGPSpec():
            raise FieldError(sub(path, "bgp"), "spec.bgp should not be empty")


@register
@dataclass(frozen=True, slots=True)
class Node(Resource):
    KIND: ClassVar[str] = "Node"
    SPEC: ClassVar[type[Any]] = NodeSpec
    spec: NodeSpec

    @property
    def ipv4_address(self) -> ipaddress.IPv4Interface | None:
        """The node's IPv4 BGP address with its subnet prefix, if it has one."""
        return self.spec.bgp.ipv4_address if self.spec.bgp else None

    @property
    def ipv6_address(self) -> ipaddress.IPv6Interface | None:
        return self.spec.bgp.ipv6_address if self.spec.bgp else None

    @property
    def as_number(self) -> int | None:
        """The node's own AS number; None means the cluster's (BGPConfiguration) AS."""
        return self.spec.bgp.as_number if self.spec.bgp else None

    @property
    def route_reflector_cluster_id(self) -> ipaddress.IPv4Address | None:
        return self.spec.bgp.route_reflector_cluster_id if self.spec.bgp else None

    @property
    def ipv4_ipip_tunnel_addr(self) -> ipaddress.IPv4Address | None:
        return self.spec.bgp.ipv4_ipip_tunnel_addr if self.spec.bgp else None


