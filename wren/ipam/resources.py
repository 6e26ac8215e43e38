"""The IPAM resources as stored bodies (projectcalico.org/v3 field names), and back. Pure.

IPAM reads and writes IPAMBlock, BlockAffinity and IPAMHandle bodies through the raw `Backend`
contract: those kinds are IPAM's own bookkeeping, written only here, and every write must carry
the exact `resourceVersion` that was read (the compare-and-swap IPAM relies on). The field names
and names of objects follow Calico, so `kubectl get ipamblocks -o yaml` reads the same.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wren.datastore.backend import Body
from wren.ipam.block import Attribute, Block, Network

__all__ = [
    "AFFINITY_CONFIRMED",
    "AFFINITY_PENDING",
    "API_VERSION",
    "Affinity",
    "Handle",
    "IpamConfig",
    "Stored",
    "affinity_body",
    "affinity_from_body",
    "affinity_name",
    "block_body",
    "block_from_body",
    "block_name",
    "config_from_body",
    "handle_body",
    "handle_from_body",
    "handle_name",
]

API_VERSION = "projectcalico.org/v3"
AFFINITY_PENDING = "pending"
AFFINITY_CONFIRMED = "confirmed"


def _cidr_name(cidr: Network) -> str:
    """Calico's CIDR-to-name rule: '.', ':' and '/' become '-'."""
    return str(cidr).replace(".", "-").replace(":", "-").replace("/", "-")


def block_name(cidr: Network) -> str:
    return _cidr_name(cidr)


def affinity_name(node: str, cidr: Network) -> str:
    return f"{node}-{_cidr_name(cidr)}"


def handle_name(handle_id: str) -> str:
    """Handles are named by their ID, lower-cased: object names must be DNS subdomains."""
    return handle_id.lower()


@dataclass(frozen=True, slots=True)
class Stored:
    """What was read, with the resourceVersion a compare-and-swap write must present."""

    resource_version: str
    claim_time: str = ""


def block_body(block: Block, *, resource_version: str = "", claim_time: str = "") -> Body:
    spec: dict[str, Any] = {
        "cidr": str(block.cidr),
        "allocations": list(block.allocations),
        "unallocated": list(block.unallocated),
        "attributes": [
            {k: v for k, v in (("handle_id", a.handle_id), ("secondary", dict(a.secondary)))
             if v}
            for a in block.attributes
        ],
        "sequenceNumber": 0,
        "sequenceNumberForAllocation": {},
        "deleted": False,
        "strictAffinity": False,
    }
    if block.affinity:
        spec["affinity"] = block.affinity
        spec["affinityClaimTime"] = claim_time or _now()
    meta: dict[str, Any] = {"name": block_name(block.cidr)}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": API_VERSION, "kind": "IPAMBlock", "metadata": meta, "spec": spec}


def block_from_body(body: Mapping[str, Any]) -> tuple[Block, Stored]:
    spec = body.get("spec") or {}
    cidr = ipaddress.ip_network(spec["cidr"])
    allocations = tuple(None if a is None else int(a) for a in spec.get("allocations") or [])
    if not allocations:
        allocations = (None,) * cidr.num_addresses
    block = Block(
        cidr=cidr,
        affinity=spec.get("affinity") or None,
        allocations=allocations,
        unallocated=tuple(int(u) for u in spec.get("unallocated") or []),
        attributes=tuple(
            Attribute(handle_id=a.get("handle_id"), secondary=dict(a.get("secondary") or {}))
            for a in spec.get("attributes") or []
        ),
    )
    meta = body.get("metadata") or {}
    return block, Stored(str(meta.get("resourceVersion") or ""),
                         str(spec.get("affinityClaimTime") or ""))


@dataclass(frozen=True, slots=True)
class Affinity:
    node: str
    cidr: Network
    state: str
    resource_version: str = ""


def affinity_body(aff: Affinity) -> Body:
    meta: dict[str, Any] = {"name": affinity_name(aff.node, aff.cidr)}
    if aff.resource_version:
        meta["resourceVersion"] = aff.resource_version
    return {
        "apiVersion": API_VERSION,
        "kind": "BlockAffinity",
        "metadata": meta,
        "spec": {"state": aff.state, "node": aff.node, "cidr": str(aff.cidr), "deleted": False},
    }


def affinity_from_body(body: Mapping[str, Any]) -> Affinity:
    spec = body.get("spec") or {}
    return Affinity(
        node=str(spec.get("node", "")),
        cidr=ipaddress.ip_network(spec["cidr"]),
        state=str(spec.get("state") or AFFINITY_CONFIRMED),
        resource_version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
    )


@dataclass(frozen=True, slots=True)
class Handle:
    """How many addresses a handle holds in each block: found without scanning every block."""

    handle_id: str
    blocks: Mapping[str, int] = field(default_factory=dict)
    resource_version: str = ""


def handle_body(handle: Handle) -> Body:
    meta: dict[str, Any] = {"name": handle_name(handle.handle_id)}
    if handle.resource_version:
        meta["resourceVersion"] = handle.resource_version
    return {
        "apiVersion": API_VERSION,
        "kind": "IPAMHandle",
        "metadata": meta,
        "spec": {"handleID": handle.handle_id, "block": dict(handle.blocks), "deleted": False},
    }


def handle_from_body(body: Mapping[str, Any]) -> Handle:
    spec = body.get("spec") or {}
    return Handle(
        handle_id=str(spec.get("handleID", "")),
        blocks={str(k): int(v) for k, v in (spec.get("block") or {}).items()},
        resource_version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
    )


@dataclass(frozen=True, slots=True)
class IpamConfig:
    """IPAMConfiguration `default`; absent means Calico's defaults."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0


def config_from_body(body: Mapping[str, Any] | None) -> IpamConfig:
    if body is None:
        return IpamConfig()
    spec = body.get("spec") or {}
    return IpamConfig(
        strict_affinity=bool(spec.get("strictAffinity", False)),
        auto_allocate_blocks=bool(spec.get("autoAllocateBlocks", True)),
        max_blocks_per_host=int(spec.get("maxBlocksPerHost") or 0),
    )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
