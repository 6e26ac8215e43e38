"""WorkloadEndpoint: a pod's interface on a node, its addresses and the veth it hangs on."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wren.model._fields import (
    MAC,
    NAME,
    OPAQUE,
    STR,
    Addr,
    FieldError,
    Int,
    IPAddress,
    IPNetwork,
    ListOf,
    Net,
    Obj,
    Str,
    j,
    sub,
)
from wren.model.base import Resource, register

__all__ = ["IPNAT", "WorkloadEndpoint", "WorkloadEndpointPort", "WorkloadEndpointSpec"]

_IFACE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PROTOCOLS = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")


def _check_iface(value: str) -> str | None:
    return None if _IFACE.match(value) else f"{value!r} is not a Linux interface name (1-15 chars)"


def _check_container_id(value: str) -> str | None:
    return None if _CONTAINER_ID.match(value) else f"{value!r} is not a container ID"


def _check_port_name(value: str) -> str | None:
    return None if _PORT_NAME.match(value) and len(value) <= 63 else f"{value!r}: bad port name"


class _Protocol(Str):
    """Calico's numorstring.Protocol: a protocol name or number 1-255, kept as given."""

    def load(self, value: Any, path: str) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 255:
                raise FieldError(path, f"protocol number {value} out of range 1-255")
            return value
        if isinstance(value, str) and (value in _PROTOCOLS or value.lower() in
                                       {p.lower() for p in _PROTOCOLS}):
            return value
        raise FieldError(path, f"unknown protocol {value!r} ({', '.join(_PROTOCOLS)} or 1-255)")


@dataclass(frozen=True, kw_only=True)
class WorkloadEndpointPort:
    name: str = field(default="", metadata=j("name", Str(_check_port_name), always=True))
    protocol: str | int = field(default="TCP", metadata=j("protocol", _Protocol(), always=True))
    port: int = field(metadata=j("port", Int(1, 65535), always=True, required=True))
    host_port: int = field(default=0, metadata=j("hostPort", Int(0, 65535)))
    host_ip: str = field(default="", metadata=j("hostIP", STR))


@dataclass(frozen=True, kw_only=True)
class IPNAT:
    internal_ip: IPAddress = field(metadata=j("internalIP", Addr(), required=True))
    external_ip: IPAddress = field(metadata=j("externalIP", Addr(), required=True))


@dataclass(frozen=True, kw_only=True)
class WorkloadEndpointSpec:
    orchestrator: str = field(default="", metadata=j("orchestrator", NAME))
    workload: str = field(default="", metadata=j("workload", NAME))
    node: str = field(default="", metadata=j("node", NAME))
    container_id: str = field(default="", metadata=j("containerID", Str(_check_container_id)))
    pod: str = field(default="", metadata=j("pod", NAME))
    endpoint: str = field(default="", metadata=j("endpoint", NAME))
    service_account_name: str = field(default="", metadata=j("serviceAccountName", NAME))
    ip_networks: tuple[IPNetwork, ...] = field(
        default=(), metadata=j("ipNetworks", ListOf(Net()))
    )
    ip_nats: tuple[IPNAT, ...] = field(default=(), metadata=j("ipNATs", ListOf(Obj(IPNAT))))
    ipv4_gateway: ipaddress.IPv4Address | None = field(
        default=None, metadata=j("ipv4Gateway", Addr(4))
    )
    ipv6_gateway: ipaddress.IPv6Address | None = field(
        default=None, metadata=j("ipv6Gateway", Addr(6))
    )
    profiles: tuple[str, ...] = field(default=(), metadata=j("profiles", ListOf(NAME)))
    interface_name: str = field(
        metadata=j("interfaceName", Str(_check_iface, allow_empty=False), required=True)
    )
    mac: str = field(default="", metadata=j("mac", MAC))
    ports: tuple[WorkloadEndpointPort, ...] = field(
        default=(), metadata=j("ports", ListOf(Obj(WorkloadEndpointPort)))
    )
    allow_spoofed_source_prefixes: tuple[IPNetwork, ...] = field(
        default=(), metadata=j("allowSpoofedSourcePrefixes", ListOf(Net()))
    )
    qos_controls: Any = field(default=None, metadata=j("qosControls", OPAQUE))

    def _check(self, path: str) -> None:
        for i, net in enumerate(self.ip_networks):
            if net.prefixlen != net.max_prefixlen:
                # Calico allows wider networks here, but Wren routes single addresses only.
                raise FieldError(sub(sub(path, "ipNetworks"), i),
                                 f"{net} must be a single address (/32 or /128)")
        for i, nat in enumerate(self.ip_nats):
            if not any(nat.internal_ip in net for net in self.ip_networks):
                raise FieldError(sub(sub(sub(path, "ipNATs"), i), "internalIP"),
                                 f"{nat.internal_ip} is not one of the endpoint's ipNetworks")


@register
@dataclass(frozen=True, slots=True)
class WorkloadEndpoint(Resource):
    KIND: ClassVar[str] = "WorkloadEndpoint"
    SPEC: ClassVar[type[Any]] = WorkloadEndpointSpec
    spec: WorkloadEndpointSpec
