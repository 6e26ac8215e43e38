"""Every broken rule gives a ValidationError naming kind, resource, field path and the rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from wren.errors import ValidationError
from wren.model import IPPool, Node, parse, parse_as, parse_as_number, parse_duration


def body(kind: str, spec: dict[str, Any], name: str = "r1", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


def rejects(doc: dict[str, Any], field: str, fragment: str) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        parse(doc)
    assert err.value.field == field, err.value
    assert fragment in err.value.rule, err.value.rule
    return err.value


# -- IPPool -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({}, "spec.cidr", "is required"),
        ({"cidr": "10.0.0.0/33"}, "spec.cidr", "not a valid CIDR"),
        ({"cidr": "banana"}, "spec.cidr", "not a valid CIDR"),
        ({"cidr": 10}, "spec.cidr", "must be a CIDR string"),
        ({"cidr": "10.0.0.1/16"}, "spec.cidr", "host bits set"),
        ({"cidr": "10.0.0.0/255.255.0.0"}, "spec.cidr", "prefix must be a length"),
        ({"cidr": "169.254.0.0/20"}, "spec.cidr", "link-local"),
        ({"cidr": "fe80::/64"}, "spec.cidr", "link-local"),
        ({"cidr": "10.0.0.0/16", "blockSize": 19}, "spec.blockSize", "out of range 20-32"),
        ({"cidr": "10.0.0.0/16", "blockSize": 33}, "spec.blockSize", "out of range 20-32"),
        ({"cidr": "fd00::/48", "blockSize": 115}, "spec.blockSize", "out of range 116-128"),
        ({"cidr": "fd00::/48", "blockSize": 129}, "spec.blockSize", "out of range 116-128"),
        ({"cidr": "10.0.0.0/28"}, "spec.blockSize", "larger than the pool"),
        ({"cidr": "10.0.0.0/16", "blockSize": "26"}, "spec.blockSize", "must be an integer"),
        ({"cidr": "fd00::/48", "ipipMode": "Always"}, "spec.ipipMode", "not supported on an IPv6"),
        ({"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": "CrossSubnet"},
         "spec.vxlanMode", "cannot both be enabled"),
        ({"cidr": "10.0.0.0/16", "ipipMode": "always"}, "spec.ipipMode", "unknown value"),
        ({"cidr": "10.0.0.0/16", "vxlanMode": "Sometimes"}, "spec.vxlanMode", "unknown value"),
        ({"cidr": "10.0.0.0/16", "natOutgoing": "yes"}, "spec.natOutgoing", "true or false"),
        ({"cidr": "10.0.0.0/16", "allowedUses": ["Pods"]}, "spec.allowedUses[0]",
         "unknown value"),
        ({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer", "Workload"]},
         "spec.allowedUses", "cannot be combined"),
        ({"cidr": "10.0.0.0/16", "nodeSelector": "zone = 'a'"}, "spec.nodeSelector",
         "column 6"),
        ({"cidr": "10.0.0.0/16", "nodeSelector": "global()"}, "spec.nodeSelector",
         "global() is not valid"),
        ({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "vxlanMode": "Always"},
         "spec.allowedUses", "cannot have IPIP or VXLAN"),
        ({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "disableBGPExport": True},
         "spec.disableBGPExport", "cannot disable BGP export"),
        ({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "nodeSelector": "has(a)"},
         "spec.nodeSelector", "must have nodeSelector all()"),
        ({"cidr": "10.0.0.0/16", "namespaceSelector": "has(a)"}, "spec.namespaceSelector",
         "Tunnel addresses cannot have a namespaceSelector"),
        ({"cidr": "10.0.0.0/16", "natOutgoin": True}, "spec.natOutgoin", "unknown field"),
        ({"cidr": "10.0.0.0/16", "ipip": {"enabled": True}}, "spec.ipip", "unknown field"),
    ],
)
def test_ippool_rules(spec: dict[str, Any], field: str, fragment: str) -> None:
    err = rejects(body("IPPool", spec, name="pool-a"), field, fragment)
    assert err.kind == "IPPool" and err.name == "pool-a"
    assert "IPPool 'pool-a'" in str(err) and field in str(err)


def test_ippool_block_size_equal_to_pool_size_is_allowed() -> None:
    pool = parse(body("IPPool", {"cidr": "10.0.0.0/26"}))
    assert pool.spec.block_size == 26


def test_disabled_pool_may_be_smaller_than_a_block_as_in_calico() -> None:
    pool = parse(body("IPPool", {"cidr": "10.0.0.0/28", "disabled": True}))
    assert pool.spec.block_size == 26


def test_workload_pool_may_have_a_namespace_selector() -> None:
    pool = parse(body("IPPool", {"cidr": "10.0.0.0/16", "allowedUses": ["Workload"],
                                 "namespaceSelector": "team == 'a'"}))
    assert pool.spec.namespace_selector == "team == 'a'"


def test_case_insensitive_felix_enums_keep_their_spelling() -> None:
    felix = parse(body("FelixConfiguration", {"iptablesBackend": "nft"}, name="default"))
    assert felix.spec.iptables_backend == "nft"
    assert felix.to_body()["spec"]["iptablesBackend"] == "nft"


def test_ipv6_pool_with_vxlan_is_allowed() -> None:
    assert parse(body("IPPool", {"cidr": "fd00::/48", "vxlanMode": "Always"})).spec.ip_version == 6


# -- resource envelope ----------------------------------------------------------------------------
def test_wrong_api_version_is_rejected() -> None:
    doc = body("IPPool", {"cidr": "10.0.0.0/16"})
    doc["apiVersion"] = "projectcalico.org/v2"
    rejects(doc, "apiVersion", "unsupported apiVersion")


def test_unknown_kind_is_rejected() -> None:
    err = rejects(body("GlobalNetworkPolicy", {}), "kind", "unknown kind")
    assert err.name == "r1"


def test_lower_case_kind_is_not_a_kind() -> None:
    rejects(body("ippool", {"cidr": "10.0.0.0/16"}), "kind", "unknown kind")


def test_unknown_top_level_and_metadata_fields_are_rejected() -> None:
    doc = body("IPPool", {"cidr": "10.0.0.0/16"})
    doc["extra"] = 1
    rejects(doc, "extra", "unknown field")
    rejects(body("IPPool", {"cidr": "10.0.0.0/16"}, lables={"a": "b"}), "metadata.lables",
            "unknown field")


def test_body_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(ValidationError):
        parse(["not", "a", "body"])  # type: ignore[arg-type]


def test_spec_that_is_not_an_object_is_rejected() -> None:
    rejects(body("IPPool", "10.0.0.0/16"), "spec", "must be an object")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["My-Pool", "pool_1", "-pool", "pool-", "pool..a", "a" * 254, "pool/1", "pööl"]
)
def test_invalid_names_are_rejected(name: str) -> None:
    rejects(body("IPPool", {"cidr": "10.0.0.0/16"}, name=name), "metadata.name", "name")


@pytest.mark.parametrize("name", ["default", "node.node-1", "a", "k8s-pod-network.abc123"])
def test_calico_style_names_are_accepted(name: str) -> None:
    assert parse(body("BGPConfiguration", {}, name=name)).metadata.name == name


def test_missing_name_is_rejected() -> None:
    doc = body("IPPool", {"cidr": "10.0.0.0/16"})
    del doc["metadata"]["name"]
    rejects(doc, "metadata.name", "is required")


def test_namespace_on_cluster_scoped_kind_is_rejected() -> None:
    rejects(body("IPPool", {"cidr": "10.0.0.0/16"}, namespace="default"),
            "metadata.namespace", "cluster-scoped")


def test_labels_must_be_strings() -> None:
    rejects(body("IPPool", {"cidr": "10.0.0.0/16"}, labels={"a": 1}), "metadata.labels",
            "strings")


@pytest.mark.parametrize(
    ("labels", "field", "fragment"),
    [
        ({"-bad": "x"}, "metadata.labels.-bad", "name part"),
        ({"a" * 64: "x"}, "metadata.labels." + "a" * 64, "name part"),
        ({"Bad_Prefix/x": "y"}, "metadata.labels.Bad_Prefix/x", "invalid prefix"),
        ({"/x": "y"}, "metadata.labels./x", "invalid prefix"),
        ({"zone": "has space"}, "metadata.labels.zone", "value 'has space'"),
        ({"zone": "x" * 64}, "metadata.labels.zone", "at most 63"),
    ],
)
def test_label_keys_and_values_follow_kubernetes(
    labels: dict[str, str], field: str, fragment: str
) -> None:
    rejects(body("IPPool", {"cidr": "10.0.0.0/16"}, labels=labels), field, fragment)


def test_kubernetes_style_labels_and_annotations_are_accepted() -> None:
    node = parse(body("Node", {}, labels={
        "kubernetes.io/hostname": "node-1", "node-role.kubernetes.io/control-plane": "",
        "topology.kubernetes.io/zone": "us-east-1a", "route-reflector": "true",
    }, annotations={"projectcalico.org/IPv4Address": "192.0.2.10/24",
                    "kubectl.kubernetes.io/last-applied-configuration": '{"a": "b c"}'}))
    assert node.metadata.labels["route-reflector"] == "true"


def test_null_fields_count_as_absent() -> None:
    pool = parse(body("IPPool", {"cidr": "10.0.0.0/16", "nodeSelector": None, "blockSize": None}))
    assert pool.spec.node_selector == "all()" and pool.spec.block_size == 26


# -- AS numbers, durations ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [(64512, 64512), ("64512", 64512), ("1.10", 65546), (4294967295, 4294967295),
     ("65535.65535", 4294967295)],
)
def test_as_numbers_in_plain_and_asdot_form(value: Any, expected: int) -> None:
    assert parse_as_number(value) == expected


@pytest.mark.parametrize(
    "value", [0, -1, 4294967296, "abc", "65536.1", "1.65536", True, "1.2.3", 1.5, ""]
)
def test_bad_as_numbers_are_rejected(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_as_number(value)
    rejects(body("BGPConfiguration", {"asNumber": value}), "spec.asNumber", "AS number")


@pytest.mark.parametrize("text", ["90s", "1m30s", "1h", "1.5s", "500ms", "0", "0s"])
def test_go_durations_parse(text: str) -> None:
    assert parse_duration(text).total_seconds() >= 0


@pytest.mark.parametrize("text", ["", "90", "1x", "s", "1m30", "--1s"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bad_duration_field_names_the_field() -> None:
    rejects(body("BGPPeer", {"peerIP": "10.0.0.1", "keepaliveTime": "soon"}),
            "spec.keepaliveTime", "not a duration")


# -- BGPPeer ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"peerIP": "300.1.1.1"}, "spec.peerIP", "is not <IP>"),
        ({"peerIP": "10.0.0.1:0"}, "spec.peerIP", "port 0 out of range"),
        ({"peerIP": "10.0.0.1:70000"}, "spec.peerIP", "out of range"),
        ({"peerIP": "[fd00::1]:"}, "spec.peerIP", "is not <IP>"),
        ({"peerIP": "fd00::1]:179"}, "spec.peerIP", "is not <IP>"),
        ({"peerIP": "10.0.0.1", "peerSelector": "has(rr)"}, "spec.peerSelector",
         "cannot both be set"),
        ({"node": "n1", "nodeSelector": "all()", "peerIP": "10.0.0.1"}, "spec.nodeSelector",
         "cannot both be set"),
        ({"node": "n1"}, "spec.peerIP", "one of peerIP, peerSelector or localWorkload"),
        ({"peerSelector": "has(rr)", "asNumber": 64512}, "spec.asNumber",
         "must be empty when peerSelector"),
        ({"localWorkloadSelector": "app == 'lb'"}, "spec.asNumber", "is required"),
        ({"localWorkloadSelector": "app == 'lb'", "asNumber": 65000, "peerIP": "10.0.0.1"},
         "spec.localWorkloadSelector", "cannot be combined"),
        ({"peerSelector": "rr == 'true"}, "spec.peerSelector", "unterminated string"),
        ({"peerIP": "10.0.0.1", "node": "Node_1"}, "spec.node", "invalid name"),
        ({"peerIP": "10.0.0.1", "asNumber": 0}, "spec.asNumber", "out of range"),
        ({"peerIP": "10.0.0.1", "sourceAddress": "NodeIP"}, "spec.sourceAddress",
         "unknown value"),
        ({"peerIP": "10.0.0.1", "ttlSecurity": 256}, "spec.ttlSecurity", "at most 255"),
        ({"peerIP": "10.0.0.1", "password": {"secretKeyRef": {"name": "s"}}},
         "spec.password.secretKeyRef.key", "is required"),
        ({"peerIP": "10.0.0.1", "password": {"secretKeyRef": {"name": "s", "key": "k",
                                                               "nmae": "x"}}},
         "spec.password.secretKeyRef.nmae", "unknown field"),
        ({"peerIP": "10.0.0.1", "keepOriginalNextHop": True, "nextHopMode": "Self"},
         "spec.nextHopMode", "cannot both be set"),
        ({"peerSelector": "all()", "reachableBy": "10.0.0.254"}, "spec.reachableBy",
         "needs peerIP"),
        ({"peerIP": "fd00::1", "reachableBy": "10.0.0.254"}, "spec.reachableBy",
         "family mismatched"),
        ({"peerIP": "10.0.0.1", "filters": ["Bad Name"]}, "spec.filters[0]", "invalid name"),
    ],
)
def test_bgppeer_rules(spec: dict[str, Any], field: str, fragment: str) -> None:
    rejects(body("BGPPeer", spec), field, fragment)


def test_bare_ipv6_peer_address_without_brackets_is_an_address_not_a_port() -> None:
    peer = parse(body("BGPPeer", {"peerIP": "fd00::1:179"}))
    assert str(peer.spec.peer_address) == "fd00::1:179" and peer.spec.peer_port == 179


# -- BGPConfiguration, BGPFilter ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"communities": [{"name": "c1", "value": "70000:1"}]}, "spec.communities[0].value",
         "16 bits"),
        ({"communities": [{"name": "c1", "value": "1:2:4294967296"}]},
         "spec.communities[0].value", "32 bits"),
        ({"communities": [{"name": "c1", "value": "one:two"}]}, "spec.communities[0].value",
         "not a community"),
        ({"communities": [{"name": "c1", "value": "1:1"}, {"name": "c1", "value": "1:2"}],
          "prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["c1"]}]},
         "spec.communities", "used twice"),
        ({"communities": [{"name": "c1", "value": "1:1"}]}, "spec.communities",
         "not used in prefixAdvertisements"),
        ({"nodeToNodeMeshEnabled": False, "nodeMeshMaxRestartTime": "120s"},
         "spec.nodeMeshMaxRestartTime", "cannot be set when nodeToNodeMeshEnabled is false"),
        ({"nodeToNodeMeshEnabled": False,
          "nodeMeshPassword": {"secretKeyRef": {"name": "s", "key": "k"}}},
         "spec.nodeMeshPassword", "cannot be set when nodeToNodeMeshEnabled is false"),
        ({"logSeverityScreen": "Panic"}, "spec.logSeverityScreen", "unknown log severity"),
        ({"programClusterRoutes": "Sometimes"}, "spec.programClusterRoutes", "unknown value"),
        ({"prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["undefined"]}]},
         "spec.prefixAdvertisements[0].communities[0]", "neither a community value"),
        ({"prefixAdvertisements": [{"cidr": "10.0.0.1/8"}]}, "spec.prefixAdvertisements[0].cidr",
         "host bits"),
        ({"serviceClusterIPs": [{"cidr": "10.96.0.0/12", "extra": 1}]},
         "spec.serviceClusterIPs[0].extra", "unknown field"),
        ({"listenPort": 0}, "spec.listenPort", "at least 1"),
        ({"logSeverityScreen": "Loud"}, "spec.logSeverityScreen", "unknown log severity"),
        ({"bindMode": "Any"}, "spec.bindMode", "unknown value"),
        ({"nodeToNodeMeshEnabled": "no"}, "spec.nodeToNodeMeshEnabled", "true or false"),
        ({"ignoredInterfaces": ["this-name-is-way-too-long"]}, "spec.ignoredInterfaces[0]",
         "interface name"),
        ({"localWorkloadPeeringIPV4": "fd00::1"}, "spec.localWorkloadPeeringIPV4",
         "not an IPv4"),
    ],
)
def test_bgpconfiguration_rules(spec: dict[str, Any], field: str, fragment: str) -> None:
    rejects(body("BGPConfiguration", spec, name="default"), field, fragment)


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"exportV4": [{"cidr": "10.0.0.0/8", "matchOperator": "In"}]},
         "spec.exportV4[0].action", "is required"),
        ({"exportV4": [{"action": "Drop"}]}, "spec.exportV4[0].action", "unknown value"),
        ({"exportV4": [{"action": "Accept", "cidr": "fd00::/8", "matchOperator": "In"}]},
         "spec.exportV4[0].cidr", "not an IPv4"),
        ({"importV6": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In"}]},
         "spec.importV6[0].cidr", "not an IPv6"),
        ({"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/8"}]},
         "spec.exportV4[0].matchOperator", "set together"),
        ({"exportV4": [{"action": "Accept", "matchOperator": "Equal"}]},
         "spec.exportV4[0].cidr", "set together"),
        ({"exportV4": [{"action": "Accept", "matchOperator": "Like", "cidr": "10.0.0.0/8"}]},
         "spec.exportV4[0].matchOperator", "unknown value"),
        ({"importV4": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In",
                        "prefixLength": {"min": 24, "max": 33}}]},
         "spec.importV4[0].prefixLength.max", "longer than /32"),
        ({"importV4": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In",
                        "prefixLength": {"min": 28, "max": 24}}]},
         "spec.importV4[0].prefixLength", "greater than max"),
        ({"importV4": [{"action": "Accept", "prefixLength": {"min": 24}}]},
         "spec.importV4[0].prefixLength", "needs a cidr"),
        ({"exportV4": [{"action": "Accept", "source": "Everyone"}]},
         "spec.exportV4[0].source", "unknown value"),
        ({"exportV4": [{"action": "Reject", "operations": [{"setPriority": {"value": 5}}]}]},
         "spec.exportV4[0].operations", "only be used with action Accept"),
        ({"exportV4": [{"action": "Accept", "interface": "bad iface"}]},
         "spec.exportV4[0].interface", "interface name"),
        ({"exportv4": []}, "spec.exportv4", "unknown field"),
    ],
)
def test_bgpfilter_rules(spec: dict[str, Any], field: str, fragment: str) -> None:
    rejects(body("BGPFilter", spec), field, fragment)


# -- Node ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"bgp": {"ipv4Address": "fd00::1/64"}}, "spec.bgp.ipv4Address", "not an IPv4"),
        ({"bgp": {"ipv4Address": "10.0.0.300/24"}}, "spec.bgp.ipv4Address", "not a valid"),
        ({"bgp": {"ipv6Address": "10.0.0.1/24"}}, "spec.bgp.ipv6Address", "not an IPv6"),
        ({"bgp": {"routeReflectorClusterID": "not-an-ip"}}, "spec.bgp.routeReflectorClusterID",
         "not a valid IP"),
        ({"bgp": {"asNumber": "4294967296"}}, "spec.bgp.asNumber", "out of range"),
        ({"bgp": {}}, "spec.bgp", "should not be empty"),
        ({"bgp": {"ipv4address": "10.0.0.1/24"}}, "spec.bgp.ipv4address", "unknown field"),
        ({"vxlanTunnelMACAddr": "66:2b:3c:4d:5e"}, "spec.vxlanTunnelMACAddr",
         "not a MAC address"),
        ({"vxlanTunnelMACAddr": "zz:2b:3c:4d:5e:6f"}, "spec.vxlanTunnelMACAddr",
         "not a MAC address"),
        ({"vxlanTunnelMACAddrV6": "66:2b-3c:4d:5e:6f"}, "spec.vxlanTunnelMACAddrV6",
         "not a MAC address"),
        ({"ipv6VXLANTunnelAddr": "fe80::1%eth0"}, "spec.ipv6VXLANTunnelAddr", "no %zone"),
        ({"bgp": {"ipv4Address": "10.0.0.1/255.255.255.0"}}, "spec.bgp.ipv4Address",
         "prefix must be a length"),
        ({"ipv4VXLANTunnelAddr": "10.0.0.1/32"}, "spec.ipv4VXLANTunnelAddr",
         "not a valid IP address"),
        ({"addresses": [{"address": "10.0.0.1", "type": "PublicIP"}]}, "spec.addresses[0].type",
         "unknown value"),
        ({"orchRefs": [{"nodeName": "n1"}]}, "spec.orchRefs[0].orchestrator", "is required"),
    ],
)
def test_node_rules(spec: dict[str, Any], field: str, fragment: str) -> None:
    rejects(body("Node", spec, name="node-1"), field, fragment)


# -- Felix, IPAM, WorkloadEndpoint ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"vxlanEnabeld": True}, "spec.vxlanEnabeld", "unknown field"),
        ({"vxlanVNI": 16777216}, "spec.vxlanVNI", "at most"),
        ({"vxlanPort": 0}, "spec.vxlanPort", "at least 1"),
        ({"ipipMTU": "1440"}, "spec.ipipMTU", "must be an integer"),
        ({"iptablesBackend": "nftables"}, "spec.iptablesBackend", "unknown value"),
        ({"routeTableRange": {"min": 0, "max": 250}}, "spec.routeTableRange", "within 1..250"),
        ({"routeTableRange": {"min": 10, "max": 5}}, "spec.routeTableRange", "within 1..250"),
        ({"routeRefreshInterval": "often"}, "spec.routeRefreshInterval", "not a duration"),
        ({"natOutgoingAddress": "10.0.0.0/8"}, "spec.natOutgoingAddress", "not a valid IP"),
        ({"deviceRouteProtocol": 256}, "spec.deviceRouteProtocol", "at most 255"),
    ],
)
def test_felixconfiguration_rules(spec: dict[str, Any], field: str, fragment: str) -> None:
    rejects(body("FelixConfiguration", spec, name="default"), field, fragment)


def _block(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cidr": "10.0.0.0/30", "affinity": "host:n1", "allocations": [0, None, None, None],
        "unallocated": [1, 2, 3], "attributes": [{"handle_id": "h1"}], "deleted": False,
    }
    spec.update(changes)
    return body("IPAMBlock", spec, name="10-0-0-0-30")


def test_consistent_ipam_block_is_accepted() -> None:
    assert parse(_block()).spec.size == 4


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"cidr": "10.0.0.1/30"}, "spec.cidr", "host bits"),
        ({"cidr": "10.0.0.0/16", "allocations": [], "unallocated": []}, "spec.cidr",
         "larger than any pool block"),
        ({"affinity": "n1"}, "spec.affinity", "host:<node>"),
        ({"allocations": [0, None]}, "spec.allocations", "2 entries for a block of 4"),
        ({"allocations": [5, None, None, None]}, "spec.allocations[0]", "only 1"),
        ({"allocations": ["0", None, None, None]}, "spec.allocations[0]", "integer"),
        ({"unallocated": [1, 2, 3, 3]}, "spec.unallocated[3]", "listed twice"),
        ({"unallocated": [0, 1, 2, 3]}, "spec.unallocated[0]", "free and allocated"),
        ({"unallocated": [1, 2, 4]}, "spec.unallocated[2]", "outside a block of 4"),
        ({"attributes": [{"handle_id": "h1", "secondary": {"pod": 1}}]},
         "spec.attributes[0].secondary.pod", "must be a string"),
        ({"attributes": [{"handleID": "h1"}]}, "spec.attributes[0].handleID", "unknown field"),
    ],
)
def test_ipamblock_rules(changes: dict[str, Any], field: str, fragment: str) -> None:
    rejects(_block(**changes), field, fragment)


@pytest.mark.parametrize(
    ("kind", "spec", "field", "fragment"),
    [
        ("BlockAffinity", {"state": "confirmed", "node": "n1"}, "spec.cidr", "is required"),
        ("BlockAffinity", {"state": "claimed", "node": "n1", "cidr": "10.0.0.0/26"},
         "spec.state", "unknown value"),
        ("BlockAffinity", {"state": "pending", "node": "n1", "cidr": "10.0.0.0/26",
                           "deleted": "maybe"}, "spec.deleted", "true or false"),
        ("IPAMHandle", {"block": {"10.0.0.0/26": 1}}, "spec.handleID", "is required"),
        ("IPAMHandle", {"handleID": "h", "block": {"10.0.0.0/33": 1}}, "spec.block.10.0.0.0/33",
         "not a valid CIDR"),
        ("IPAMHandle", {"handleID": "h", "block": {"10.0.0.0/26": -1}},
         "spec.block.10.0.0.0/26", "at least 0"),
        ("IPAMConfiguration", {"maxBlocksPerHost": -1}, "spec.maxBlocksPerHost", "at least 0"),
        ("IPAMConfiguration", {"ipCooldownSeconds": 1201}, "spec.ipCooldownSeconds",
         "at most 1200"),
        ("IPReservation", {"reservedCIDRs": ["10.0.0.0/40"]}, "spec.reservedCIDRs[0]",
         "not a valid CIDR"),
        ("WorkloadEndpoint", {"node": "n1"}, "spec.interfaceName", "is required"),
        ("WorkloadEndpoint", {"interfaceName": "cali-name-too-long-x"}, "spec.interfaceName",
         "interface name"),
        ("WorkloadEndpoint", {"interfaceName": "cali1", "mac": "nope"}, "spec.mac",
         "not a MAC"),
        ("WorkloadEndpoint", {"interfaceName": "cali1", "ipNetworks": ["10.0.0.0/24"]},
         "spec.ipNetworks[0]", "single address"),
        ("WorkloadEndpoint", {"interfaceName": "cali1", "ipNetworks": ["10.0.0.1/24"]},
         "spec.ipNetworks[0]", "host bits"),
        ("WorkloadEndpoint", {"interfaceName": "cali1", "ports": [{"port": 0}]},
         "spec.ports[0].port", "at least 1"),
        ("WorkloadEndpoint", {"interfaceName": "cali1", "ports": [{"port": 80,
                                                                   "protocol": "HTTP"}]},
         "spec.ports[0].protocol", "unknown protocol"),
        ("WorkloadEndpoint", {"interfaceName": "cali1", "ipNetworks": ["10.0.0.1/32"],
                              "ipNATs": [{"internalIP": "10.0.0.2", "externalIP": "192.0.2.1"}]},
         "spec.ipNATs[0].internalIP", "not one of the endpoint's ipNetworks"),
        ("WorkloadEndpoint", {"interfaceName": "cali1", "ipv4Gateway": "fd00::1"},
         "spec.ipv4Gateway", "not an IPv4"),
    ],
)
def test_ipam_and_endpoint_rules(kind: str, spec: dict[str, Any], field: str,
                                 fragment: str) -> None:
    rejects(body(kind, spec), field, fragment)


def test_parse_does_not_modify_its_input() -> None:
    doc = body("IPPool", {"cidr": "10.0.0.0/16"})
    before = copy.deepcopy(doc)
    parse(doc)
    assert doc == before


def test_parse_as_returns_the_expected_kind_or_names_the_mismatch() -> None:
    pool = parse_as(IPPool, body("IPPool", {"cidr": "10.0.0.0/16"}))
    assert pool.spec.cidr.prefixlen == 16
    with pytest.raises(ValidationError, match="expected kind Node, got IPPool"):
        parse_as(Node, body("IPPool", {"cidr": "10.0.0.0/16"}))


@pytest.mark.parametrize("mac", ["66:2b:3c:4d:5e:6f", "66-2B-3C-4D-5E-6F", "662b.3c4d.5e6f"])
def test_mac_forms_go_accepts_are_kept_in_one_canonical_form(mac: str) -> None:
    node = parse(body("Node", {"vxlanTunnelMACAddr": mac}))
    assert node.spec.vxlan_tunnel_mac_addr == "66:2b:3c:4d:5e:6f"
