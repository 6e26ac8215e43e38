"""Routes manager: workload host routes, blackholes for our blocks, routes to other blocks.

Felix's manager pattern: `on_desired` only records what is wanted and marks the manager dirty;
`complete_deferred_work` turns it into entries of the shared route tables (one per IP version).
The tables own the diff, the batching and the resync.
"""

from __future__ import annotations

from agent.calc.desired import BlockRoute, DesiredDataplane, WorkloadRoute
from agent.kernel.route_table import Route, RouteTable
from wren.log import get_logger

__all__ = ["RouteManager", "block_route", "workload_route"]

_log = get_logger(__name__)


def workload_route(w: WorkloadRoute) -> Route:
    return Route.workload(w.dst, w.iface)


def block_route(b: BlockRoute) -> Route | None:
    """The kernel route for a block, or None when it cannot be expressed yet (no device)."""
    if b.kind == "blackhole":
        return Route.blackhole(b.dst)
    if b.gateway is None:
        return None
    if b.kind == "direct" and b.device is None:
        # No parent interface known: let the kernel resolve the gateway itself.
        return Route.via(b.dst, b.gateway)
    return Route.via(b.dst, b.gateway, iface=b.device, onlink=True)


class RouteManager:
    def __init__(self, tables: dict[int, RouteTable]) -> None:
        self._tables = tables  # by IP version
        self._wanted: list[Route] | None = None

    def on_desired(self, desired: DesiredDataplane) -> None:
        routes = [workload_route(w) for w in desired.workload_routes.values()]
        for b in desired.block_routes.values():
            route = block_route(b)
            if route is None:
                _log.warning("block route without a usable next hop", dst=str(b.dst),
                             kind=b.kind)
                continue
            routes.append(route)
        self._wanted = routes

    def complete_deferred_work(self) -> None:
        if self._wanted is None:
            return
        by_version: dict[int, list[Route]] = {v: [] for v in self._tables}
        for route in self._wanted:
            if route.dst.version in by_version:
                by_version[route.dst.version].append(route)
        for version, table in self._tables.items():
            table.replace_all(by_version[version])
        self._wanted = None
