"""Real-looking Calico YAML of every kind loads unchanged and round-trips through to_body."""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import pytest
import yaml

from wren.model import (
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    FelixConfiguration,
    IPAMBlock,
    IPAMConfiguration,
    IPAMHandle,
    IPPool,
    IPReservation,
    Node,
    Resource,
    WorkloadEndpoint,
    parse,
)

EXAMPLES = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 192.168.0.0/16
  ipipMode: CrossSubnet
  natOutgoing: true
  nodeSelector: all()
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: vxlan-pool
spec:
  cidr: 10.244.0.0/16
  blockSize: 24
  vxlanMode: CrossSubnet
  ipipMode: Never
  natOutgoing: true
  disableBGPExport: false
  nodeSelector: "!has(edge)"
  allowedUses: [Workload, Tunnel]
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv6-ippool
spec:
  cidr: fd00:10:244::/64
  vxlanMode: Always
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  annotations:
    projectcalico.org/metadata: '{"creationTimestamp":null}'
  creationTimestamp: "2024-03-01T10:00:00Z"
  generation: 1
  name: default-ipv4-ippool
  resourceVersion: "1042"
  uid: 7f8e9a3c-1111-2222-3333-444455556666
spec:
  allowedUses: [Workload, Tunnel]
  blockSize: 26
  cidr: 10.42.0.0/16
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
  vxlanMode: Never
---
apiVersion: projectcalico.org/v3
kind: IPReservation
metadata:
  name: my-ipreservation-1
spec:
  reservedCIDRs:
  - 192.168.2.3
  - 10.0.2.3/32
  - cafe:f00d::/123
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  peerIP: 192.20.30.40
  asNumber: 64567
  nodeSelector: rack == 'rack-1'
  password:
    secretKeyRef:
      name: bgp-secrets
      key: rr-password
  keepaliveTime: 30s
  maxRestartTime: 120s
  sourceAddress: None
  keepOriginalNextHop: true
  numAllowedLocalASNumbers: 1
  ttlSecurity: 1
  filters: [export-pods]
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: v6-peer-on-port
spec:
  node: rack1-host1
  peerIP: "[2001:db8::1]:1790"
  asNumber: "64512.100"
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 63400
  serviceClusterIPs:
  - cidr: 10.96.0.0/12
  serviceExternalIPs:
  - cidr: 104.244.42.129/32
  - cidr: 172.217.3.0/24
  listenPort: 178
  bindMode: NodeIP
  communities:
  - name: bgp-large-community
    value: 63400:300:100
  prefixAdvertisements:
  - cidr: 172.218.4.0/26
    communities:
    - bgp-large-community
    - 63400:120
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: node.rr1
spec:
  logSeverityScreen: Debug
  ignoredInterfaces: ["iface-1", "iface-*"]
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: mesh-with-graceful-restart
spec:
  nodeMeshMaxRestartTime: 120s
  nodeMeshPassword:
    secretKeyRef:
      name: bgp-secrets
      key: mesh-password
---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata:
  name: my-filter
spec:
  exportV4:
  - action: Accept
    matchOperator: In
    cidr: 77.0.0.0/16
    source: RemotePeers
  importV4:
  - action: Reject
    matchOperator: NotIn
    cidr: 44.0.0.0/16
    prefixLength:
      min: 20
      max: 24
  exportV6:
  - action: Reject
    interface: "*.calico"
  importV6:
  - action: Accept
    matchOperator: Equal
    cidr: 5000::0/64
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
  labels:
    kubernetes.io/hostname: node1
    route-reflector: "true"
spec:
  bgp:
    ipv4Address: 192.168.1.10/24
    ipv6Address: fd00:1::10/64
    ipv4IPIPTunnelAddr: 10.42.17.128
    routeReflectorClusterID: 224.0.0.1
    asNumber: 64512
  ipv4VXLANTunnelAddr: 10.244.1.1
  vxlanTunnelMACAddr: 66:2b:3c:4d:5e:6f
  addresses:
  - address: 192.168.1.10/24
    type: CalicoNodeIP
  - address: 192.168.1.10
    type: InternalIP
  orchRefs:
  - nodeName: node1
    orchestrator: k8s
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  bpfConnectTimeLoadBalancing: TCP
  bpfHostNetworkedNATWithoutCTLB: Enabled
  bpfLogLevel: ""
  floatingIPs: Disabled
  healthPort: 9099
  logSeverityScreen: Info
  reportingInterval: 0s
  vxlanVNI: 4096
---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: node.node1
spec:
  ipipEnabled: false
  vxlanEnabled: true
  vxlanMTU: 1410
  vxlanPort: 4790
  natOutgoingAddress: 192.168.1.10
  iptablesBackend: NFT
  routeRefreshInterval: 1m30s
  routeTableRange: {min: 1, max: 250}
  deviceRouteProtocol: 80
  interfacePrefix: cali
  failsafeInboundHostPorts:
  - {protocol: tcp, port: 22}
---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata:
  name: default
spec:
  strictAffinity: false
  maxBlocksPerHost: 4
---
apiVersion: crd.projectcalico.org/v1
kind: BlockAffinity
metadata:
  name: node1-10-244-1-0-26
spec:
  cidr: 10.244.1.0/26
  deleted: "false"
  node: node1
  state: confirmed
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMHandle
metadata:
  name: k8s-pod-network.5d0c6b1e2a
spec:
  block:
    10.244.1.0/26: 1
  deleted: false
  handleID: k8s-pod-network.5d0c6b1e2a
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  creationTimestamp: null
  labels:
    app: nginx
    projectcalico.org/namespace: default
    projectcalico.org/orchestrator: k8s
  name: node1-k8s-nginx--7c5ddbdf54--abcde-eth0
  namespace: default
spec:
  containerID: 5d0c6b1e2a
  endpoint: eth0
  interfaceName: cali0ef24b1d6f1
  ipNetworks:
  - 10.244.1.2/32
  mac: 2a:5f:16:c4:9b:01
  node: node1
  orchestrator: k8s
  pod: nginx-7c5ddbdf54-abcde
  profiles:
  - kns.default
  - ksa.default.default
  serviceAccountName: default
  ports:
  - name: http
    port: 80
    protocol: TCP
    hostPort: 0
"""


def _block_body() -> dict[str, Any]:
    allocations: list[int | None] = [None] * 64
    allocations[0], allocations[1] = 0, 1
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPAMBlock",
        "metadata": {"name": "10-244-1-0-26", "generation": 4, "resourceVersion": "77"},
        "spec": {
            "affinity": "host:node1",
            "allocations": allocations,
            "attributes": [
                {"handle_id": "ipip-tunnel-addr-node1",
                 "secondary": {"node": "node1", "type": "ipipTunnelAddress"}},
                {"handle_id": "k8s-pod-network.5d0c6b1e2a",
                 "secondary": {"namespace": "default", "node": "node1", "pod": "nginx",
                               "timestamp": "2024-03-01 10:00:00.1 +0000 UTC"}},
            ],
            "cidr": "10.244.1.0/26",
            "deleted": False,
            "sequenceNumber": 1709287200000000000,
            "sequenceNumberForAllocation": {"0": 1709287200000000001},
            "strictAffinity": False,
            "unallocated": list(range(2, 64)),
        },
    }


def _examples() -> list[dict[str, Any]]:
    return [*yaml.safe_load_all(EXAMPLES), _block_body()]


def _ids() -> list[str]:
    return [f"{d['kind']}/{d['metadata']['name']}" for d in _examples()]


@pytest.mark.parametrize("body", _examples(), ids=_ids())
def test_real_calico_yaml_loads_and_round_trips(body: dict[str, Any]) -> None:
    res = parse(body)
    assert body["kind"] == res.KIND
    out = res.to_body()
    assert out["apiVersion"] == "projectcalico.org/v3"
    again = parse(out)
    assert again == res
    # Emitting again gives byte-identical output: the form `wrenctl get -o yaml` shows is stable.
    assert again.to_body() == out
    assert yaml.safe_load(yaml.safe_dump(out)) == out


def _by_name(kind: type[Resource], name: str) -> Any:
    for body in _examples():
        if body["kind"] == kind.KIND and body["metadata"]["name"] == name:
            res = parse(body)
            assert isinstance(res, kind)
            return res
    raise AssertionError(f"no example {kind.KIND}/{name}")


def test_pool_defaults_follow_calico() -> None:
    pool = _by_name(IPPool, "default-ipv4-ippool")
    assert pool.spec.cidr == ipaddress.ip_network("192.168.0.0/16")
    assert pool.spec.block_size == 26
    assert pool.spec.vxlan_mode == "Never"
    assert pool.spec.allowed_uses == ("Workload", "Tunnel")
    assert pool.ip_version == 4
    v6 = _by_name(IPPool, "default-ipv6-ippool")
    assert v6.spec.block_size == 122 and v6.ip_version == 6
    assert v6.spec.node_selector == "all()"


def test_crd_form_keeps_store_metadata_and_drops_server_managed_fields() -> None:
    body = next(b for b in _examples() if b["apiVersion"] == "crd.projectcalico.org/v1"
                and b["kind"] == "IPPool")
    pool = parse(body)
    assert pool.metadata.resource_version == "1042"
    assert pool.metadata.uid.startswith("7f8e9a3c")
    assert "generation" not in pool.to_body()["metadata"]


def test_bgp_peer_fields_are_typed() -> None:
    tor = _by_name(BGPPeer, "rack1-tor")
    assert tor.spec.peer_address == ipaddress.ip_address("192.20.30.40")
    assert tor.spec.peer_port == 179
    assert tor.spec.as_number == 64567
    assert tor.spec.keepalive_time == datetime.timedelta(seconds=30)
    assert tor.spec.password.secret_key_ref.key == "rr-password"
    assert tor.to_body()["spec"]["maxRestartTime"] == "2m0s"
    v6 = _by_name(BGPPeer, "v6-peer-on-port")
    assert v6.spec.peer_address == ipaddress.ip_address("2001:db8::1")
    assert v6.spec.peer_port == 1790
    assert v6.spec.as_number == 64512 * 65536 + 100
    rr = _by_name(BGPPeer, "peer-with-route-reflectors")
    assert rr.spec.peer_selector == "route-reflector == 'true'"


def test_bgp_configuration_defaults_and_named_communities() -> None:
    conf = _by_name(BGPConfiguration, "default")
    assert conf.spec.node_to_node_mesh_enabled is False
    assert conf.spec.community_value("bgp-large-community") == "63400:300:100"
    assert conf.spec.community_value("63400:120") == "63400:120"
    per_node = _by_name(BGPConfiguration, "node.rr1")
    assert per_node.spec.node_to_node_mesh_enabled is True
    assert per_node.spec.as_number == 64512
    assert per_node.spec.listen_port == 179


def test_bgp_filter_rules_keep_order_and_family() -> None:
    flt = _by_name(BGPFilter, "my-filter")
    assert [r.action for r in flt.spec.import_v4] == ["Reject"]
    assert flt.spec.import_v4[0].prefix_length.max == 24
    assert flt.spec.import_v6[0].cidr == ipaddress.ip_network("5000::/64")


def test_node_helpers_give_addresses_with_prefix() -> None:
    node = _by_name(Node, "node1")
    assert node.ipv4_address == ipaddress.ip_interface("192.168.1.10/24")
    assert node.ipv4_address.network == ipaddress.ip_network("192.168.1.0/24")
    assert node.ipv6_address == ipaddress.ip_interface("fd00:1::10/64")
    assert node.route_reflector_cluster_id == ipaddress.ip_address("224.0.0.1")
    assert node.metadata.labels["route-reflector"] == "true"


def test_node_without_bgp_has_no_address() -> None:
    node = parse({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                  "metadata": {"name": "n2"}, "spec": {}})
    assert isinstance(node, Node)
    assert node.ipv4_address is None and node.as_number is None


def test_felix_configuration_keeps_unmodelled_fields_verbatim() -> None:
    default = _by_name(FelixConfiguration, "default")
    assert default.spec.other["bpfConnectTimeLoadBalancing"] == "TCP"
    assert default.spec.vxlan_vni == 4096 and default.spec.health_port == 9099
    assert default.to_body()["spec"]["floatingIPs"] == "Disabled"
    per_node = _by_name(FelixConfiguration, "node.node1")
    assert per_node.spec.vxlan_enabled is True and per_node.spec.ipip_enabled is False
    assert per_node.spec.route_refresh_interval == datetime.timedelta(seconds=90)
    assert per_node.spec.nat_outgoing_address == ipaddress.ip_address("192.168.1.10")
    assert per_node.spec.other["failsafeInboundHostPorts"] == [{"protocol": "tcp", "port": 22}]


def test_ipam_objects_parse_with_helpers() -> None:
    block = parse(_block_body())
    assert isinstance(block, IPAMBlock)
    assert block.affinity_node == "node1"
    assert block.spec.allocations[:3] == (0, 1, None)
    assert block.spec.attributes[1].secondary["pod"] == "nginx"
    affinity = _by_name(BlockAffinity, "node1-10-244-1-0-26")
    assert affinity.spec.deleted is False and affinity.spec.state == "confirmed"
    handle = _by_name(IPAMHandle, "k8s-pod-network.5d0c6b1e2a")
    assert handle.spec.block == {"10.244.1.0/26": 1}
    conf = _by_name(IPAMConfiguration, "default")
    assert conf.spec.auto_allocate_blocks is True and conf.spec.max_blocks_per_host == 4
    res = _by_name(IPReservation, "my-ipreservation-1")
    assert ipaddress.ip_network("192.168.2.3/32") in res.spec.reserved_cidrs


def test_block_affinity_other_than_host_has_no_node() -> None:
    body = _block_body()
    body["spec"]["affinity"] = "virtual:vm-1"
    block = parse(body)
    assert isinstance(block, IPAMBlock)
    assert block.affinity_node is None


def test_workload_endpoint_is_namespaced_and_typed() -> None:
    wep = _by_name(WorkloadEndpoint, "node1-k8s-nginx--7c5ddbdf54--abcde-eth0")
    assert wep.metadata.namespace == "default"
    assert wep.spec.ip_networks == (ipaddress.ip_network("10.244.1.2/32"),)
    assert wep.spec.ports[0].port == 80
    body = wep.to_body()
    assert body["metadata"]["namespace"] == "default"


def test_workload_endpoint_without_namespace_lands_in_default() -> None:
    wep = parse({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                 "metadata": {"name": "w"}, "spec": {"interfaceName": "cali1"}})
    assert wep.metadata.namespace == "default"


def test_with_metadata_returns_a_changed_copy() -> None:
    pool = _by_name(IPPool, "vxlan-pool")
    newer = pool.with_metadata(resource_version="9")
    assert newer.metadata.resource_version == "9" and pool.metadata.resource_version == ""
    assert newer.spec is pool.spec
