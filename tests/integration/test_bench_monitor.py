"""The benchmarks' route monitor against a real kernel, in a namespace this test creates and
removes: it is the instrument every learn and sync time comes from."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from bench.common import RouteMonitor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def ip(ns: str, *args: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", "-n", ns, *args], input=stdin, text=True, check=True,
                   capture_output=True)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"wt-mon-{os.urandom(3).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ip(name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        for dev in ("lo", "eth0", "eth0p"):
            ip(name, "link", "set", dev, "up")
        ip(name, "addr", "add", "10.0.1.11/24", "dev", "eth0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def prefixes(count: int) -> list[str]:
    return [f"{ipaddress.IPv4Address(0x0A800000 + i * 64)}/26" for i in range(count)]


def add_routes(ns: str, nets: list[str], proto: int) -> None:
    ip(ns, "-batch", "-", stdin="".join(
        f"route add {net} via 10.0.1.1 dev eth0 proto {proto}\n" for net in nets))


def test_the_monitor_times_every_route_of_its_protocol_and_no_other(netns: str) -> None:
    monitor = RouteMonitor(netns, 80, clock=time.time)
    try:
        started = time.time()
        ours = prefixes(2000)
        add_routes(netns, ours[:1000], 80)
        add_routes(netns, ["192.168.7.0/24"], 81)  # another protocol: not counted
        add_routes(netns, ours[1000:], 80)
        deadline = time.monotonic() + 10
        while not monitor.at_least(2000) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert monitor.at_least(2000)
        assert not monitor.at_least(2001)
        assert monitor.count == 2000
        assert set(monitor.seen) == set(ours)
        first, last = monitor.first, monitor.last
        assert first is not None and last is not None
        assert started <= first <= monitor.seen[ours[999]] <= monitor.seen[ours[1000]] <= last
        assert last <= time.time()
    finally:
        monitor.close()


def test_waiting_for_one_route_returns_when_it_appeared(netns: str) -> None:
    monitor = RouteMonitor(netns, 80, clock=time.time)
    try:
        assert monitor.wait_for("10.128.0.0/26", timeout=0.05) is None
        added = time.time()
        add_routes(netns, ["10.128.0.0/26"], 80)
        seen = monitor.wait_for("10.128.0.0/26", timeout=5)
        assert seen is not None and added <= seen <= time.time()
    finally:
        monitor.close()
