"""RouteTable against a real kernel, in network namespaces this test creates and removes."""

from __future__ import annotations

import ipaddress
import os
import queue
import subprocess
import time
from collections.abc import Iterator

import pytest

from agent.kernel.events import KernelEvent, KernelEventListener, LinkEvent, RouteEvent
from agent.kernel.netlink import RouteSocket
from agent.kernel.netns import in_netns
from agent.kernel.route_table import Route, RouteTable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NET = ipaddress.ip_network
ADDR = ipaddress.ip_address


def ip(ns: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "-n", ns, *args], input=stdin, text=True, check=True,
                          capture_output=True).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"wt-rt-{os.urandom(3).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ip(name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def add_veths(ns: str, count: int, prefix: str = "cali") -> None:
    lines = [f"link add {prefix}{i:04d} type veth peer name p{prefix}{i:04d}" for i in range(count)]
    lines += [f"link set {prefix}{i:04d} up" for i in range(count)]
    ip(ns, "-batch", "-", stdin="\n".join(lines) + "\n")


def open_socket(ns: str) -> RouteSocket:
    with in_netns(ns):
        return RouteSocket()


def workload_routes(count: int, ifaces: int) -> list[Route]:
    return [Route.workload(NET(f"10.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32"),
                           f"cali{i % ifaces:04d}") for i in range(count)]


def test_ten_thousand_workload_routes_land_and_a_second_table_changes_nothing(
        netns: str) -> None:
    add_veths(netns, 100)
    wanted = workload_routes(10_000, 100)
    sock = open_socket(netns)
    try:
        rt = RouteTable(sock)
        rt.replace_all(wanted)
        result = rt.apply()
        assert result.ok and result.updated == 10_000
        shown = ip(netns, "route", "show", "proto", "80", "dev", "cali0007").splitlines()
        assert len(shown) == 100
        assert "10.16.0.7 scope link" in shown[0]
        assert len(ip(netns, "route", "show", "proto", "80").splitlines()) == 10_000

        second = RouteTable(sock)
        second.replace_all(wanted)
        again = second.apply()
        assert (again.updated, again.deleted, again.failures) == (0, 0, ())
        assert second.counters.routes_programmed == 10_000
    finally:
        sock.close()


def test_route_deleted_by_hand_is_repaired_on_resync(netns: str) -> None:
    add_veths(netns, 2)
    sock = open_socket(netns)
    try:
        rt = RouteTable(sock)
        rt.replace_all(workload_routes(20, 2))
        rt.apply()
        ip(netns, "route", "del", "10.16.0.5/32")
        rt.queue_resync()
        assert rt.apply().updated == 1
        assert "10.16.0.5 dev cali0001" in ip(netns, "route", "show", "10.16.0.5/32")
        assert rt.counters.drift_repaired == 1
    finally:
        sock.close()


def test_foreign_routes_stay_even_where_they_overlap_a_desired_one(netns: str) -> None:
    add_veths(netns, 1)
    add_veths(netns, 1, prefix="eth")
    ip(netns, "addr", "add", "192.168.50.1/24", "dev", "eth0000")
    ip(netns, "route", "add", "10.99.0.0/24", "via", "192.168.50.9", "proto", "static")
    ip(netns, "route", "add", "10.98.0.0/26", "via", "192.168.50.8", "proto", "boot")
    before = ip(netns, "route", "show")
    sock = open_socket(netns)
    try:
        rt = RouteTable(sock)
        rt.set_route(Route.blackhole(NET("10.98.0.0/26")))  # overlaps the operator's route
        rt.set_route(Route.workload(NET("10.16.0.1/32"), "cali0000"))
        result = rt.apply()
        assert result.conflicts == (NET("10.98.0.0/26"),)
        assert result.updated == 1 and result.deleted == 0
        after = ip(netns, "route", "show")
        assert set(before.splitlines()) <= set(after.splitlines())
        assert "blackhole" not in after
    finally:
        sock.close()


def test_blackhole_and_onlink_gateway_routes_for_both_ip_versions(netns: str) -> None:
    add_veths(netns, 1, prefix="eth")
    wanted4 = [Route.blackhole(NET("10.20.0.0/26")),
               Route.via(NET("10.30.0.0/26"), ADDR("172.16.0.2"), iface="eth0000", onlink=True)]
    wanted6 = [Route.blackhole(NET("fd00:20::/122")),
               Route.via(NET("fd00:30::/122"), ADDR("fd00:99::2"), iface="eth0000", onlink=True)]
    sock = open_socket(netns)
    try:
        v4, v6 = RouteTable(sock), RouteTable(sock, ip_version=6)
        v4.replace_all(wanted4)
        v6.replace_all(wanted6)
        assert v4.apply().updated == 2 and v6.apply().updated == 2
        shown = ip(netns, "route", "show", "proto", "80")
        assert "blackhole 10.20.0.0/26" in shown
        assert "10.30.0.0/26 via 172.16.0.2 dev eth0000 onlink" in shown
        shown6 = ip(netns, "-6", "route", "show", "proto", "80")
        assert "blackhole fd00:20::/122" in shown6
        assert "fd00:30::/122 via fd00:99::2 dev eth0000" in shown6 and "onlink" in shown6
        # What the kernel reports back (metric 1024, lo for v6 blackholes) compares equal.
        for version, wanted in ((4, wanted4), (6, wanted6)):
            fresh = RouteTable(sock, ip_version=version)  # type: ignore[arg-type]
            fresh.replace_all(wanted)
            result = fresh.apply()
            assert (result.updated, result.deleted) == (0, 0), version
    finally:
        sock.close()


def test_bad_route_in_a_batch_is_reported_while_the_good_ones_land_then_retried(
        netns: str) -> None:
    add_veths(netns, 2)
    add_veths(netns, 1, prefix="eth")
    wanted = workload_routes(600, 2)  # spans two batches of 500
    bad = Route.via(NET("10.40.0.0/26"), ADDR("192.168.77.1"), iface="eth0000")  # not onlink
    sock = open_socket(netns)
    try:
        rt = RouteTable(sock)
        rt.replace_all([*wanted[:250], bad, *wanted[250:]])
        result = rt.apply()
        assert result.updated == 600
        assert [f.op.route.dst for f in result.failures] == [NET("10.40.0.0/26")]
        assert "10.40.0.0/26" in str(result.failures[0])
        assert len(ip(netns, "route", "show", "proto", "80").splitlines()) == 600
        assert rt.apply().failures  # still refused, still retried
        ip(netns, "addr", "add", "192.168.77.2/24", "dev", "eth0000")
        ip(netns, "link", "set", "eth0000", "up")
        retry = rt.apply()
        assert retry.ok and retry.updated == 1
        assert "10.40.0.0/26 via 192.168.77.1" in ip(netns, "route", "show", "10.40.0.0/26")
    finally:
        sock.close()


def drain(events: queue.Queue[KernelEvent], rt: RouteTable, *, settle: float = 0.3) -> int:
    """Hand queued events to the table the way the main loop does; wait for a quiet spell."""
    handled = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=settle)
        except queue.Empty:
            return handled
        handled += 1
        if isinstance(event, RouteEvent):
            rt.on_route(event.route, deleted=event.deleted)
        elif isinstance(event, LinkEvent):
            rt.on_link(event.link, deleted=event.deleted)
        else:
            rt.queue_resync()
    return handled


def test_netlink_events_repair_a_deleted_route_and_resolve_a_new_interface(netns: str) -> None:
    add_veths(netns, 1)
    events: queue.Queue[KernelEvent] = queue.Queue()
    with in_netns(netns):
        listener = KernelEventListener(events)
    listener.start()
    sock = open_socket(netns)
    try:
        rt = RouteTable(sock)
        rt.set_route(Route.workload(NET("10.16.0.1/32"), "cali0000"))
        rt.set_route(Route.workload(NET("10.16.0.2/32"), "cali0001"))  # no such device yet
        assert rt.apply().waiting_for_iface == 1
        drain(events, rt)
        ip(netns, "route", "del", "10.16.0.1/32")
        ip(netns, "link", "add", "cali0001", "type", "veth", "peer", "name", "pcali0001")
        ip(netns, "link", "set", "cali0001", "up")
        assert drain(events, rt) > 0
        dumps = rt.counters.resyncs
        result = rt.apply()
        assert result.updated == 2 and result.waiting_for_iface == 0
        assert rt.counters.resyncs == dumps  # the events were enough, no dump needed
        assert "cali0000" in ip(netns, "route", "show", "10.16.0.1/32")
        assert "cali0001" in ip(netns, "route", "show", "10.16.0.2/32")
        drain(events, rt)  # the echoes of our own writes change nothing
        assert rt.apply().updated == 0
    finally:
        listener.stop()
        sock.close()


def test_the_listener_drops_the_echoes_of_our_own_writes_but_not_other_changes(
        netns: str) -> None:
    add_veths(netns, 1)
    events: queue.Queue[KernelEvent] = queue.Queue()
    sock = open_socket(netns)
    with in_netns(netns):
        listener = KernelEventListener(events, own_ports=frozenset({sock.portid}))
    listener.start()
    try:
        rt = RouteTable(sock)
        for i in range(1, 51):
            rt.set_route(Route.workload(NET(f"10.16.0.{i}/32"), "cali0000"))
        assert rt.apply().updated == 50
        ip(netns, "route", "del", "10.16.0.7/32")  # somebody else's change
        deadline = time.monotonic() + 10
        seen: list[RouteEvent] = []
        while not seen and time.monotonic() < deadline:
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(event, RouteEvent):
                seen.append(event)
        time.sleep(0.2)  # anything else in flight arrives too
        while not events.empty():
            event = events.get_nowait()
            if isinstance(event, RouteEvent):
                seen.append(event)
        assert [(str(e.route.dst), e.deleted) for e in seen] == [("10.16.0.7/32", True)]
        rt.on_route(seen[0].route, deleted=True)
        assert rt.apply().updated == 1  # and the table repairs it
    finally:
        listener.stop()
        sock.close()


def test_the_socket_filter_keeps_our_own_route_echoes_out_of_the_kernel_queue(
        netns: str) -> None:
    """The filter itself (not the Python check behind it): a plain socket with it attached
    receives somebody else's route but none of the 50 we wrote."""
    import socket as socket_mod

    from agent.kernel.events import RTMGRP_IPV4_ROUTE, _drop_from_ports
    from agent.kernel.netlink import NETLINK_ROUTE, RTM_NEWROUTE, decode_route, iter_messages

    add_veths(netns, 1)
    sock = open_socket(netns)
    with in_netns(netns):
        raw = socket_mod.socket(socket_mod.AF_NETLINK, socket_mod.SOCK_RAW, NETLINK_ROUTE)
    try:
        raw.bind((0, RTMGRP_IPV4_ROUTE))
        _drop_from_ports(raw, frozenset({sock.portid, 4242}))
        rt = RouteTable(sock)
        for i in range(1, 51):
            rt.set_route(Route.workload(NET(f"10.16.0.{i}/32"), "cali0000"))
        assert rt.apply().updated == 50
        ip(netns, "route", "add", "10.17.0.1/32", "dev", "cali0000")
        raw.settimeout(5)
        buf = bytearray(1 << 16)
        n = raw.recv_into(buf)
        got = [str(route.dst) for msg in iter_messages(buf, n) if msg.type == RTM_NEWROUTE
               if (route := decode_route(buf, msg.start, msg.end)) is not None]
        assert got == ["10.17.0.1/32"]
    finally:
        raw.close()
        sock.close()
