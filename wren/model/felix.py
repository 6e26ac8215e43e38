"""FelixConfiguration: Wren reads the routing knobs and keeps every other Felix field as is.

A user's FelixConfiguration usually sets options for Felix features Wren does not have (BPF,
policy, flow logs). Those fields are accepted and kept verbatim in `other`, so the file loads and
round-trips; a key Felix does not know at all is still an error, as a typo would be.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wren.model._fields import (
    BOOL,
    DURATION,
    STR,
    Addr,
    Enum,
    FieldError,
    Int,
    ListOf,
    Obj,
    Str,
    dump_obj,
    j,
    json_keys,
    load_obj,
    sub,
)
from wren.model.base import Resource, register
from wren.model.bgp import PROGRAM_CLUSTER_ROUTES, check_log_level

__all__ = ["FELIX_FIELDS", "FelixConfiguration", "FelixConfigurationSpec", "RouteTableRange"]

# Every FelixConfigurationSpec JSON key Calico has had (api/pkg/apis/projectcalico/v3).
FELIX_FIELDS: frozenset[str] = frozenset((
    "allowIPIPPacketsFromWorkloads", "allowVXLANPacketsFromWorkloads", "awsSrcDstCheck",
    "bpfAttachType", "bpfCTLBLogFilter", "bpfConnectTimeLoadBalancing",
    "bpfConnectTimeLoadBalancingEnabled", "bpfConntrackLogLevel", "bpfConntrackMode",
    "bpfConntrackTimeouts", "bpfDSROptoutCIDRs", "bpfDataIfacePattern", "bpfDisableGROForIfaces",
    "bpfDisableUnprivileged", "bpfEnabled", "bpfEnforceRPF", "bpfExcludeCIDRsFromNAT",
    "bpfExportBufferSizeMB", "bpfExtToServiceConnmark", "bpfExternalServiceMode",
    "bpfForceTrackPacketsFromIfaces", "bpfHostConntrackBypass", "bpfHostNetworkedNATWithoutCTLB",
    "bpfIPFragTimeout", "bpfIPFragmentReassemblyEnabled", "bpfJITHardening",
    "bpfKubeProxyEndpointSlicesEnabled", "bpfKubeProxyHealthzPort", "bpfKubeProxyHealtzPort",
    "bpfKubeProxyIptablesCleanupEnabled", "bpfKubeProxyMinSyncPeriod", "bpfL3IfacePattern",
    "bpfLogFilters", "bpfLogLevel", "bpfMaglevMaxEndpointsPerService", "bpfMaglevMaxServices",
    "bpfMapSizeConntrack", "bpfMapSizeConntrackCleanupQueue", "bpfMapSizeConntrackScaling",
    "bpfMapSizeIPSets", "bpfMapSizeIfState", "bpfMapSizeNATAffinity", "bpfMapSizeNATBackend",
    "bpfMapSizeNATFrontend", "bpfMapSizePerCpuConntrack", "bpfMapSizeRoute",
    "bpfOverlayHostSourceIP", "bpfPSNATPorts", "bpfPolicyDebugEnabled", "bpfProfiling",
    "bpfRedirectToPeer", "cgroupV2Path", "chainInsertMode", "dataplaneDriver",
    "dataplaneWatchdogTimeout", "debugDisableLogDropping", "debugHost", "debugMemoryProfilePath",
    "debugPort", "debugSimulateCalcGraphHangAfter", "debugSimulateDataplaneApplyDelay",
    "debugSimulateDataplaneHangAfter", "defaultEndpointToHostAction", "deviceRouteProtocol",
    "deviceRouteSourceAddress", "deviceRouteSourceAddressIPv6", "disableConntrackInvalidCheck",
    "endpointReportingDelay", "endpointReportingEnabled", "endpointStatusPathPrefix",
    "externalNodesList", "failsafeInboundHostPorts", "failsafeOutboundHostPorts",
    "featureDetectOverride", "featureGates", "floatingIPs", "flowLogsCollectorDebugTrace",
    "flowLogsFlushInterval", "flowLogsGoldmaneServer", "flowLogsLocalReporter",
    "flowLogsMaxOriginalIPsIncluded", "flowLogsPolicyEvaluationMode", "genericXDPEnabled",
    "goGCThreshold", "goMaxProcs", "goMemoryLimitMB", "healthEnabled", "healthHost", "healthPort",
    "healthTimeoutOverrides", "interfaceExclude", "interfacePrefix", "interfaceRefreshInterval",
    "ipForwarding", "ipipEnabled", "ipipMTU", "ipsetsRefreshInterval", "iptablesBackend",
    "iptablesFilterAllowAction", "iptablesFilterDenyAction", "iptablesLockFilePath",
    "iptablesLockProbeInterval", "iptablesLockTimeout", "iptablesMangleAllowAction",
    "iptablesMarkMask", "iptablesNATOutgoingInterfaceFilter", "iptablesPostWriteCheckInterval",
    "iptablesRefreshInterval", "ipv4ElevatedRoutePriority", "ipv4NormalRoutePriority",
    "ipv6ElevatedRoutePriority", "ipv6NormalRoutePriority", "ipv6Support", "istioAmbientMode",
    "istioDSCPMark", "kubeNodePortRanges", "liveMigrationRouteConvergenceTime",
    "localSubnetL2Reachability", "localSubnetL2ReachabilityRefreshInterval", "logActionRateLimit",
    "logActionRateLimitBurst", "logDebugFilenameRegex", "logFilePath", "logPrefix",
    "logSeverityFile", "logSeverityScreen", "logSeveritySys", "maxIpsetSize", "metadataAddr",
    "metadataPort", "mtuIfacePattern", "natOutgoingAddress", "natOutgoingExclusions",
    "natPortRange", "netlinkTimeout", "nfNetlinkBufSize", "nftablesFilterAllowAction",
    "nftablesFilterDenyAction", "nftablesFlowTableDataIfacePattern", "nftablesFlowTableOffload",
    "nftablesMangleAllowAction", "nftablesMarkMask", "nftablesMode", "nftablesRefreshInterval",
    "nodeSelector", "openstackRegion", "policySyncPathPrefix", "programClusterRoutes",
    "prometheusGoMetricsEnabled", "prometheusMetricsCAFile", "prometheusMetricsCertFile",
    "prometheusMetricsClientAuth", "prometheusMetricsEnabled", "prometheusMetricsHost",
    "prometheusMetricsKeyFile", "prometheusMetricsPort", "prometheusProcessMetricsEnabled",
    "prometheusWireGuardMetricsEnabled", "removeExternalRoutes", "reportingInterval",
    "reportingTTL", "requireMTUFile", "routeRefreshInterval", "routeSource", "routeSyncDisabled",
    "routeTableRange", "routeTableRanges", "serviceLoopPrevention", "sidecarAccelerationEnabled",
    "usageReportingEnabled", "usageReportingInitialDelay", "usageReportingInterval",
    "useInternalDataplaneDriver", "vxlanEnabled", "vxlanMTU", "vxlanMTUV6", "vxlanPort",
    "vxlanVNI", "windowsManageFirewallRules", "wireguardEnabled", "wireguardEnabledV6",
    "wireguardHostEncryptionEnabled", "wireguardInterfaceName", "wireguardInterfaceNameV6",
    "wireguardKeepAlive", "wireguardListeningPort", "wireguardListeningPortV6", "wireguardMTU",
    "wireguardMTUV6", "wireguardRoutingRulePriority", "wireguardThreadingEnabled",
    "workloadSourceSpoofing", "xdpEnabled", "xdpRefreshInterval",
))


@dataclass(frozen=True, kw_only=True)
class RouteTableRange:
    min: int = field(metadata=j("min", Int(), always=True, required=True))
    max: int = field(metadata=j("max", Int(), always=True, required=True))


@dataclass(frozen=True, kw_only=True)
class FelixConfigurationSpec:
    """The Felix fields Wren's agent acts on, with Felix's defaults. `None` where Felix's default
    is "decide from the pools" (ipipEnabled, vxlanEnabled) or "from the host" (MTUs)."""

    route_refresh_interval: datetime.timedelta = field(
        default=datetime.timedelta(seconds=90), metadata=j("routeRefreshInterval", DURATION)
    )
    ipip_enabled: bool | None = field(default=None, metadata=j("ipipEnabled", BOOL))
    ipip_mtu: int | None = field(default=None, metadata=j("ipipMTU", Int(0, 65535)))
    vxlan_enabled: bool | None = field(default=None, metadata=j("vxlanEnabled", BOOL))
    vxlan_mtu: int | None = field(default=None, metadata=j("vxlanMTU", Int(0, 65535)))
    vxlan_mtu_v6: int | None = field(default=None, metadata=j("vxlanMTUV6", Int(0, 65535)))
    vxlan_vni: int = field(default=4096, metadata=j("vxlanVNI", Int(0, 2**24 - 1)))
    vxlan_port: int = field(default=4789, metadata=j("vxlanPort", Int(1, 65535)))
    nat_outgoing_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = field(
        default=None, metadata=j("natOutgoingAddress", Addr())
    )
    iptables_backend: str | None = field(
        default=None,
        metadata=j("iptablesBackend", Enum("Auto", "Legacy", "NFT", ignore_case=True)),
    )
    log_severity_screen: str = field(
        default="Info", metadata=j("logSeverityScreen", Str(check_log_level))
    )
    route_table_range: RouteTableRange | None = field(
        default=None, metadata=j("routeTableRange", Obj(RouteTableRange))
    )
    route_table_ranges: tuple[RouteTableRange, ...] = field(
        default=(), metadata=j("routeTableRanges", ListOf(Obj(RouteTableRange)))
    )
    device_route_protocol: int = field(default=3, metadata=j("deviceRouteProtocol", Int(0, 255)))
    device_route_source_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = field(
        default=None, metadata=j("deviceRouteSourceAddress", Addr(4))
    )
    interface_prefix: str = field(
        default="cali", metadata=j("interfacePrefix", Str(allow_empty=False))
    )
    health_enabled: bool | None = field(default=None, metadata=j("healthEnabled", BOOL))
    health_host: str | None = field(default=None, metadata=j("healthHost", STR))
    health_port: int = field(default=9099, metadata=j("healthPort", Int(1, 65535)))
    mtu_iface_pattern: str | None = field(default=None, metadata=j("mtuIfacePattern", STR))
    ipv6_support: bool | None = field(default=None, metadata=j("ipv6Support", BOOL))
    remove_external_routes: bool | None = field(
        default=None, metadata=j("removeExternalRoutes", BOOL)
    )
    route_source: str | None = field(
        default=None,
        metadata=j("routeSource", Enum("CalicoIPAM", "WorkloadIPs", ignore_case=True)),
    )
    program_cluster_routes: str | None = field(
        default=None, metadata=j("programClusterRoutes", Enum(*PROGRAM_CLUSTER_ROUTES))
    )
    # Felix fields Wren does not interpret, kept verbatim (JSON values) for round trips.
    other: Mapping[str, Any] = field(default_factory=dict)

    def _check(self, path: str) -> None:
        if self.route_table_range is not None:
            r = self.route_table_range
            if not 1 <= r.min <= r.max <= 250:
                raise FieldError(sub(path, "routeTableRange"),
                                 f"{r.min}-{r.max} is not a range within 1..250")
        for i, r in enumerate(self.route_table_ranges):
            if not 1 <= r.min <= r.max <= 0xFFFFFFFF:
                raise FieldError(sub(sub(path, "routeTableRanges"), i),
                                 f"{r.min}-{r.max} is not a range of table ids from 1")


@register
@dataclass(frozen=True, slots=True)
class FelixConfiguration(Resource):
    KIND: ClassVar[str] = "FelixConfiguration"
    SPEC: ClassVar[type[Any]] = FelixConfigurationSpec
    spec: FelixConfigurationSpec

    @classmethod
    def load_spec(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise FieldError("spec", "must be an object")
        modeled = json_keys(FelixConfigurationSpec)
        other: dict[str, Any] = {}
        typed: dict[str, Any] = {}
        for key, value in data.items():
            if key in modeled:
                typed[key] = value
            elif key in FELIX_FIELDS:
                if value is not None:
                    other[key] = value
            else:
                raise FieldError(sub("spec", str(key)), "unknown field")
        spec = load_obj(FelixConfigurationSpec, typed, "spec")
        return dataclasses.replace(spec, other=other)

    def dump_spec(self) -> dict[str, Any]:
        out = dump_obj(self.spec)
        out.update(self.spec.other)
        return dict(sorted(out.items()))
