"""NeighTable against a real kernel: ARP/NDP entries on pod veths and VXLAN VTEP neighbour +
FDB entries on `vxlan.calico`, in a network namespace this test creates and removes."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from agent.kernel.neigh_table import Entry, FDBEntry, Neighbour, NeighTable
from agent.kernel.netlink import LinkInfo, NeighFailure, NeighMsg, NeighOp, RouteSocket
from agent.kernel.netns import in_netns

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ADDR = ipaddress.ip_address
VXLAN = "vxlan.calico"
VETHS = 20


def ip(ns: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "-n", ns, *args], input=stdin, text=True, check=True,
                          capture_output=True).stdout


def shown_json(*cmd: str) -> list[dict[str, Any]]:
    out = subprocess.run(list(cmd), text=True, check=True, capture_output=True).stdout
    return json.loads(out) if out.strip() else []


@pytest.fixture
def netns() -> Iterator[str]:
    """A node: pod veths cali0000.., eth0 10.0.1.11/24, and vxlan.calico over it."""
    name = f"wt-nb-{os.urandom(3).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        lines = [f"link add cali{i:04d} type veth peer name pcali{i:04d}" for i in range(VETHS)]
        lines += [f"link set cali{i:04d} up" for i in range(VETHS)]
        lines += ["link set lo up", "link add eth0 type veth peer name peth0",
                  "link set peth0 up", "addr add 10.0.1.11/24 dev eth0", "link set eth0 up",
                  f"link add {VXLAN} type vxlan id 4096 dstport 4789 local 10.0.1.11 dev eth0 "
                  "nolearning", f"link set {VXLAN} up"]
        ip(name, "-batch", "-", stdin="\n".join(lines) + "\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


class CountingSocket:
    """The real socket, recording how many operations each send carried."""

    def __init__(self, sock: RouteSocket) -> None:
        self.sock = sock
        self.sends: list[int] = []

    def send_neighs(self, ops: Sequence[NeighOp]) -> list[NeighFailure]:
        self.sends.append(len(ops))
        return self.sock.send_neighs(ops)

    def dump_neighs(self, *, family: int, ifindex: int = 0) -> list[NeighMsg]:
        return self.sock.dump_neighs(family=family, ifindex=ifindex)

    def dump_links(self) -> list[LinkInfo]:
        return self.sock.dump_links()


@pytest.fixture
def sock(netns: str) -> Iterator[CountingSocket]:
    with in_netns(netns):
        raw = RouteSocket()
    try:
        yield CountingSocket(raw)
    finally:
        raw.close()


def vtep_entries(count: int) -> list[Entry]:
    """What VXLAN mode writes for `count` remote nodes: VTEP IP → MAC, MAC → node IP."""
    out: list[Entry] = []
    for i in range(count):
        mac = f"66:00:00:00:{i // 256:02x}:{i % 256:02x}"
        out.append(Neighbour(iface=VXLAN, ip=ADDR(f"10.201.{i // 256}.{i % 256}"), mac=mac))
        out.append(FDBEntry(iface=VXLAN, mac=mac, remote=ADDR(f"10.1.{i // 250}.{i % 250 + 2}")))
    return out


def pod_entries(count: int) -> list[Entry]:
    """`count` IPv4 pods spread over the veths, and one IPv6 pod."""
    out: list[Entry] = [Neighbour(iface=f"cali{i % VETHS:04d}",
                                  ip=ADDR(f"10.16.{i // 256}.{i % 256}"),
                                  mac="ee:ee:ee:ee:ee:ee") for i in range(count)]
    out.append(Neighbour(iface="cali0000", ip=ADDR("fd00:16::1"), mac="ee:ee:ee:ee:ee:ee"))
    return out


def kernel_neighbours(ns: str) -> set[tuple[str, str, str]]:
    """(device, ip, mac) of every permanent neighbour entry."""
    return {(e["dev"], e["dst"], e["lladdr"])
            for e in shown_json("ip", "-j", "-n", ns, "neigh", "show", "nud", "permanent")}


def kernel_fdb(ns: str, dev: str = VXLAN) -> set[tuple[str, str, str]]:
    """(mac, remote, state) of every FDB entry of `dev` that sends somewhere."""
    return {(e["mac"], e["dst"], e.get("state", ""))
            for e in shown_json("bridge", "-j", "-n", ns, "fdb", "show", "dev", dev)
            if "dst" in e}


def as_shown(entries: Sequence[Entry]) -> tuple[set[tuple[str, str, str]],
                                                set[tuple[str, str, str]]]:
    neigh = {(e.iface, str(e.ip), e.mac) for e in entries if isinstance(e, Neighbour)}
    fdb = {(e.mac, str(e.remote), "permanent") for e in entries if isinstance(e, FDBEntry)}
    return neigh, fdb


def test_a_thousand_vteps_and_pod_entries_land_then_resyncs_write_nothing(
        netns: str, sock: CountingSocket) -> None:
    wanted = vtep_entries(1000) + pod_entries(200)
    table = NeighTable(None, sock)
    table.replace_all(wanted)
    result = table.apply()
    assert result.ok and result.updated == len(wanted) == 2201
    assert sock.sends == [2201]  # one send: batched on the socket, not one request each
    neigh, fdb = as_shown(wanted)
    assert kernel_neighbours(netns) == neigh
    assert kernel_fdb(netns) == fdb
    assert table.counters.entries_programmed == 2201

    # A restarted agent: a fresh table over this kernel writes nothing.
    fresh = NeighTable(None, sock)
    fresh.replace_all(wanted)
    again = fresh.apply()
    assert (again.updated, again.deleted, again.errors) == (0, 0, ())
    assert fresh.counters.entries_programmed == 2201
    # The periodic resync of the running table writes nothing either.
    table.queue_resync()
    resync = table.apply()
    assert (resync.updated, resync.deleted, resync.errors) == (0, 0, ())
    assert sock.sends == [2201]

    # Nothing wanted any more: ours go, the devices' own FDB entries stay.
    own_before = shown_json("bridge", "-j", "-n", netns, "fdb", "show", "dev", VXLAN)
    table.replace_all([])
    gone = table.apply()
    assert gone.ok and gone.deleted == 2201
    assert kernel_neighbours(netns) == set() and kernel_fdb(netns) == set()
    own_after = shown_json("bridge", "-j", "-n", netns, "fdb", "show", "dev", VXLAN)
    assert own_after == [e for e in own_before if "dst" not in e]


def test_drift_is_repaired_and_foreign_entries_are_left_alone(
        netns: str, sock: CountingSocket) -> None:
    wanted = vtep_entries(20) + pod_entries(10)
    table = NeighTable(None, sock)
    table.replace_all(wanted)
    assert table.apply().updated == len(wanted)
    ip(netns, "neigh", "del", "10.201.0.3", "dev", VXLAN)
    ip(netns, "neigh", "replace", "10.16.0.4", "lladdr", "02:00:00:00:00:04", "dev", "cali0004",
       "nud", "permanent")
    subprocess.run(["bridge", "-n", netns, "fdb", "del", "66:00:00:00:00:05", "dev", VXLAN,
                    "dst", "10.1.0.7", "self"], check=True)
    ip(netns, "neigh", "add", "10.201.9.9", "lladdr", "66:00:00:00:09:09", "dev", VXLAN,
       "nud", "permanent")  # stale, on our device
    subprocess.run(["bridge", "-n", netns, "fdb", "append", "66:00:00:00:09:09", "dev", VXLAN,
                    "dst", "10.1.9.9", "self", "permanent"], check=True)
    ip(netns, "neigh", "add", "10.0.1.99", "lladdr", "02:00:00:00:00:99", "dev", "eth0",
       "nud", "permanent")  # the operator's, on a device we do not own
    table.queue_resync()
    result = table.apply()
    assert result.ok and (result.updated, result.deleted) == (3, 2)
    neigh, fdb = as_shown(wanted)
    assert kernel_neighbours(netns) == neigh | {("eth0", "10.0.1.99", "02:00:00:00:00:99")}
    assert kernel_fdb(netns) == fdb

    # Deleting what someone already removed (no resync in between) is not an error.
    ip(netns, "neigh", "del", "10.201.0.1", "dev", VXLAN)
    subprocess.run(["bridge", "-n", netns, "fdb", "del", "66:00:00:00:00:01", "dev", VXLAN,
                    "dst", "10.1.0.3", "self"], check=True)
    table.replace_all([e for e in wanted if e.mac != "66:00:00:00:00:01"])
    gone = table.apply()
    assert gone.ok and gone.deleted == 2


def test_entry_the_kernel_refuses_is_reported_while_the_rest_land(
        netns: str, sock: CountingSocket) -> None:
    good = vtep_entries(10)
    bad = FDBEntry(iface=VXLAN, mac="66:00:00:00:aa:aa", remote=ADDR("fd00::aa"))  # v6 on v4
    table = NeighTable(None, sock)
    table.replace_all([*good[:7], bad, *good[7:]])
    result = table.apply()
    assert result.updated == len(good)
    (error,) = result.errors
    assert VXLAN in error and "66:00:00:00:aa:aa" in error and "fd00::aa" in error
    assert "EAFNOSUPPORT" in error
    assert kernel_fdb(netns) == as_shown(good)[1]
    assert table.apply().errors == result.errors  # retried, refused again
    table.replace_all(good)
    assert table.apply().ok
    assert sock.sends[-1:] == [1]


def test_entry_waits_for_its_pod_veth(netns: str, sock: CountingSocket) -> None:
    table = NeighTable(None, sock)
    entry = Neighbour(iface="cali9999", ip=ADDR("10.16.99.99"), mac="ee:ee:ee:ee:ee:ee")
    table.set_entry(entry)
    result = table.apply()
    assert result.ok and result.waiting_for_iface == 1 and sock.sends == []
    ip(netns, "link", "add", "cali9999", "type", "veth", "peer", "name", "pcali9999")
    index = json.loads(ip(netns, "-j", "link", "show", "cali9999"))[0]["ifindex"]
    table.on_link(LinkInfo(index=index, name="cali9999", up=False), deleted=False)
    assert table.apply().updated == 1
    assert kernel_neighbours(netns) == {("cali9999", "10.16.99.99", "ee:ee:ee:ee:ee:ee")}
