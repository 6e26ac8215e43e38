import ipaddress

import pytest

from agent.startup.autodetect import AutodetectError, HostInterface, choose_address


def iface(name: str, index: int, *addrs: str) -> HostInterface:
    return HostInterface(name, index, tuple(ipaddress.ip_interface(a) for a in addrs))


HOST = [
    iface("lo", 1, "127.0.0.1/8"),
    iface("docker0", 2, "172.17.0.1/16"),
    iface("eth0", 3, "fe80::1/64", "10.0.1.5/24"),
    iface("eth1", 4, "192.168.9.2/24"),
    iface("cali1234567890a", 5, "169.254.1.1/32"),
    iface("vxlan.calico", 6, "10.65.0.1/32"),
]


def test_first_found_skips_calico_skip_list_and_keeps_prefix() -> None:
    assert choose_address("first-found", HOST) == ipaddress.ip_interface("10.0.1.5/24")


def test_interface_regex_picks_matching_interface() -> None:
    assert choose_address("interface=eth1", HOST) == ipaddress.ip_interface("192.168.9.2/24")


def test_skip_interface_adds_to_the_skip_list() -> None:
    assert choose_address("skip-interface=eth0", HOST) == ipaddress.ip_interface("192.168.9.2/24")


def test_cidr_method_picks_address_inside_cidr() -> None:
    got = choose_address("cidr=192.168.0.0/16,172.16.0.0/12", HOST)
    assert got == ipaddress.ip_interface("192.168.9.2/24")


def test_can_reach_uses_the_kernels_source_address() -> None:
    got = choose_address(
        "can-reach=8.8.8.8", HOST, route_lookup=lambda _d: ipaddress.ip_address("10.0.1.5")
    )
    assert got == ipaddress.ip_interface("10.0.1.5/24")


def test_kubernetes_internal_ip_finds_its_prefix_on_the_host() -> None:
    got = choose_address(
        "kubernetes-internal-ip", HOST, internal_ip=ipaddress.ip_address("192.168.9.2")
    )
    assert got == ipaddress.ip_interface("192.168.9.2/24")


def test_ipv6_first_found_ignores_link_local() -> None:
    host = [*HOST, iface("eth2", 7, "fe80::2/64", "fd00::5/64")]
    assert choose_address("first-found", host, version=6) == ipaddress.ip_interface("fd00::5/64")


def test_method_that_finds_nothing_names_method_and_interfaces_seen() -> None:
    with pytest.raises(AutodetectError) as err:
        choose_address("interface=wlan.*", HOST)
    assert "interface=wlan.*" in str(err.value)
    assert "eth0[" in str(err.value) and "10.0.1.5/24" in str(err.value)


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(AutodetectError, match="unknown method"):
        choose_address("magic", HOST)


def test_bad_regex_is_an_error_naming_the_method() -> None:
    with pytest.raises(AutodetectError, match="bad regular expression"):
        choose_address("interface=(", HOST)
