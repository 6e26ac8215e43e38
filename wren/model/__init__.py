"""Typed, validated Calico resources: parse raw bodies, check every rule, write them back.

    body (dict, v3 or CRD form) ──parse()──► Resource (frozen; metadata + typed spec)
                                 ◄─to_body()─

`parse` is the only way in from untrusted data: unknown fields, malformed addresses, values out
of range and rules that span fields (IPIP with VXLAN, a block bigger than its pool) raise
`wren.errors.ValidationError` with kind, name, dotted field path and the rule. Cross-resource
rules (overlapping pools) live in `wren.client`, which sees the datastore.
"""

from __future__ import annotations

from wren.model._fields import format_duration, parse_as_number, parse_duration
from wren.model.base import Metadata, Resource, parse, parse_as, resource_class
from wren.model.bgp import (
    DEFAULT_AS_NUMBER,
    BGPConfiguration,
    BGPConfigurationSpec,
    BGPFilter,
    BGPFilterRule,
    BGPFilterSpec,
    BGPPassword,
    BGPPeer,
    BGPPeerSpec,
    Community,
    PrefixAdvertisement,
    SecretKeyRef,
    ServiceIPBlock,
    split_peer_ip,
)
from wren.model.felix import FelixConfiguration, FelixConfigurationSpec, RouteTableRange
from wren.model.ipam import (
    AllocationAttribute,
    BlockAffinity,
    BlockAffinitySpec,
    IPAMBlock,
    IPAMBlockSpec,
    IPAMConfiguration,
    IPAMConfigurationSpec,
    IPAMHandle,
    IPAMHandleSpec,
)
from wren.model.node import Node, NodeAddress, NodeBGPSpec, NodeSpec, OrchRef
from wren.model.pool import IPPool, IPPoolSpec, IPReservation, IPReservationSpec
from wren.model.workload import (
    IPNAT,
    WorkloadEndpoint,
    WorkloadEndpointPort,
    WorkloadEndpointSpec,
)

__all__ = [
    "DEFAULT_AS_NUMBER",
    "IPNAT",
    "AllocationAttribute",
    "BGPConfiguration",
    "BGPConfigurationSpec",
    "BGPFilter",
    "BGPFilterRule",
    "BGPFilterSpec",
    "BGPPassword",
    "BGPPeer",
    "BGPPeerSpec",
    "BlockAffinity",
    "BlockAffinitySpec",
    "Community",
    "FelixConfiguration",
    "FelixConfigurationSpec",
    "IPAMBlock",
    "IPAMBlockSpec",
    "IPAMConfiguration",
    "IPAMConfigurationSpec",
    "IPAMHandle",
    "IPAMHandleSpec",
    "IPPool",
    "IPPoolSpec",
    "IPReservation",
    "IPReservationSpec",
    "Metadata",
    "Node",
    "NodeAddress",
    "NodeBGPSpec",
    "NodeSpec",
    "OrchRef",
    "PrefixAdvertisement",
    "Resource",
    "RouteTableRange",
    "SecretKeyRef",
    "ServiceIPBlock",
    "WorkloadEndpoint",
    "WorkloadEndpointPort",
    "WorkloadEndpointSpec",
    "format_duration",
    "parse",
    "parse_as",
    "parse_as_number",
    "parse_duration",
    "resource_class",
    "split_peer_ip",
]
