"""IPPool and IPReservation: which addresses pods get, and how traffic to them leaves a node."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wren.model._fields import (
    BOOL,
    Enum,
    FieldError,
    Int,
    IPNetwork,
    ListOf,
    Net,
    j,
    sub,
)
from wren.model.base import Resource, register
from wren.model.selectors import SELECTOR

__all__ = [
    "ENCAP_MODES",
    "IPPool",
    "IPPoolSpec",
    "IPReservation",
    "IPReservationSpec",
]

ENCAP_MODES = ("Never", "Always", "CrossSubnet")
ALLOWED_USES = ("Workload", "Tunnel", "LoadBalancer")
DEFAULT_ALLOWED_USES = ("Workload", "Tunnel")
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
BLOCK_SIZE_RANGE = {4: (20, 32), 6: (116, 128)}
_LINK_LOCAL = {
    4: ipaddress.ip_network("169.254.0.0/16"),
    6: ipaddress.ip_network("fe80::/10"),
}


@dataclass(frozen=True, kw_only=True)
class IPPoolSpec:
    """Calico's IPPoolSpec. `block_size` 0 means "Calico's default for the family" (26 / 122)."""

    cidr: IPNetwork = field(metadata=j("cidr", Net(), always=True, required=True))
    block_size: int = field(default=0, metadata=j("blockSize", Int(), always=True))
    ipip_mode: str = field(default="Never", metadata=j("ipipMode", Enum(*ENCAP_MODES),
                                                         always=True))
    vxlan_mode: str = field(default="Never", metadata=j("vxlanMode", Enum(*ENCAP_MODES),
                                                          always=True))
    nat_outgoing: bool = field(default=False, metadata=j("natOutgoing", BOOL, always=True))
    disabled: bool = field(default=False, metadata=j("disabled", BOOL))
    disable_bgp_export: bool = field(default=False, metadata=j("disableBGPExport", BOOL))
    node_selector: str = field(default="all()", metadata=j("nodeSelector", SELECTOR,
                                                             always=True))
    namespace_selector: str = field(default="", metadata=j("namespaceSelector", SELECTOR))
    allowed_uses: tuple[str, ...] = field(
        default=DEFAULT_ALLOWED_USES,
        metadata=j("allowedUses", ListOf(Enum(*ALLOWED_USES)), always=True),
    )
    assignment_mode: str | None = field(
        default=None, metadata=j("assignmentMode", Enum("Automatic", "Manual"))
    )

    def __post_init__(self) -> None:
        # Calico's defaulting: family-dependent block size, empty selector = all(), no uses =
        # the default uses. Done here so a spec built in code behaves like a parsed one.
        if self.block_size == 0:
            object.__setattr__(self, "block_size", DEFAULT_BLOCK_SIZE[self.cidr.version])
        if not self.node_selector.strip():
            object.__setattr__(self, "node_selector", "all()")
        if not self.allowed_uses:
            object.__setattr__(self, "allowed_uses", DEFAULT_ALLOWED_USES)

    @property
    def ip_version(self) -> int:
        return self.cidr.version

    def _check(self, path: str) -> None:
        version = self.cidr.version
        lo, hi = BLOCK_SIZE_RANGE[version]
        if not lo <= self.block_size <= hi:
            raise FieldError(sub(path, "blockSize"),
                             f"blockSize {self.block_size} out of range {lo}-{hi} for an "
                             f"IPv{version} pool")
        if self.block_size < self.cidr.prefixlen and not self.disabled:
            # A disabled pool hands out nothing, so Calico lets it be smaller than a block.
            raise FieldError(sub(path, "blockSize"),
                             f"blockSize /{self.block_size} is larger than the pool {self.cidr} "
                             f"(block size must be at least /{self.cidr.prefixlen})")
        if self.cidr.overlaps(_LINK_LOCAL[version]):
            raise FieldError(sub(path, "cidr"),
                             f"{self.cidr} overlaps the link-local range {_LINK_LOCAL[version]}")
        if version == 6 and self.ipip_mode != "Never":
            raise FieldError(sub(path, "ipipMode"), "IPIP is not supported on an IPv6 pool")
        if self.ipip_mode != "Never" and self.vxlan_mode != "Never":
            raise FieldError(sub(path, "vxlanMode"),
                             f"ipipMode {self.ipip_mode} and vxlanMode {self.vxlan_mode} cannot "
                             "both be enabled on one pool")
        if len(set(self.allowed_uses)) != len(self.allowed_uses):
            raise FieldError(sub(path, "allowedUses"), "lists a use twice")
        if "LoadBalancer" in self.allowed_uses:
            if len(self.allowed_uses) > 1:
                raise FieldError(sub(path, "allowedUses"),
                                 "LoadBalancer cannot be combined with other uses")
            if self.node_selector != "all()":
                raise FieldError(sub(path, "nodeSelector"),
                                 "a LoadBalancer pool must have nodeSelector all()")
            if self.ipip_mode != "Never" or self.vxlan_mode != "Never":
                raise FieldError(sub(path, "allowedUses"),
                                 "a LoadBalancer pool cannot have IPIP or VXLAN enabled")
            if self.disable_bgp_export:
                raise FieldError(sub(path, "disableBGPExport"),
                                 "a LoadBalancer pool cannot disable BGP export")
        if "Tunnel" in self.allowed_uses and self.namespace_selector.strip():
            raise FieldError(sub(path, "namespaceSelector"),
                             "a pool for Tunnel addresses cannot have a namespaceSelector")
        for key, text in (("nodeSelector", self.node_selector),
                          ("namespaceSelector", self.namespace_selector)):
            if "global(" in text:
                raise FieldError(sub(path, key), "global() is not valid in a pool selector")


@register
@dataclass(frozen=True, slots=True)
class IPPool(Resource):
    KIND: ClassVar[str] = "IPPool"
    SPEC: ClassVar[type[Any]] = IPPoolSpec
    spec: IPPoolSpec

    @property
    def ip_version(self) -> int:
        return self.spec.cidr.version

    @property
    def cidr(self) -> IPNetwork:
        return self.spec.cidr


@dataclass(frozen=True, kw_only=True)
class IPReservationSpec:
    reserved_cidrs: tuple[IPNetwork, ...] = field(
        # Calico's `cidrs` rule: addresses or CIDRs, host bits allowed (masked off here).
        default=(), metadata=j("reservedCIDRs", ListOf(Net(strict=False)))
    )


@register
@dataclass(frozen=True, slots=True)
class IPReservation(Resource):
    KIND: ClassVar[str] = "IPReservation"
    SPEC: ClassVar[type[Any]] = IPReservationSpec
    spec: IPReservationSpec

