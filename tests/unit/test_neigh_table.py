"""NeighTable logic against a small stand-in for pyroute2's IPRoute neighbour/FDB calls."""

import ipaddress
from typing import Any

import pytest

from agent.kernel.fake import FakeNetlink
from agent.kernel.neigh_table import FDBEntry, Neighbour, NeighTable
from agent.kernel.netlink import LinkInfo
from wren.errors import ValidationError

ADDR = ipaddress.ip_address


class FakeIPRoute:
    """Stores entries like the kernel: neighbours by (ifindex, ip), FDB by (ifindex, mac)."""

    def __init__(self) -> None:
        self.neighs: dict[tuple[int, str], dict[str, Any]] = {}
        self.fdbs: dict[tuple[int, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: set[str] = set()

    def neigh(self, command: str, **kw: Any) -> list[dict[str, Any]]:
        if command == "dump":
            return list(self.neighs.values())
        self.calls.append(("neigh", command))
        if kw["dst"] in self.fail:
            raise OSError(22, "Invalid argument")
        if command == "del":
            del self.neighs[(kw["ifindex"], kw["dst"])]
        else:
            self.neighs[(kw["ifindex"], kw["dst"])] = {
                "ifindex": kw["ifindex"], "family": 10 if ":" in kw["dst"] else 2,
                "state": 0x80, "dst": kw["dst"], "lladdr": kw["lladdr"]}
        return []

    def fdb(self, command: str, **kw: Any) -> list[dict[str, Any]]:
        if command == "dump":
            return list(self.fdbs.values())
        self.calls.append(("fdb", command))
        if command == "del":
            del self.fdbs[(kw["ifindex"], kw["lladdr"])]
        else:
            self.fdbs[(kw["ifindex"], kw["lladdr"])] = {
                "ifindex": kw["ifindex"], "family": 7, "state": 0x80, "dst": kw["dst"],
                "lladdr": kw["lladdr"]}
        return []


@pytest.fixture
def kernel() -> tuple[FakeIPRoute, FakeNetlink]:
    return FakeIPRoute(), FakeNetlink({"eth0": 2, "vxlan.calico": 5, "cali1": 10})


VTEP_NEIGH = Neighbour(iface="vxlan.calico", ip=ADDR("10.244.1.0"), mac="66:00:00:00:00:02")
VTEP_FDB = FDBEntry(iface="vxlan.calico", mac="66:00:00:00:00:02", remote=ADDR("192.168.0.2"))


def test_vtep_neighbour_and_fdb_entries_are_written(
        kernel: tuple[FakeIPRoute, FakeNetlink]) -> None:
    ipr, nl = kernel
    table = NeighTable(ipr, nl)
    table.replace_all([VTEP_NEIGH, VTEP_FDB])
    assert table.apply().updated == 2
    assert ipr.neighs[(5, "10.244.1.0")]["lladdr"] == "66:00:00:00:00:02"
    assert ipr.fdbs[(5, "66:00:00:00:00:02")]["dst"] == "192.168.0.2"


def test_fresh_table_over_programmed_entries_writes_nothing(
        kernel: tuple[FakeIPRoute, FakeNetlink]) -> None:
    ipr, nl = kernel
    first = NeighTable(ipr, nl)
    first.replace_all([VTEP_NEIGH, VTEP_FDB])
    first.apply()
    calls = len(ipr.calls)
    second = NeighTable(ipr, nl)
    second.replace_all([VTEP_NEIGH, VTEP_FDB])
    assert second.apply().updated == 0
    assert len(ipr.calls) == calls


def test_entries_on_other_devices_and_dynamic_entries_are_left_alone(
        kernel: tuple[FakeIPRoute, FakeNetlink]) -> None:
    ipr, nl = kernel
    ipr.neighs[(2, "192.168.0.1")] = {"ifindex": 2, "family": 2, "state": 0x80,
                                      "dst": "192.168.0.1", "lladdr": "00:11:22:33:44:55"}
    ipr.neighs[(10, "10.244.0.5")] = {"ifindex": 10, "family": 2, "state": 0x02,
                                      "dst": "10.244.0.5", "lladdr": "00:11:22:33:44:56"}
    table = NeighTable(ipr, nl)
    assert table.apply().deleted == 0
    assert len(ipr.neighs) == 2


def test_stale_permanent_entry_on_our_device_is_removed(
        kernel: tuple[FakeIPRoute, FakeNetlink]) -> None:
    ipr, nl = kernel
    table = NeighTable(ipr, nl)
    table.replace_all([VTEP_NEIGH, VTEP_FDB])
    table.apply()
    table.replace_all([])
    assert table.apply().deleted == 2
    assert ipr.neighs == {} and ipr.fdbs == {}


def test_entry_for_a_missing_device_waits_then_lands(
        kernel: tuple[FakeIPRoute, FakeNetlink]) -> None:
    ipr, nl = kernel
    table = NeighTable(ipr, nl)
    table.set_entry(Neighbour(iface="cali7", ip=ADDR("10.244.0.7"), mac="EE:EE:EE:EE:EE:EE"))
    result = table.apply()
    assert result.ok and result.waiting_for_iface == 1
    table.on_link(LinkInfo(index=17, name="cali7", up=True), deleted=False)
    assert table.apply().updated == 1
    assert ipr.neighs[(17, "10.244.0.7")]["lladdr"] == "ee:ee:ee:ee:ee:ee"


def test_refused_entry_is_reported_and_retried(kernel: tuple[FakeIPRoute, FakeNetlink]) -> None:
    ipr, nl = kernel
    ipr.fail.add("10.244.1.0")
    table = NeighTable(ipr, nl)
    table.replace_all([VTEP_NEIGH, VTEP_FDB])
    result = table.apply()
    assert result.updated == 1 and "10.244.1.0" in result.errors[0]
    ipr.fail.clear()
    assert table.apply().updated == 1


def test_entries_only_on_devices_we_own() -> None:
    table = NeighTable(FakeIPRoute(), FakeNetlink())
    with pytest.raises(ValidationError, match="eth0"):
        table.set_entry(Neighbour(iface="eth0", ip=ADDR("10.0.0.1"), mac="00:11:22:33:44:55"))
    with pytest.raises(ValidationError, match="mac"):
        Neighbour(iface="cali1", ip=ADDR("10.0.0.1"), mac="zz")
