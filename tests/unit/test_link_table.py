import ipaddress

import pytest

from agent.kernel.link_table import IPIPLink, LinkChange, ObservedLink, VXLANLink, plan_link
from wren.errors import ValidationError

IFACE = ipaddress.ip_interface
ADDR = ipaddress.ip_address

SPEC = VXLANLink(local=ADDR("192.168.0.1"), parent="eth0", mtu=1450, mac="66:AA:00:00:00:01",
                 addresses=(IFACE("10.244.0.1/32"),))
GOOD = ObservedLink(name="vxlan.calico", index=7, kind="vxlan", up=True, mtu=1450,
                    mac="66:aa:00:00:00:01", vni=4096, port=4789, local=ADDR("192.168.0.1"),
                    parent_index=2, learning=False,
                    addresses=frozenset({IFACE("10.244.0.1/32"), IFACE("fe80::1/64")}))


def ops(changes: list[LinkChange]) -> list[str]:
    return [c.op for c in changes]


def test_matching_device_needs_no_change() -> None:
    assert plan_link(SPEC, GOOD, name="vxlan.calico", parent_index=2) == []


def test_missing_device_is_created_addressed_and_set_up() -> None:
    changes = plan_link(SPEC, None, name="vxlan.calico", parent_index=2)
    assert ops(changes) == ["create", "add_address", "set_up"]
    assert changes[0].mtu == 1450 and changes[0].mac == "66:aa:00:00:00:01"


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("vni", 1, "vni"), ("port", 8472, "port"), ("local", ADDR("192.168.0.9"), "local"),
    ("parent_index", 3, "parent"), ("learning", True, "learning"), ("kind", "veth", "kind")])
def test_attribute_the_kernel_cannot_change_in_place_recreates_the_device(
        field: str, value: object, reason: str) -> None:
    seen = ObservedLink(**{**{f: getattr(GOOD, f) for f in GOOD.__slots__}, field: value})
    changes = plan_link(SPEC, seen, name="vxlan.calico", parent_index=2)
    assert ops(changes) == ["delete", "create", "add_address", "set_up"]
    assert reason in changes[0].reason


def test_mtu_mac_addresses_and_state_are_fixed_in_place() -> None:
    seen = ObservedLink(name="vxlan.calico", index=7, kind="vxlan", up=False, mtu=1500,
                        mac="66:aa:00:00:00:99", vni=4096, port=4789,
                        local=ADDR("192.168.0.1"), parent_index=2, learning=False,
                        addresses=frozenset({IFACE("10.244.9.9/32")}))
    changes = plan_link(SPEC, seen, name="vxlan.calico", parent_index=2)
    assert ops(changes) == ["set_mtu", "set_mac", "del_address", "add_address", "set_up"]
    assert changes[2].address == IFACE("10.244.9.9/32")


def test_unwanted_vxlan_device_is_deleted() -> None:
    assert ops(plan_link(None, GOOD, name="vxlan.calico")) == ["delete"]


def test_unwanted_tunl0_is_emptied_and_downed_because_it_cannot_be_deleted() -> None:
    seen = ObservedLink(name="tunl0", index=3, kind="ipip", up=True, mtu=1480,
                        addresses=frozenset({IFACE("10.244.0.1/32")}))
    assert ops(plan_link(None, seen, name="tunl0")) == ["del_address", "set_down"]


def test_ipip_device_only_compares_kind_mtu_and_addresses() -> None:
    spec = IPIPLink(mtu=1480, addresses=(IFACE("10.244.0.1/32"),))
    seen = ObservedLink(name="tunl0", index=3, kind="ipip", up=True, mtu=1480,
                        addresses=frozenset({IFACE("10.244.0.1/32")}))
    assert plan_link(spec, seen, name="tunl0") == []


def test_vni_out_of_range_is_rejected() -> None:
    with pytest.raises(ValidationError, match="vni"):
        VXLANLink(local=ADDR("192.168.0.1"), parent=None, mtu=1450, vni=1 << 24)
