"""Builds the agent from its configuration: one small factory per part, nothing else.

Kept apart from the loop (agent.py) and from main (daemon.py) so that tests build an agent on
fakes, and so no constructor grows into Felix's thousand-line `NewIntDataplaneDriver`.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.agent import Agent
from agent.calc.desired import DesiredDataplane
from agent.config import AgentConfig
from agent.dataplane.driver import DataplaneDriver, NetfilterStage
from agent.dataplane.nat_outgoing import make_nat_outgoing
from agent.dataplane.neighbours import NeighbourManager
from agent.dataplane.routes import RouteManager
from agent.dataplane.sysctls import SysctlManager
from agent.dataplane.tunnels import TunnelManager
from agent.health import HealthAggregator, HealthServer
from agent.host import HostReader
from agent.kernel.events import KernelEventListener
from agent.kernel.link_table import LinkTable
from agent.kernel.neigh_table import NeighTable
from agent.kernel.netlink import RouteSocket
from agent.kernel.route_table import RouteTable
from agent.kernel.sysctl import SysctlTable
from agent.metrics import AgentMetrics
from agent.startup.autodetect import read_host_interfaces, route_source
from agent.startup.mtu import write_mtu_file
from agent.startup.node_upkeep import NodeUpkeep, resolve_address, resolve_address6
from wren.client import Client
from wren.datastore.backend import Backend
from wren.ipam.allocator import Ipam
from wren.model import Node

__all__ = ["Wired", "build_agent"]


@dataclass
class Wired:
    agent: Agent
    driver: DataplaneDriver
    health_server: HealthServer
    upkeep: NodeUpkeep
    listener: KernelEventListener
    closers: list[Callable[[], None]]

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


def build_dataplane(cfg: AgentConfig, metrics: AgentMetrics, *, ipr: Any, netlink: RouteSocket,
                    netfilter: NetfilterStage | None) -> DataplaneDriver:
    routes = {
        4: RouteTable(netlink, ip_version=4, resync_interval=cfg.route_refresh_interval),
        6: RouteTable(netlink, ip_version=6, resync_interval=cfg.route_refresh_interval),
    }
    links = LinkTable(ipr, netlink)
    neighbours = NeighTable(ipr, netlink)
    sysctls = SysctlTable()
    return DataplaneDriver(
        managers=[SysctlManager(sysctls), TunnelManager(links), NeighbourManager(neighbours),
                  RouteManager(routes)],
        sysctls=sysctls, links=links, neighbours=neighbours, routes=routes, metrics=metrics,
        netfilter=netfilter,
    )


def _internal_ips(node: Node | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    if node is None:
        return []
    return [ipaddress.ip_interface(a.address).ip for a in node.spec.addresses
            if a.type == "InternalIP"]


def build_upkeep(cfg: AgentConfig, backend: Backend, health: HealthAggregator) -> NodeUpkeep:
    def detect(node: Node | None) -> ipaddress.IPv4Interface | None:
        internal = [a for a in _internal_ips(node) if isinstance(a, ipaddress.IPv4Address)]
        return resolve_address(cfg.ip, cfg.ip_autodetection_method, read_host_interfaces(),
                               route_lookup=route_source,
                               internal_ip=internal[-1] if internal else None)

    def detect6(node: Node | None) -> ipaddress.IPv6Interface | None:
        assert cfg.ip6 is not None
        internal = [a for a in _internal_ips(node) if isinstance(a, ipaddress.IPv6Address)]
        return resolve_address6(cfg.ip6, cfg.ip6_autodetection_method, read_host_interfaces(6),
                                route_lookup=route_source,
                                internal_ip=internal[-1] if internal else None)

    def on_error(error: str) -> None:
        health.report("node", ready=False, detail=error)

    return NodeUpkeep(node_name=cfg.node_name, client=Client(backend), ipam=Ipam(backend),
                      detect_address=detect, env=cfg.env, interval=cfg.autodetect_interval,
                      detect_address6=detect6 if cfg.ip6 is not None else None,
                      on_error=on_error)


def default_netfilter(cfg: AgentConfig) -> NetfilterStage:
    return make_nat_outgoing(cfg.iptables_backend)


def build_agent(cfg: AgentConfig, backend: Backend, *,
                netfilter_factory: Callable[[AgentConfig], NetfilterStage | None] | None = (
                    default_netfilter),
                bgp_factory: Callable[[AgentConfig, Agent], Any] | None = None) -> Wired:
    from pyroute2 import IPRoute

    closers: list[Callable[[], None]] = [backend.close]
    health = HealthAggregator()
    metrics = AgentMetrics.create()
    ipr = IPRoute()
    closers.append(ipr.close)
    netlink = RouteSocket()
    closers.append(netlink.close)
    netfilter = netfilter_factory(cfg) if netfilter_factory else None
    driver = build_dataplane(cfg, metrics, ipr=ipr, netlink=netlink, netfilter=netfilter)
    upkeep = build_upkeep(cfg, backend, health)
    mtu_file = cfg.state_dir / "mtu"

    poked_for: list[object] = [None]

    def on_desired(desired: DesiredDataplane) -> None:
        write_mtu_file(mtu_file, desired.mtu)
        # Pools may have changed: tunnel addresses may be needed or not. Only then: an upkeep
        # run reads the datastore and the host's interfaces, and poking it on every endpoint
        # event kept a second thread busy beside the loop. What the pools imply shows in these
        # fields (a pool using VXLAN without our tunnel address yet is one of the warnings).
        key = (desired.nat_pools, desired.vxlan, desired.ipip, desired.warnings)
        if key != poked_for[0]:
            poked_for[0] = key
            upkeep.poke()

    agent = Agent(node_name=cfg.node_name, backend=backend, dataplane=driver,
                  host_facts=HostReader(ipr, netlink.dump_links), health=health, metrics=metrics,
                  on_desired=on_desired, route_refresh_interval=cfg.route_refresh_interval,
                  veth_mtu=cfg.mtu)
    if bgp_factory is not None:
        agent_bgp = bgp_factory(cfg, agent)
        agent._bgp = agent_bgp  # the link needs the agent's queue; the agent needs the link
        stop_bgp = getattr(agent_bgp, "stop", None)
        if callable(stop_bgp):
            closers.append(stop_bgp)
    listener = KernelEventListener(agent.events,  # type: ignore[arg-type]
                                   own_ports=frozenset({netlink.portid}))
    closers.append(listener.stop)
    health_server = HealthServer(health, host=cfg.health_host, port=cfg.health_port)
    closers.append(health_server.stop)
    if cfg.metrics_enabled:
        metrics.serve(host=cfg.health_host, port=cfg.metrics_port)
    return Wired(agent=agent, driver=driver, health_server=health_server, upkeep=upkeep,
                 listener=listener, closers=closers)


def start_background(wired: Wired, stop: threading.Event) -> None:
    wired.health_server.start()
    wired.listener.start()
    threading.Thread(target=wired.upkeep.run_forever, args=(stop,), name="node-upkeep",
                     daemon=True).start()
