"""BGPPeer, BGPConfiguration and BGPFilter: who talks BGP to whom, and what they say."""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wren.model._fields import (
    AS_NUMBER,
    BOOL,
    DURATION,
    NAME,
    STR,
    Addr,
    Enum,
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
from wren.model.selectors import SELECTOR

__all__ = [
    "DEFAULT_AS_NUMBER",
    "BGPConfiguration",
    "BGPConfigurationSpec",
    "BGPFilter",
    "BGPFilterRule",
    "BGPFilterSpec",
    "BGPPassword",
    "BGPPeer",
    "BGPPeerSpec",
    "Community",
    "PrefixAdvertisement",
    "SecretKeyRef",
    "ServiceIPBlock",
    "split_peer_ip",
]

DEFAULT_AS_NUMBER = 64512
DEFAULT_BGP_PORT = 179
PROGRAM_CLUSTER_ROUTES = ("Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly")

_IPV4_PORT = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+):(\d+)$")
_IPV6_PORT = re.compile(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$")
_IFACE = re.compile(r"^[a-zA-Z0-9_.*-]{1,15}$")
_STANDARD_COMMUNITY = re.compile(r"^(\d+):(\d+)$")
_LARGE_COMMUNITY = re.compile(r"^(\d+):(\d+):(\d+)$")
_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "fatal")


def split_peer_ip(value: str) -> tuple[IPAddress, int | None]:
    """`peerIP` as Calico takes it: "addr", "v4:port" or "[v6]:port". Raises ValueError."""
    port: int | None = None
    host = value
    if m := _IPV4_PORT.match(value):
        host, port = value.rsplit(":", 1)[0], int(m.group(5))
    elif m := _IPV6_PORT.match(value):
        host, port = m.group(1), int(m.group(2))
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{value!r} is not <IP>, <IPv4>:<port> or [<IPv6>]:<port>"
        ) from None
    if port is not None and not 0 < port <= 65535:
        raise ValueError(f"{value!r}: port {port} out of range 1-65535")
    return addr, port


def _check_peer_ip(value: str) -> str | None:
    try:
        split_peer_ip(value)
    except ValueError as e:
        return str(e)
    return None


def _check_community(value: str) -> str | None:
    """Standard aa:nn (16-bit parts) or large aa:nn:mm (32-bit parts) community."""
    if m := _STANDARD_COMMUNITY.match(value):
        bits = 16
    elif m := _LARGE_COMMUNITY.match(value):
        bits = 32
    else:
        return f"{value!r} is not a community (aa:nn or aa:nn:mm)"
    if any(int(part) >= 1 << bits for part in m.groups()):
        return f"community {value!r}: each part must fit in {bits} bits"
    return None


def check_log_level(value: str) -> str | None:
    if value.lower() in _LOG_LEVELS:
        return None
    return f"unknown log severity {value!r} (Trace, Debug, Info, Warning, Error, Fatal)"


def _check_iface(value: str) -> str | None:
    if _IFACE.match(value):
        return None
    return f"{value!r} is not an interface name or pattern (1-15 of [a-zA-Z0-9_.*-])"


# -- shared pieces ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SecretKeyRef:
    """Kubernetes' SecretKeySelector: the Secret (in Wren's namespace) and the key in it."""

    name: str = field(metadata=j("name", NAME, required=True))
    key: str = field(metadata=j("key", Str(allow_empty=False), required=True))
    optional: bool | None = field(default=None, metadata=j("optional", BOOL))


@dataclass(frozen=True, kw_only=True)
class BGPPassword:
    secret_key_ref: SecretKeyRef | None = field(
        default=None, metadata=j("secretKeyRef", Obj(SecretKeyRef))
    )


# -- BGPPeer -------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class BGPPeerSpec:
    """Calico's BGPPeerSpec. `node` / `node_selector` say which nodes peer (neither = all);
    `peer_ip` or `peer_selector` say with whom."""

    node: str = field(default="", metadata=j("node", NAME))
    node_selector: str = field(default="", metadata=j("nodeSelector", SELECTOR))
    peer_ip: str = field(default="", metadata=j("peerIP", Str(_check_peer_ip)))
    as_number: int | None = field(default=None, metadata=j("asNumber", AS_NUMBER))
    local_as_number: int | None = field(default=None, metadata=j("localASNumber", AS_NUMBER))
    peer_selector: str = field(default="", metadata=j("peerSelector", SELECTOR))
    keep_original_next_hop: bool = field(default=False, metadata=j("keepOriginalNextHop", BOOL))
    next_hop_mode: str | None = field(
        default=None, metadata=j("nextHopMode", Enum("Auto", "Self", "Keep"))
    )
    password: BGPPassword | None = field(default=None, metadata=j("password", Obj(BGPPassword)))
    source_address: str = field(
        default="UseNodeIP", metadata=j("sourceAddress", Enum("UseNodeIP", "None"))
    )
    max_restart_time: datetime.timedelta | None = field(
        default=None, metadata=j("maxRestartTime", DURATION)
    )
    keepalive_time: datetime.timedelta | None = field(
        default=None, metadata=j("keepaliveTime", DURATION)
    )
    num_allowed_local_as_numbers: int | None = field(
        default=None, metadata=j("numAllowedLocalASNumbers", Int(0, 2147483647))
    )
    ttl_security: int | None = field(default=None, metadata=j("ttlSecurity", Int(0, 255)))
    reachable_by: IPAddress | None = field(default=None, metadata=j("reachableBy", Addr()))
    filters: tuple[str, ...] = field(default=(), metadata=j("filters", ListOf(NAME)))
    local_workload_selector: str = field(
        default="", metadata=j("localWorkloadSelector", SELECTOR)
    )
    reverse_peering: str | None = field(
        default=None, metadata=j("reversePeering", Enum("Auto", "Manual"))
    )

    @property
    def peer_address(self) -> IPAddress | None:
        return split_peer_ip(self.peer_ip)[0] if self.peer_ip else None

    @property
    def peer_port(self) -> int:
        """The peer's TCP port; 179 unless `peerIP` names one."""
        if not self.peer_ip:
            return DEFAULT_BGP_PORT
        return split_peer_ip(self.peer_ip)[1] or DEFAULT_BGP_PORT

    def _check(self, path: str) -> None:
        if self.node and self.node_selector:
            raise FieldError(sub(path, "nodeSelector"),
                             "node and nodeSelector cannot both be set")
        if self.peer_ip and self.peer_selector:
            raise FieldError(sub(path, "peerSelector"),
                             "peerIP and peerSelector cannot both be set")
        if self.peer_selector and self.as_number is not None:
            raise FieldError(sub(path, "asNumber"),
                             "asNumber must be empty when peerSelector is set (the peers' own "
                             "AS numbers are used)")
        if self.local_workload_selector:
            if self.peer_ip or self.peer_selector:
                raise FieldError(sub(path, "localWorkloadSelector"),
                                 "localWorkloadSelector cannot be combined with peerIP or "
                                 "peerSelector")
            if self.as_number is None:
                raise FieldError(sub(path, "asNumber"),
                                 "asNumber is required when localWorkloadSelector is set")
        elif not self.peer_ip and not self.peer_selector:
            raise FieldError(sub(path, "peerIP"),
                             "one of peerIP, peerSelector or localWorkloadSelector is required")
        if self.keep_original_next_hop and self.next_hop_mode is not None:
            raise FieldError(sub(path, "nextHopMode"),
                             "keepOriginalNextHop and nextHopMode cannot both be set")
        if self.reachable_by is not None:
            if not self.peer_ip:
                raise FieldError(sub(path, "reachableBy"), "reachableBy needs peerIP")
            peer = self.peer_address
            if peer is not None and peer.version != self.reachable_by.version:
                raise FieldError(sub(path, "reachableBy"),
                                 "reachableBy and peerIP address family mismatched")


@register
@dataclass(frozen=True, slots=True)
class BGPPeer(Resource):
    KIND: ClassVar[str] = "BGPPeer"
    SPEC: ClassVar[type[Any]] = BGPPeerSpec
    spec: BGPPeerSpec


# -- BGPConfiguration ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ServiceIPBlock:
    cidr: IPNetwork = field(metadata=j("cidr", Net(), required=True))


@dataclass(frozen=True, kw_only=True)
class Community:
    name: str = field(metadata=j("name", NAME, required=True))
    value: str = field(metadata=j("value", Str(_check_community), required=True))


@dataclass(frozen=True, kw_only=True)
class PrefixAdvertisement:
    """Communities to attach to routes inside `cidr`: literal values or names of `communities`."""

    cidr: IPNetwork = field(metadata=j("cidr", Net(), required=True))
    communities: tuple[str, ...] = field(default=(), metadata=j("communities", ListOf(STR)))


@dataclass(frozen=True, kw_only=True)
class BGPConfigurationSpec:
    """Calico's BGPConfigurationSpec with Calico's defaults filled in (mesh on, AS 64512)."""

    log_severity_screen: str = field(
        default="Info", metadata=j("logSeverityScreen", Str(check_log_level))
    )
    node_to_node_mesh_enabled: bool = field(
        default=True, metadata=j("nodeToNodeMeshEnabled", BOOL)
    )
    as_number: int = field(default=DEFAULT_AS_NUMBER, metadata=j("asNumber", AS_NUMBER))
    service_load_balancer_ips: tuple[ServiceIPBlock, ...] = field(
        default=(), metadata=j("serviceLoadBalancerIPs", ListOf(Obj(ServiceIPBlock)))
    )
    service_external_ips: tuple[ServiceIPBlock, ...] = field(
        default=(), metadata=j("serviceExternalIPs", ListOf(Obj(ServiceIPBlock)))
    )
    service_cluster_ips: tuple[ServiceIPBlock, ...] = field(
        default=(), metadata=j("serviceClusterIPs", ListOf(Obj(ServiceIPBlock)))
    )
    service_load_balancer_aggregation: str | None = field(
        default=None,
        metadata=j("serviceLoadBalancerAggregation", Enum("Enabled", "Disabled")),
    )
    communities: tuple[Community, ...] = field(
        default=(), metadata=j("communities", ListOf(Obj(Community)))
    )
    prefix_advertisements: tuple[PrefixAdvertisement, ...] = field(
        default=(), metadata=j("prefixAdvertisements", ListOf(Obj(PrefixAdvertisement)))
    )
    listen_port: int = field(default=DEFAULT_BGP_PORT, metadata=j("listenPort", Int(1, 65535)))
    node_mesh_password: BGPPassword | None = field(
        default=None, metadata=j("nodeMeshPassword", Obj(BGPPassword))
    )
    node_mesh_max_restart_time: datetime.timedelta | None = field(
        default=None, metadata=j("nodeMeshMaxRestartTime", DURATION)
    )
    bind_mode: str | None = field(default=None, metadata=j("bindMode", Enum("None", "NodeIP")))
    ignored_interfaces: tuple[str, ...] = field(
        default=(), metadata=j("ignoredInterfaces", ListOf(Str(_check_iface)))
    )
    local_workload_peering_ipv4: IPAddress | None = field(
        default=None, metadata=j("localWorkloadPeeringIPV4", Addr(4))
    )
    local_workload_peering_ipv6: IPAddress | None = field(
        default=None, metadata=j("localWorkloadPeeringIPV6", Addr(6))
    )
    program_cluster_routes: str | None = field(
        default=None, metadata=j("programClusterRoutes", Enum(*PROGRAM_CLUSTER_ROUTES))
    )
    ipv4_normal_route_priority: int | None = field(
        default=None, metadata=j("ipv4NormalRoutePriority", Int(1, 2147483646))
    )
    ipv6_normal_route_priority: int | None = field(
        default=None, metadata=j("ipv6NormalRoutePriority", Int(1, 2147483646))
    )

    def community_value(self, name_or_value: str) -> str:
        """A prefix advertisement's community: a literal aa:nn[:mm], or a named one resolved."""
        for c in self.communities:
            if c.name == name_or_value:
                return c.value
        return name_or_value

    def _check(self, path: str) -> None:
        if not self.node_to_node_mesh_enabled:
            for key, setting in (("nodeMeshPassword", self.node_mesh_password),
                                 ("nodeMeshMaxRestartTime", self.node_mesh_max_restart_time)):
                if setting is not None:
                    raise FieldError(sub(path, key),
                                     f"{key} cannot be set when nodeToNodeMeshEnabled is false")
        if self.communities and not self.prefix_advertisements:
            raise FieldError(sub(path, "communities"),
                             "communities are defined but not used in prefixAdvertisements")
        names = {c.name for c in self.communities}
        if len(names) != len(self.communities):
            raise FieldError(sub(path, "communities"), "a community name is used twice")
        for i, adv in enumerate(self.prefix_advertisements):
            for k, value in enumerate(adv.communities):
                if value not in names and _check_community(value) is not None:
                    raise FieldError(
                        sub(sub(sub(sub(path, "prefixAdvertisements"), i), "communities"), k),
                        f"{value!r} is neither a community value (aa:nn, aa:nn:mm) nor the "
                        "name of one in spec.communities",
                    )


@register
@dataclass(frozen=True, slots=True)
class BGPConfiguration(Resource):
    KIND: ClassVar[str] = "BGPConfiguration"
    SPEC: ClassVar[type[Any]] = BGPConfigurationSpec
    spec: BGPConfigurationSpec


# -- BGPFilter -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PrefixLengthRange:
    min: int | None = field(default=None, metadata=j("min", Int(0, 128)))
    max: int | None = field(default=None, metadata=j("max", Int(0, 128)))


@dataclass(frozen=True, kw_only=True)
class CommunityMatch:
    values: tuple[str, ...] = field(
        metadata=j("values", ListOf(Str(_check_community)), required=True)
    )


@dataclass(frozen=True, kw_only=True)
class AddCommunity:
    value: str = field(metadata=j("value", Str(_check_community), required=True))


@dataclass(frozen=True, kw_only=True)
class PrependASPath:
    prefix: tuple[int, ...] = field(metadata=j("prefix", ListOf(AS_NUMBER), required=True))


@dataclass(frozen=True, kw_only=True)
class SetPriority:
    value: int = field(metadata=j("value", Int(1, 2147483646), required=True))


@dataclass(frozen=True, kw_only=True)
class FilterOperation:
    add_community: AddCommunity | None = field(
        default=None, metadata=j("addCommunity", Obj(AddCommunity))
    )
    prepend_as_path: PrependASPath | None = field(
        default=None, metadata=j("prependASPath", Obj(PrependASPath))
    )
    set_priority: SetPriority | None = field(
        default=None, metadata=j("setPriority", Obj(SetPriority))
    )


@dataclass(frozen=True, kw_only=True)
class BGPFilterRule:
    """One rule of a BGPFilter list; the first matching rule decides (Accept / Reject)."""

    action: str = field(metadata=j("action", Enum("Accept", "Reject"), required=True))
    cidr: IPNetwork | None = field(default=None, metadata=j("cidr", Net()))
    match_operator: str | None = field(
        default=None, metadata=j("matchOperator", Enum("Equal", "NotEqual", "In", "NotIn"))
    )
    prefix_length: PrefixLengthRange | None = field(
        default=None, metadata=j("prefixLength", Obj(PrefixLengthRange))
    )
    source: str | None = field(default=None, metadata=j("source", Enum("RemotePeers")))
    interface: str | None = field(default=None, metadata=j("interface", Str(_check_iface)))
    peer_type: str | None = field(default=None, metadata=j("peerType", Enum("eBGP", "iBGP")))
    communities: CommunityMatch | None = field(
        default=None, metadata=j("communities", Obj(CommunityMatch))
    )
    as_path_prefix: tuple[int, ...] = field(
        default=(), metadata=j("asPathPrefix", ListOf(AS_NUMBER))
    )
    priority: int | None = field(default=None, metadata=j("priority", Int(1, 2147483646)))
    operations: tuple[FilterOperation, ...] = field(
        default=(), metadata=j("operations", ListOf(Obj(FilterOperation)))
    )

    def check_family(self, version: int, path: str) -> None:
        """Rules in a V4 list take IPv4 CIDRs and lengths up to 32; V6 lists up to 128."""
        if self.operations and self.action != "Accept":
            raise FieldError(sub(path, "operations"),
                             "operations may only be used with action Accept")
        if self.cidr is not None and self.cidr.version != version:
            raise FieldError(sub(path, "cidr"), f"{self.cidr} is not an IPv{version} CIDR")
        if (self.cidr is None) != (self.match_operator is None):
            raise FieldError(sub(path, "matchOperator" if self.cidr else "cidr"),
                             "cidr and matchOperator must be set together")
        if self.prefix_length is not None:
            if self.cidr is None:
                raise FieldError(sub(path, "prefixLength"), "prefixLength needs a cidr")
            top = 32 if version == 4 else 128
            lo = self.prefix_length.min
            hi = self.prefix_length.max
            for name, value in (("min", lo), ("max", hi)):
                if value is not None and value > top:
                    raise FieldError(sub(sub(path, "prefixLength"), name),
                                     f"{value} is longer than /{top}")
            if lo is not None and hi is not None and lo > hi:
                raise FieldError(sub(path, "prefixLength"), f"min {lo} is greater than max {hi}")


@dataclass(frozen=True, kw_only=True)
class BGPFilterSpec:
    export_v4: tuple[BGPFilterRule, ...] = field(
        default=(), metadata=j("exportV4", ListOf(Obj(BGPFilterRule)))
    )
    import_v4: tuple[BGPFilterRule, ...] = field(
        default=(), metadata=j("importV4", ListOf(Obj(BGPFilterRule)))
    )
    export_v6: tuple[BGPFilterRule, ...] = field(
        default=(), metadata=j("exportV6", ListOf(Obj(BGPFilterRule)))
    )
    import_v6: tuple[BGPFilterRule, ...] = field(
        default=(), metadata=j("importV6", ListOf(Obj(BGPFilterRule)))
    )

    def _check(self, path: str) -> None:
        for key, rules, version in (
            ("exportV4", self.export_v4, 4),
            ("importV4", self.import_v4, 4),
            ("exportV6", self.export_v6, 6),
            ("importV6", self.import_v6, 6),
        ):
            for i, rule in enumerate(rules):
                rule.check_family(version, sub(sub(path, key), i))


@register
@dataclass(frozen=True, slots=True)
class BGPFilter(Resource):
    KIND: ClassVar[str] = "BGPFilter"
    SPEC: ClassVar[type[Any]] = BGPFilterSpec
    spec: BGPFilterSpec
