"""IPAM objects (libcalico-go's model): blocks of pod addresses, who owns them, who holds what.

A block is the unit a node claims (`BlockAffinity`) and announces; inside it, `allocations[i]`
is the index into `attributes` of the handle holding address i (null when free), and
`unallocated` lists the free ordinals in the order they will be handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from wren.model._fields import (
    BOOL,
    NAME,
    STR,
    Enum,
    FieldError,
    Int,
    IPNetwork,
    ListOf,
    MapOf,
    Net,
    Nullable,
    Obj,
    Str,
    j,
    sub,
)
from wren.model.base import Resource, register

__all__ = [
    "AFFINITY_STATES",
    "AllocationAttribute",
    "BlockAffinity",
    "BlockAffinitySpec",
    "IPAMBlock",
    "IPAMBlockSpec",
    "IPAMConfiguration",
    "IPAMConfigurationSpec",
    "IPAMHandle",
    "IPAMHandleSpec",
]

AFFINITY_STATES = ("confirmed", "pending", "pendingDeletion")


def _check_affinity(value: str) -> str | None:
    kind, sep, rest = value.partition(":")
    if not sep or not rest or kind not in ("host", "virtual"):
        return f"affinity {value!r} must look like host:<node> (or virtual:<name>)"
    return None


def _check_cidr_key(value: str) -> str | None:
    try:
        Net().load(value, "")
    except FieldError as e:
        return e.rule
    return None


@dataclass(frozen=True, kw_only=True)
class IPAMConfigurationSpec:
    strict_affinity: bool = field(default=False, metadata=j("strictAffinity", BOOL, always=True))
    max_blocks_per_host: int = field(default=0, metadata=j("maxBlocksPerHost", Int(0, 1000000)))
    auto_allocate_blocks: bool = field(
        default=True, metadata=j("autoAllocateBlocks", BOOL, always=True)
    )
    kube_virt_vm_address_persistence: str | None = field(
        default=None, metadata=j("kubeVirtVMAddressPersistence", Enum("Enabled", "Disabled"))
    )
    ip_cooldown_seconds: int = field(
        default=0, metadata=j("ipCooldownSeconds", Int(0, 1200))
    )


@register
@dataclass(frozen=True, slots=True)
class IPAMConfiguration(Resource):
    KIND: ClassVar[str] = "IPAMConfiguration"
    SPEC: ClassVar[type[Any]] = IPAMConfigurationSpec
    spec: IPAMConfigurationSpec


@dataclass(frozen=True, kw_only=True)
class AllocationAttribute:
    """Who holds an allocation: the handle, plus free-form owner attributes (pod, namespace)."""

    handle_id: str | None = field(default=None, metadata=j("handle_id", STR))
    secondary: dict[str, str] = field(default_factory=dict, metadata=j("secondary", MapOf(STR)))
    alternate_owner_attrs: dict[str, str] = field(
        default_factory=dict, metadata=j("alternateOwnerAttrs", MapOf(STR))
    )
    released_at: str | None = field(default=None, metadata=j("releasedAt", STR))


@dataclass(frozen=True, kw_only=True)
class IPAMBlockSpec:
    cidr: IPNetwork = field(metadata=j("cidr", Net(), always=True, required=True))
    affinity: str | None = field(default=None, metadata=j("affinity", Str(_check_affinity)))
    affinity_claim_time: str | None = field(
        default=None, metadata=j("affinityClaimTime", STR)
    )
    allocations: tuple[int | None, ...] = field(
        default=(), metadata=j("allocations", ListOf(Nullable(Int(0))), always=True)
    )
    unallocated: tuple[int, ...] = field(
        default=(), metadata=j("unallocated", ListOf(Int(0)), always=True)
    )
    attributes: tuple[AllocationAttribute, ...] = field(
        default=(), metadata=j("attributes", ListOf(Obj(AllocationAttribute)), always=True)
    )
    sequence_number: int = field(default=0, metadata=j("sequenceNumber", Int(0), always=True))
    sequence_number_for_allocation: dict[str, int] = field(
        default_factory=dict, metadata=j("sequenceNumberForAllocation", MapOf(Int(0)))
    )
    deleted: bool = field(default=False, metadata=j("deleted", BOOL, always=True))
    strict_affinity: bool = field(default=False, metadata=j("strictAffinity", BOOL, always=True))

    @property
    def size(self) -> int:
        return int(self.cidr.num_addresses)

    def _check(self, path: str) -> None:
        """Allocation bookkeeping must be self-consistent, or IPAM would hand out an address
        twice; a block in this state is reported instead of used."""
        size = self.size
        if self.cidr.prefixlen < (20 if self.cidr.version == 4 else 116):
            raise FieldError(sub(path, "cidr"), f"block {self.cidr} is larger than any pool block")
        if self.allocations and len(self.allocations) != size:
            raise FieldError(sub(path, "allocations"),
                             f"has {len(self.allocations)} entries for a block of {size} addresses")
        for i, attr in enumerate(self.allocations):
            if attr is not None and attr >= len(self.attributes):
                raise FieldError(sub(sub(path, "allocations"), i),
                                 f"points at attribute {attr}, but there are only "
                                 f"{len(self.attributes)}")
        seen: set[int] = set()
        for i, ordinal in enumerate(self.unallocated):
            where = sub(sub(path, "unallocated"), i)
            if ordinal >= size:
                raise FieldError(where, f"ordinal {ordinal} is outside a block of {size}")
            if ordinal in seen:
                raise FieldError(where, f"ordinal {ordinal} is listed twice")
            if self.allocations and self.allocations[ordinal] is not None:
                raise FieldError(where, f"ordinal {ordinal} is free and allocated at once")
            seen.add(ordinal)


@register
@dataclass(frozen=True, slots=True)
class IPAMBlock(Resource):
    KIND: ClassVar[str] = "IPAMBlock"
    SPEC: ClassVar[type[Any]] = IPAMBlockSpec
    spec: IPAMBlockSpec

    @property
    def cidr(self) -> IPNetwork:
        return self.spec.cidr

    @property
    def affinity_node(self) -> str | None:
        """The node a `host:<node>` affinity names; None for no or a non-host affinity."""
        aff = self.spec.affinity
        if aff and aff.startswith("host:"):
            return aff[len("host:"):]
        return None


@dataclass(frozen=True, kw_only=True)
class BlockAffinitySpec:
    state: str = field(metadata=j("state", Enum(*AFFINITY_STATES), always=True, required=True))
    node: str = field(metadata=j("node", NAME, always=True, required=True))
    cidr: IPNetwork = field(metadata=j("cidr", Net(), always=True, required=True))
    type: str = field(default="", metadata=j("type", Enum("host", "virtual")))
    deleted: bool = field(default=False, metadata=j("deleted", BOOL, always=True))


@register
@dataclass(frozen=True, slots=True)
class BlockAffinity(Resource):
    KIND: ClassVar[str] = "BlockAffinity"
    SPEC: ClassVar[type[Any]] = BlockAffinitySpec
    spec: BlockAffinitySpec


@dataclass(frozen=True, kw_only=True)
class IPAMHandleSpec:
    """`block` counts how many addresses the handle holds in each block (by block CIDR)."""

    handle_id: str = field(
        metadata=j("handleID", Str(allow_empty=False), always=True, required=True)
    )
    block: dict[str, int] = field(
        default_factory=dict, metadata=j("block", MapOf(Int(0), _check_cidr_key), always=True)
    )
    deleted: bool = field(default=False, metadata=j("deleted", BOOL, always=True))


@register
@dataclass(frozen=True, slots=True)
class IPAMHandle(Resource):
    KIND: ClassVar[str] = "IPAMHandle"
    SPEC: ClassVar[type[Any]] = IPAMHandleSpec
    spec: IPAMHandleSpec
