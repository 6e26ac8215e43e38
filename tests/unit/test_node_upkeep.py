"""calico-node's startup duties on a datastore: the Node's address, default pool, tunnels."""

import dataclasses
import ipaddress

import pytest

from agent.startup.autodetect import AutodetectError, HostInterface
from agent.startup.node_upkeep import NodeUpkeep, resolve_address, resolve_address6
from wren.client import Client
from wren.datastore.memory import MemoryBackend
from wren.ipam.allocator import Ipam
from wren.model import IPPool, Node, parse

ADDR = ipaddress.IPv4Interface("10.0.1.11/24")
IFACES = [HostInterface("eth0", 2, (ADDR,))]


def upkeep(env: dict[str, str] | None = None,
           address: ipaddress.IPv4Interface | None = ADDR) -> tuple[NodeUpkeep, Client]:
    backend = MemoryBackend()
    client = Client(backend)
    box = {"addr": address}
    up = NodeUpkeep(node_name="n1", client=client, ipam=Ipam(backend, sleep=lambda _s: None),
                    detect_address=lambda _node: box["addr"], env=env or {})
    up.box = box  # type: ignore[attr-defined]
    return up, client


def add_pool(client: Client, cidr: str = "10.65.0.0/16", **spec: object) -> None:
    client.create(parse({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                         "metadata": {"name": "p"}, "spec": {"cidr": cidr, **spec}}))


def test_registers_the_node_with_its_address_and_prefix() -> None:
    up, client = upkeep()
    assert up.run_once()
    node = client.get(Node, "n1")
    assert node.spec.bgp is not None and node.spec.bgp.ipv4_address == ADDR


def test_a_changed_address_is_written_back() -> None:
    up, client = upkeep()
    up.run_once()
    up.box["addr"] = ipaddress.IPv4Interface("10.0.2.11/24")  # type: ignore[attr-defined]
    up.run_once()
    node = client.get(Node, "n1")
    assert node.spec.bgp is not None and str(node.spec.bgp.ipv4_address) == "10.0.2.11/24"


def test_default_pool_is_created_only_when_no_pool_exists() -> None:
    env = {"CALICO_IPV4POOL_CIDR": "10.70.0.0/16", "CALICO_IPV4POOL_VXLAN": "Always"}
    up, client = upkeep(env)
    up.run_once()
    pools = client.list(IPPool)
    assert [(str(p.spec.cidr), p.spec.vxlan_mode) for p in pools] == [("10.70.0.0/16", "Always")]

    up2, client2 = upkeep(env)
    add_pool(client2)
    up2.run_once()
    assert [str(p.spec.cidr) for p in client2.list(IPPool)] == ["10.65.0.0/16"]


def test_ipip_pool_gets_the_node_a_tunnel_address_from_the_pool() -> None:
    up, client = upkeep()
    add_pool(client, ipipMode="Always")
    up.run_once()
    node = client.get(Node, "n1")
    assert node.spec.bgp is not None and node.spec.bgp.ipv4_ipip_tunnel_addr is not None
    assert node.spec.bgp.ipv4_ipip_tunnel_addr in ipaddress.ip_network("10.65.0.0/16")
    assert node.spec.ipv4_vxlan_tunnel_addr is None


def test_vxlan_tunnel_address_and_mac_come_and_go_with_the_pool_mode() -> None:
    up, client = upkeep()
    add_pool(client, vxlanMode="CrossSubnet")
    up.run_once()
    node = client.get(Node, "n1")
    assert node.spec.ipv4_vxlan_tunnel_addr is not None
    assert node.spec.vxlan_tunnel_mac_addr.startswith("66:")
    pool = client.get(IPPool, "p")
    never = dataclasses.replace(pool.spec, vxlan_mode="Never")
    client.update(dataclasses.replace(pool, spec=never))
    up.run_once()
    node = client.get(Node, "n1")
    assert node.spec.ipv4_vxlan_tunnel_addr is None and node.spec.vxlan_tunnel_mac_addr == ""
    assert up._ipam.ips_by_handle("vxlan-tunnel-addr-n1") == []


def test_failure_is_reported_and_retried_not_raised() -> None:
    up, _client = upkeep(env={"CALICO_IPV4POOL_CIDR": "10.70.0.1/16"})  # host bits set
    assert up.run_once() is False
    assert "cidr" in up.last_error


def test_ip_setting_none_explicit_and_autodetect() -> None:
    assert resolve_address("none", "first-found", IFACES) is None
    assert resolve_address("10.0.1.11", "first-found", IFACES) == ADDR  # prefix from the host
    assert str(resolve_address("10.9.9.9/16", "first-found", IFACES)) == "10.9.9.9/16"
    assert resolve_address("autodetect", "interface=eth.*", IFACES) == ADDR
    with pytest.raises(AutodetectError):
        resolve_address("not-an-ip", "first-found", IFACES)


ADDR6 = ipaddress.IPv6Interface("fd00:1::11/64")
IFACES6 = [HostInterface("eth0", 2, (ipaddress.IPv6Interface("fe80::1/64"), ADDR6)),
           HostInterface("eth1", 3, (ipaddress.IPv6Interface("fd00:2::11/64"),))]


def test_ip6_setting_none_explicit_and_autodetect_skip_link_local() -> None:
    assert resolve_address6("none", "first-found", IFACES6) is None
    assert resolve_address6("fd00:1::11", "first-found", IFACES6) == ADDR6  # host's prefix
    assert str(resolve_address6("fd00:9::9/48", "first-found", IFACES6)) == "fd00:9::9/48"
    assert resolve_address6("autodetect", "first-found", IFACES6) == ADDR6
    assert str(resolve_address6("autodetect", "interface=eth1", IFACES6)) == "fd00:2::11/64"
    with pytest.raises(AutodetectError, match=r"IP6=10\.0\.1\.11.*not an IPv6 address"):
        resolve_address6("10.0.1.11", "first-found", IFACES6)
    with pytest.raises(AutodetectError, match="IPv6"):
        resolve_address6("autodetect", "interface=eth0", IFACES)  # IPv4 only there


def _upkeep6(address6: ipaddress.IPv6Interface | None
             ) -> tuple[NodeUpkeep, Client, list[ipaddress.IPv6Interface | None]]:
    backend = MemoryBackend()
    client = Client(backend)
    detected = [address6]  # what IP6 resolves to now
    up = NodeUpkeep(node_name="n1", client=client, ipam=Ipam(backend, sleep=lambda _s: None),
                    detect_address=lambda _node: ADDR, env={},
                    detect_address6=lambda _node: detected[0])
    return up, client, detected


def test_ip6_gives_the_node_its_ipv6_address_and_follows_it() -> None:
    up, client, detected = _upkeep6(ADDR6)
    assert up.run_once()
    bgp = client.get(Node, "n1").spec.bgp
    assert bgp is not None and (bgp.ipv4_address, bgp.ipv6_address) == (ADDR, ADDR6)
    detected[0] = ipaddress.IPv6Interface("fd00:3::11/64")
    assert up.run_once()
    bgp = client.get(Node, "n1").spec.bgp
    assert bgp is not None and str(bgp.ipv6_address) == "fd00:3::11/64"
    detected[0] = None  # IP6=none
    assert up.run_once()
    bgp = client.get(Node, "n1").spec.bgp
    assert bgp is not None and bgp.ipv6_address is None and bgp.ipv4_address == ADDR


def test_without_ip6_a_hand_set_ipv6_address_is_kept() -> None:
    up, client = upkeep()
    up.run_once()
    node = client.get(Node, "n1")
    assert node.spec.bgp is not None
    client.update(dataclasses.replace(node, spec=dataclasses.replace(
        node.spec, bgp=dataclasses.replace(node.spec.bgp, ipv6_address=ADDR6))))
    up.box["addr"] = ipaddress.IPv4Interface("10.0.2.11/24")  # type: ignore[attr-defined]
    assert up.run_once()
    bgp = client.get(Node, "n1").spec.bgp
    assert bgp is not None and (str(bgp.ipv4_address), bgp.ipv6_address) == ("10.0.2.11/24",
                                                                             ADDR6)


def test_an_ipv6_vxlan_pool_asks_for_no_vxlan_tunnel_address() -> None:
    up, client = upkeep()
    add_pool(client, "fd00:65::/48", vxlanMode="Always")
    assert up.run_once(), up.last_error
    node = client.get(Node, "n1")
    assert node.spec.ipv4_vxlan_tunnel_addr is None and node.spec.vxlan_tunnel_mac_addr == ""
