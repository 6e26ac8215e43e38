"""NeighTable logic against an in-memory kernel behind the `NeighNetlink` seam."""

import errno
import ipaddress
from collections.abc import Sequence

import pytest

from agent.kernel.fake import FakeNetlink
from agent.kernel.neigh_table import FDBEntry, Neighbour, NeighTable
from agent.kernel.netlink import (
    AF_BRIDGE,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    LinkInfo,
    NeighFailure,
    NeighMsg,
    NeighOp,
)
from wren.errors import TemporaryError, ValidationError

ADDR = ipaddress.ip_address
NUD_REACHABLE = 0x02


class FakeNeighKernel(FakeNetlink):
    """FakeNetlink (links) plus neighbours keyed like the kernel keys them: IPv4/IPv6 entries
    by (ifindex, ip), FDB entries by (ifindex, mac). ENODEV for an unknown device, ENOENT when
    deleting what is not there; errors can be injected per address, or for a whole send."""

    def __init__(self, links: dict[str, int]) -> None:
        super().__init__(links)
        self.neighs: dict[tuple[int, object], NeighMsg] = {}
        self.fdbs: dict[tuple[int, str], NeighMsg] = {}
        #: str(dst) → errno for any operation on that address.
        self.fail: dict[str, int] = {}
        self.fail_neigh_sends = 0
        self.neigh_sends: list[list[NeighOp]] = []
        self.neigh_dumps: list[tuple[int, int]] = []

    def add(self, msg: NeighMsg) -> None:
        """Someone else's entry (or the kernel's own)."""
        store, key = self._slot(msg)
        store[key] = msg

    def _slot(self, msg: NeighMsg) -> tuple[dict[object, NeighMsg], object]:
        if msg.family == AF_BRIDGE:
            return self.fdbs, (msg.ifindex, msg.lladdr)  # type: ignore[return-value]
        return self.neighs, (msg.ifindex, msg.dst)  # type: ignore[return-value]

    def send_neighs(self, ops: Sequence[NeighOp]) -> list[NeighFailure]:
        if self.fail_neigh_sends:
            self.fail_neigh_sends -= 1
            raise TemporaryError("fake netlink: replies lost")
        self.neigh_sends.append(list(ops))
        failures: list[NeighFailure] = []
        for op in ops:
            msg = op.neigh
            store, key = self._slot(msg)
            code = self.fail.get(str(msg.dst))
            if code is None:
                if msg.ifindex not in self.links:
                    code = errno.ENODEV
                elif op.op == "replace":
                    store[key] = msg
                elif key in store:
                    del store[key]
                else:
                    code = errno.ENOENT
            if code is not None:
                failures.append(NeighFailure(op=op, errno=code, message=""))
        return failures

    def dump_neighs(self, *, family: int, ifindex: int = 0) -> list[NeighMsg]:
        self.neigh_dumps.append((family, ifindex))
        store = self.fdbs if family == AF_BRIDGE else self.neighs
        return [m for m in store.values()
                if family in (0, m.family) and ifindex in (0, m.ifindex)]


@pytest.fixture
def kernel() -> FakeNeighKernel:
    return FakeNeighKernel({"eth0": 2, "tunl0": 3, "vxlan.calico": 5, "cali1": 10})


def table(kernel: FakeNeighKernel) -> NeighTable:
    return NeighTable(None, kernel)


VTEP_NEIGH = Neighbour(iface="vxlan.calico", ip=ADDR("10.244.1.0"), mac="66:00:00:00:00:02")
VTEP_FDB = FDBEntry(iface="vxlan.calico", mac="66:00:00:00:00:02", remote=ADDR("192.168.0.2"))


def test_vtep_neighbour_and_fdb_entries_are_written_in_one_send(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.replace_all([VTEP_NEIGH, VTEP_FDB])
    assert nt.apply().updated == 2
    assert len(kernel.neigh_sends) == 1
    assert kernel.neighs[(5, ADDR("10.244.1.0"))] == NeighMsg(
        family=2, ifindex=5, dst=ADDR("10.244.1.0"), lladdr="66:00:00:00:00:02",
        state=NUD_PERMANENT)
    assert kernel.fdbs[(5, "66:00:00:00:00:02")] == NeighMsg(
        family=AF_BRIDGE, ifindex=5, dst=ADDR("192.168.0.2"), lladdr="66:00:00:00:00:02",
        state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)  # `bridge fdb ... self permanent`
    assert nt.counters.entries_programmed == 2


def test_ipv6_neighbour_goes_out_as_an_ipv6_entry(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.set_entry(Neighbour(iface="cali1", ip=ADDR("fd00::7"), mac="ee:ee:ee:ee:ee:ee"))
    assert nt.apply().updated == 1
    assert kernel.neighs[(10, ADDR("fd00::7"))].family == 10


def test_fresh_table_over_programmed_entries_writes_nothing(kernel: FakeNeighKernel) -> None:
    first = table(kernel)
    first.replace_all([VTEP_NEIGH, VTEP_FDB])
    first.apply()
    second = table(kernel)
    second.replace_all([VTEP_NEIGH, VTEP_FDB])
    result = second.apply()
    assert (result.updated, result.deleted, result.errors) == (0, 0, ())
    assert len(kernel.neigh_sends) == 1  # only the first table's
    second.queue_resync()
    assert second.apply().updated == 0 and len(kernel.neigh_sends) == 1


def test_fdb_is_dumped_per_tunnel_device_not_per_pod_veth(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.apply()
    assert kernel.neigh_dumps == [(0, 0), (AF_BRIDGE, 3), (AF_BRIDGE, 5)]


def test_fdb_wanted_on_a_workload_device_is_dumped_there_too(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    entry = FDBEntry(iface="cali1", mac="66:00:00:00:00:09", remote=ADDR("192.168.0.9"))
    nt.set_entry(entry)
    nt.apply()
    assert (AF_BRIDGE, 10) in kernel.neigh_dumps
    fresh = table(kernel)
    fresh.set_entry(entry)
    assert fresh.apply().updated == 0


def test_entries_on_other_devices_dynamic_and_device_own_entries_are_left_alone(
        kernel: FakeNeighKernel) -> None:
    theirs = [
        NeighMsg(family=2, ifindex=2, dst=ADDR("192.168.0.1"), lladdr="00:11:22:33:44:55"),
        NeighMsg(family=2, ifindex=10, dst=ADDR("10.244.0.5"), lladdr="00:11:22:33:44:56",
                 state=NUD_REACHABLE),
        NeighMsg(family=10, ifindex=5, dst=ADDR("ff02::16"), lladdr="33:33:00:00:00:16",
                 state=NUD_NOARP),
        NeighMsg(family=2, ifindex=3, dst=ADDR("10.0.0.9"), lladdr="0a:00:00:09"),  # ipip
        NeighMsg(family=AF_BRIDGE, ifindex=5, lladdr="33:33:00:00:00:01", flags=NTF_SELF),
        NeighMsg(family=AF_BRIDGE, ifindex=5, lladdr="00:00:00:00:00:00",
                 dst=ADDR("239.1.1.1"), flags=NTF_SELF),
        NeighMsg(family=AF_BRIDGE, ifindex=5, lladdr="66:00:00:00:00:77",
                 dst=ADDR("192.168.0.77"), state=NUD_REACHABLE, flags=NTF_SELF),
        NeighMsg(family=AF_BRIDGE, ifindex=2, lladdr="66:00:00:00:00:78",
                 dst=ADDR("192.168.0.78"), flags=NTF_SELF),
    ]
    for msg in theirs:
        kernel.add(msg)
    nt = table(kernel)
    result = nt.apply()
    assert (result.updated, result.deleted, result.errors) == (0, 0, ())
    assert kernel.neigh_sends == []
    assert nt.counters.entries_programmed == 0


def test_learned_fdb_entry_is_made_permanent(kernel: FakeNeighKernel) -> None:
    kernel.add(NeighMsg(family=AF_BRIDGE, ifindex=5, lladdr="66:00:00:00:00:02",
                        dst=ADDR("192.168.0.2"), state=NUD_REACHABLE, flags=NTF_SELF))
    nt = table(kernel)
    nt.set_entry(VTEP_FDB)
    assert nt.apply().updated == 1
    assert kernel.fdbs[(5, "66:00:00:00:00:02")].state & NUD_PERMANENT


def test_stale_permanent_entries_on_our_devices_are_removed(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.replace_all([VTEP_NEIGH, VTEP_FDB])
    nt.apply()
    nt.replace_all([])
    assert nt.apply().deleted == 2
    assert kernel.neighs == {} and kernel.fdbs == {}
    (deletes,) = kernel.neigh_sends[1:]
    assert [op.op for op in deletes] == ["delete", "delete"]


def test_changed_entry_is_replaced_and_deletions_go_before_updates(
        kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.replace_all([VTEP_NEIGH, VTEP_FDB])
    nt.apply()
    moved = FDBEntry(iface="vxlan.calico", mac="66:00:00:00:00:02", remote=ADDR("192.168.0.3"))
    nt.replace_all([moved])
    result = nt.apply()
    assert (result.updated, result.deleted) == (1, 1)
    assert [op.op for op in kernel.neigh_sends[1]] == ["delete", "replace"]
    assert kernel.fdbs[(5, "66:00:00:00:00:02")].dst == ADDR("192.168.0.3")


def test_entries_changed_behind_our_back_are_rewritten_on_resync(
        kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.replace_all([VTEP_NEIGH, VTEP_FDB])
    nt.apply()
    kernel.add(kernel.neighs[(5, ADDR("10.244.1.0"))]._replace(lladdr="02:00:00:00:00:01"))
    kernel.add(kernel.fdbs[(5, "66:00:00:00:00:02")]._replace(dst=ADDR("192.168.0.9")))
    nt.queue_resync()
    assert nt.apply().updated == 2
    assert kernel.neighs[(5, ADDR("10.244.1.0"))].lladdr == "66:00:00:00:00:02"
    assert kernel.fdbs[(5, "66:00:00:00:00:02")].dst == ADDR("192.168.0.2")


def test_entry_already_gone_when_deleted_counts_as_deleted(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.replace_all([VTEP_NEIGH])
    nt.apply()
    del kernel.neighs[(5, ADDR("10.244.1.0"))]  # gone behind our back, no resync since
    nt.replace_all([])
    result = nt.apply()
    assert result.ok and result.deleted == 1
    assert nt.counters.entries_programmed == 0


def test_entry_for_a_missing_device_waits_then_lands(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.set_entry(Neighbour(iface="cali7", ip=ADDR("10.244.0.7"), mac="EE:EE:EE:EE:EE:EE"))
    result = nt.apply()
    assert result.ok and result.waiting_for_iface == 1
    assert kernel.neigh_sends == []
    kernel.add_link("cali7", 17)
    nt.on_link(LinkInfo(index=17, name="cali7", up=True), deleted=False)
    assert nt.apply().updated == 1
    assert kernel.neighs[(17, ADDR("10.244.0.7"))].lladdr == "ee:ee:ee:ee:ee:ee"


def test_device_vanishing_under_a_write_waits_quietly_then_resyncs(
        kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.apply()
    kernel.del_link("cali1")  # no link event delivered yet
    nt.set_entry(Neighbour(iface="cali1", ip=ADDR("10.244.0.1"), mac="ee:ee:ee:ee:ee:ee"))
    result = nt.apply()
    assert result.ok and result.waiting_for_iface == 1 and result.updated == 0
    again = nt.apply()  # links dumped again: the entry now waits without being sent
    assert again.ok and again.waiting_for_iface == 1
    assert len(kernel.neigh_sends) == 1


def test_refused_entry_is_reported_with_device_and_address_and_retried(
        kernel: FakeNeighKernel) -> None:
    kernel.fail["10.244.1.0"] = errno.EINVAL
    nt = table(kernel)
    nt.replace_all([VTEP_NEIGH, VTEP_FDB])
    result = nt.apply()
    assert result.updated == 1 and len(result.errors) == 1
    assert "10.244.1.0" in result.errors[0] and "vxlan.calico" in result.errors[0]
    assert "EINVAL" in result.errors[0]
    assert nt.counters.errors == 1
    kernel.fail.clear()
    assert nt.apply().updated == 1
    assert len(kernel.neigh_sends[-1]) == 1  # only the refused one again


def test_refused_deletion_is_reported_and_retried(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.replace_all([VTEP_NEIGH])
    nt.apply()
    kernel.fail["10.244.1.0"] = errno.EPERM
    nt.replace_all([])
    result = nt.apply()
    assert result.deleted == 0 and "deleting" in result.errors[0]
    kernel.fail.clear()
    assert nt.apply().deleted == 1


def test_lost_replies_mean_a_resync_before_the_retry(kernel: FakeNeighKernel) -> None:
    nt = table(kernel)
    nt.replace_all([VTEP_NEIGH, VTEP_FDB])
    kernel.fail_neigh_sends = 1
    result = nt.apply()
    assert not result.ok and "2 neighbour operations" in result.errors[0]
    dumps = len(kernel.neigh_dumps)
    assert nt.apply().updated == 2
    assert len(kernel.neigh_dumps) > dumps


def test_entries_only_on_devices_we_own() -> None:
    nt = table(FakeNeighKernel({}))
    with pytest.raises(ValidationError, match="eth0"):
        nt.set_entry(Neighbour(iface="eth0", ip=ADDR("10.0.0.1"), mac="00:11:22:33:44:55"))
    with pytest.raises(ValidationError, match="mac"):
        Neighbour(iface="cali1", ip=ADDR("10.0.0.1"), mac="zz")
