"""The pure calc: which routes, devices and NAT pools a node wants, for Calico's pool modes."""

import ipaddress
from typing import Any

from agent.calc.dataplane_calc import (
    CalcInput,
    FelixSettings,
    HostFacts,
    compute_desired,
    vxlan_mac_for,
)
from wren.model import IPAMBlock, IPPool, Node, WorkloadEndpoint, parse

ip = ipaddress.ip_address
net = ipaddress.ip_network


def pool(name: str, cidr: str, **spec: Any) -> IPPool:
    res = parse({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                 "metadata": {"name": name}, "spec": {"cidr": cidr, **spec}})
    assert isinstance(res, IPPool)
    return res


def node(name: str, addr: str, **spec: Any) -> Node:
    bgp = {"ipv4Address": addr, **spec.pop("bgp", {})}
    res = parse({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                 "metadata": {"name": name}, "spec": {"bgp": bgp, **spec}})
    assert isinstance(res, Node)
    return res


def block(cidr: str, owner: str) -> IPAMBlock:
    size = net(cidr).num_addresses
    res = parse({"apiVersion": "projectcalico.org/v3", "kind": "IPAMBlock",
                 "metadata": {"name": cidr.replace("/", "-").replace(".", "-")
                              .replace(":", "-").strip("-")},
                 "spec": {"cidr": cidr, "affinity": f"host:{owner}", "strictAffinity": False,
                          "allocations": [None] * size, "unallocated": list(range(size)),
                          "attributes": []}})
    assert isinstance(res, IPAMBlock)
    return res


def wep(
    name: str, node_name: str, ipnet: str, iface: str, mac: str = "ee:ee:ee:ee:ee:ee"
) -> WorkloadEndpoint:
    res = parse({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                 "metadata": {"name": name, "namespace": "default"},
                 "spec": {"node": node_name, "orchestrator": "k8s", "pod": "p", "endpoint": "eth0",
                          "ipNetworks": [ipnet], "interfaceName": iface, "mac": mac}})
    assert isinstance(res, WorkloadEndpoint)
    return res


NODES = {
    "n1": node("n1", "10.0.1.11/24", ipv4VXLANTunnelAddr="10.65.0.1"),
    "n2": node("n2", "10.0.1.12/24", ipv4VXLANTunnelAddr="10.65.1.1"),
    "n3": node("n3", "10.0.2.11/24", ipv4VXLANTunnelAddr="10.65.2.1",
               vxlanTunnelMACAddr="66:00:00:00:00:03"),
}
BLOCKS = {b: block(b, o) for b, o in
          (("10.65.0.0/26", "n1"), ("10.65.1.0/26", "n2"), ("10.65.2.0/26", "n3"))}
LEARNED = {net("10.65.1.0/26"): ip("10.0.1.12"), net("10.65.2.0/26"): ip("10.0.2.11")}
HOST = HostFacts(parent_iface="eth0", host_mtu=1500)


def calc(pools: dict[str, IPPool], **kw: Any) -> Any:
    args: dict[str, Any] = {"node_name": "n1", "pools": pools, "nodes": NODES, "blocks": BLOCKS,
                            "learned": LEARNED, "host": HOST}
    args.update(kw)
    return compute_desired(CalcInput(**args))


def test_local_workloads_get_a_host_route_on_their_cali_interface() -> None:
    d = calc({"p": pool("p", "10.65.0.0/16")},
             endpoints={"default/a": wep("a", "n1", "10.65.0.5/32", "cali0123456789a")})
    route = d.workload_routes[net("10.65.0.5/32")]
    assert route.iface == "cali0123456789a" and route.mac == "ee:ee:ee:ee:ee:ee"


def test_own_blocks_are_blackholed_and_never_routed_elsewhere() -> None:
    learned = {**LEARNED, net("10.65.0.0/26"): ip("10.0.1.12")}
    d = calc({"p": pool("p", "10.65.0.0/16")}, learned=learned)
    assert d.block_routes[net("10.65.0.0/26")].kind == "blackhole"


def test_never_mode_routes_learned_blocks_directly_via_next_hop() -> None:
    host = HostFacts(parent_iface="eth0", gateways={ip("10.0.2.11"): ip("10.0.1.1")})
    d = calc({"p": pool("p", "10.65.0.0/16")}, host=host)
    r = d.block_routes[net("10.65.1.0/26")]
    assert (r.kind, r.gateway, r.device) == ("direct", ip("10.0.1.12"), "eth0")
    assert d.ipip is None and d.vxlan is None and d.mtu == 1500


def test_direct_next_hop_in_another_subnet_resolves_through_the_hosts_route() -> None:
    host = HostFacts(parent_iface="eth0", gateways={ip("10.0.2.11"): ip("10.0.1.1")})
    d = calc({"p": pool("p", "10.65.0.0/16")}, host=host)
    r = d.block_routes[net("10.65.2.0/26")]
    assert (r.kind, r.gateway) == ("direct", ip("10.0.1.1"))
    unresolved = calc({"p": pool("p", "10.65.0.0/16")})
    assert net("10.65.2.0/26") not in unresolved.block_routes
    assert any("10.0.2.11" in w for w in unresolved.warnings)


def test_ipip_always_tunnels_every_learned_block_through_tunl0() -> None:
    d = calc({"p": pool("p", "10.65.0.0/16", ipipMode="Always")})
    assert {r.kind for r in d.block_routes.values() if r.kind != "blackhole"} == {"ipip"}
    assert d.block_routes[net("10.65.2.0/26")].device == "tunl0"
    assert d.ipip is not None and d.ipip.mtu == 1480 and d.mtu == 1480


def test_ipip_crosssubnet_is_direct_in_our_subnet_and_tunnelled_across() -> None:
    d = calc({"p": pool("p", "10.65.0.0/16", ipipMode="CrossSubnet")})
    assert d.block_routes[net("10.65.1.0/26")].kind == "direct"
    assert d.block_routes[net("10.65.2.0/26")].kind == "ipip"


def test_vxlan_routes_come_from_the_datastore_not_bgp() -> None:
    d = calc({"p": pool("p", "10.65.0.0/16", vxlanMode="Always")}, learned={})
    r = d.block_routes[net("10.65.2.0/26")]
    assert (r.kind, r.gateway, r.device) == ("vxlan", ip("10.65.2.1"), "vxlan.calico")
    assert d.vxlan is not None and d.vxlan.vni == 4096 and d.vxlan.port == 4789
    assert d.vxlan.local_ip == ip("10.0.1.11") and d.vxlan.mac == vxlan_mac_for("n1")
    assert d.vxlan.mtu == 1450 and d.mtu == 1450
    vteps = {v.node: v for v in d.vteps}
    assert vteps["n3"].mac == "66:00:00:00:00:03" and vteps["n3"].node_ip == ip("10.0.2.11")
    assert vteps["n2"].mac == vxlan_mac_for("n2")


def test_vxlan_crosssubnet_goes_direct_to_nodes_in_our_subnet() -> None:
    d = calc({"p": pool("p", "10.65.0.0/16", vxlanMode="CrossSubnet")}, learned={})
    assert d.block_routes[net("10.65.1.0/26")].kind == "direct"
    assert d.block_routes[net("10.65.1.0/26")].gateway == ip("10.0.1.12")
    assert d.block_routes[net("10.65.2.0/26")].kind == "vxlan"


def test_switching_a_pool_mode_changes_only_the_remote_block_routes() -> None:
    host = HostFacts(parent_iface="eth0", gateways={ip("10.0.2.11"): ip("10.0.1.1")})
    eps = {"default/a": wep("a", "n1", "10.65.0.5/32", "cali0123456789a")}
    before = calc({"p": pool("p", "10.65.0.0/16", ipipMode="Always")}, endpoints=eps, host=host)
    after = calc({"p": pool("p", "10.65.0.0/16", ipipMode="Never")}, endpoints=eps, host=host)
    assert before.workload_routes == after.workload_routes
    assert before.block_routes[net("10.65.0.0/26")] == after.block_routes[net("10.65.0.0/26")]
    assert after.block_routes[net("10.65.2.0/26")].kind == "direct"


def test_learned_routes_outside_every_pool_are_programmed_like_calicos_bird_does() -> None:
    # The sidecar hands over only what its import policy accepted: outside the pools that is a
    # route an external peer's BGPFilter let in, or a service range another node announces.
    host = HostFacts(parent_iface="eth0", gateways={ip("10.0.2.1"): ip("10.0.1.1")})
    learned = {net("192.168.0.0/24"): ip("10.0.1.12"), net("172.16.0.0/16"): ip("10.0.2.1")}
    d = calc({"p": pool("p", "10.65.0.0/16", ipipMode="Always")}, learned=learned, host=host)
    r = d.block_routes[net("192.168.0.0/24")]
    assert (r.kind, r.gateway, r.device) == ("direct", ip("10.0.1.12"), "eth0")
    assert d.block_routes[net("172.16.0.0/16")].gateway == ip("10.0.1.1")  # recursive


def test_learned_route_covering_the_nodes_own_subnet_is_refused_with_a_warning() -> None:
    learned = {net("0.0.0.0/0"): ip("10.0.1.1"), net("10.0.0.0/16"): ip("10.0.1.1")}
    d = calc({"p": pool("p", "10.65.0.0/16")}, learned=learned)
    assert net("0.0.0.0/0") not in d.block_routes and net("10.0.0.0/16") not in d.block_routes
    assert any("10.0.0.0/16" in w and "shadow" in w for w in d.warnings)


def test_nat_pools_mark_only_enabled_natoutgoing_pools() -> None:
    d = calc({"a": pool("a", "10.65.0.0/16", natOutgoing=True),
              "b": pool("b", "10.66.0.0/16", natOutgoing=True, disabled=True),
              "c": pool("c", "10.67.0.0/16")})
    assert [(str(p.cidr), p.nat_outgoing) for p in d.nat_pools] == [
        ("10.65.0.0/16", True), ("10.66.0.0/16", False), ("10.67.0.0/16", False)]


def test_felix_configuration_overrides_vni_and_mtu() -> None:
    d = calc({"p": pool("p", "10.65.0.0/16", vxlanMode="Always")}, learned={},
             felix=FelixSettings(vxlan_vni=7000, vxlan_mtu=1400))
    assert d.vxlan is not None and d.vxlan.vni == 7000 and d.vxlan.mtu == 1400 and d.mtu == 1400


def test_a_vtep_without_tunnel_address_yet_is_a_warning_not_a_crash() -> None:
    nodes = {**NODES, "n3": node("n3", "10.0.2.11/24")}
    d = calc({"p": pool("p", "10.65.0.0/16", vxlanMode="Always")}, nodes=nodes, learned={})
    assert net("10.65.2.0/26") not in d.block_routes
    assert any("n3" in w for w in d.warnings)


def test_two_endpoints_claiming_one_address_keep_the_first_and_warn() -> None:
    d = calc({"p": pool("p", "10.65.0.0/16")},
             endpoints={"default/a": wep("a", "n1", "10.65.0.5/32", "cali0000000000a"),
                        "default/b": wep("b", "n1", "10.65.0.5/32", "cali0000000000b")})
    assert d.workload_routes[net("10.65.0.5/32")].iface == "cali0000000000a"
    assert d.warnings


# -- IPv6 blocks learned over BGP --------------------------------------------------------------
DUAL = {
    "n1": node("n1", "10.0.1.11/24", bgp={"ipv6Address": "fd00:1::11/64"}),
    "n2": node("n2", "10.0.1.12/24", bgp={"ipv6Address": "fd00:1::12/64"}),
    "n3": node("n3", "10.0.2.11/24", bgp={"ipv6Address": "fd00:2::11/64"}),
}
POOLS6 = {"p": pool("p", "10.65.0.0/16"), "p6": pool("p6", "fd00:65::/48")}
BLOCKS6 = {**BLOCKS, **{b: block(b, o) for b, o in (("fd00:65::/122", "n1"),
                                                      ("fd00:65::40/122", "n2"),
                                                      ("fd00:65::80/122", "n3"))}}
LEARNED6 = {**LEARNED, net("fd00:65::40/122"): ip("fd00:1::12"),
            net("fd00:65::80/122"): ip("fd00:2::11")}
HOST6 = HostFacts(parent_iface="eth0", gateways={ip("10.0.2.11"): ip("10.0.1.1"),
                                                 ip("fd00:2::11"): ip("fd00:1::1")})


def test_learned_ipv6_blocks_are_routed_directly_via_their_ipv6_next_hop() -> None:
    d = calc(POOLS6, nodes=DUAL, blocks=BLOCKS6, learned=LEARNED6, host=HOST6)
    r = d.block_routes[net("fd00:65::40/122")]
    # The device is left to the kernel: our IPv6 address need not be on the IPv4 one's link.
    assert (r.kind, r.gateway, r.device) == ("direct", ip("fd00:1::12"), None)
    assert d.block_routes[net("fd00:65::/122")].kind == "blackhole"  # ours
    assert d.block_routes[net("10.65.1.0/26")].device == "eth0"  # IPv4 as before
    assert d.warnings == ()


def test_an_ipv6_next_hop_off_our_ipv6_subnet_resolves_through_the_hosts_route() -> None:
    d = calc(POOLS6, nodes=DUAL, blocks=BLOCKS6, learned=LEARNED6, host=HOST6)
    assert d.block_routes[net("fd00:65::80/122")].gateway == ip("fd00:1::1")
    unresolved = calc(POOLS6, nodes=DUAL, blocks=BLOCKS6, learned=LEARNED6, host=HOST)
    assert net("fd00:65::80/122") not in unresolved.block_routes
    assert any("fd00:2::11" in w and "no route" in w for w in unresolved.warnings)


def test_an_ipv6_block_learned_into_our_own_block_is_never_programmed() -> None:
    learned = {**LEARNED6, net("fd00:65::/122"): ip("fd00:1::12"),
               net("fd00:65::8/125"): ip("fd00:1::12")}
    d = calc(POOLS6, nodes=DUAL, blocks=BLOCKS6, learned=learned, host=HOST6)
    assert d.block_routes[net("fd00:65::/122")].kind == "blackhole"
    assert net("fd00:65::8/125") not in d.block_routes


def test_a_learned_ipv6_route_covering_our_ipv6_subnet_is_refused() -> None:
    learned = {net("fd00:1::/48"): ip("fd00:1::12")}
    d = calc(POOLS6, nodes=DUAL, blocks=BLOCKS6, learned=learned, host=HOST6)
    assert net("fd00:1::/48") not in d.block_routes
    assert any("fd00:1::/48" in w and "fd00:1::/64" in w for w in d.warnings)


def test_an_ipv6_pool_asking_for_vxlan_gets_a_warning_and_no_routes() -> None:
    pools = {"p": pool("p", "10.65.0.0/16"), "p6": pool("p6", "fd00:65::/48", vxlanMode="Always")}
    d = calc(pools, nodes=DUAL, blocks=BLOCKS6, learned=LEARNED6, host=HOST6)
    assert net("fd00:65::40/122") not in d.block_routes
    assert net("fd00:65::80/122") not in d.block_routes
    assert any(w.startswith("remote IPv6 blocks: IPPool p6 spec.vxlanMode Always")
               for w in d.warnings)
    assert any(w.startswith("route fd00:65::40/122: IPPool p6") for w in d.warnings)
    # Nor does it switch on vxlan.calico (IPv4) or lower the pods' MTU for it.
    assert d.vxlan is None and d.mtu == HOST6.host_mtu
