"""Workload routes: one `/32` (or `/128`) per address of each of this node's endpoints.

Two ways to the same answer:

* `workload_routes(endpoints)`: from scratch, endpoints in key order; an address claimed twice
  goes to the first endpoint (by key) and the others get a warning. What `compute_desired` uses.
* `WorkloadIndex`: the same routes kept up to date one endpoint at a time. `update(endpoints)`
  finds the endpoints that changed by identity (the cluster state replaces a resource object
  when it changes, never mutates one), so a new pod costs one endpoint's work instead of all
  10,000 (at 10k endpoints the full rebuild was ~0.25 s of every event). Unchanged endpoints
  keep their `WorkloadRoute` objects, which lets the managers find what changed by identity
  too. The unit tests check it against `workload_routes` after random sequences of changes.

    endpoint key ──► candidates (routes in ipNetworks order) ──► claims per address, sorted
                                                                  │ first claim wins
                                                                  ▼
                                                     routes: address → WorkloadRoute
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from agent.calc.desired import IPNetwork, WorkloadRoute
from wren.model import WorkloadEndpoint

__all__ = ["WorkloadIndex", "endpoint_routes", "workload_routes"]

_Claim = tuple[str, int]  # endpoint key, position in its ipNetworks


def endpoint_routes(key: str, wep: WorkloadEndpoint) -> tuple[WorkloadRoute, ...]:
    """One route per address of the endpoint, in the order of its ipNetworks."""
    spec = wep.spec
    mac = spec.mac or None
    out: list[WorkloadRoute] = []
    for net in spec.ip_networks:
        host = net if net.prefixlen == net.max_prefixlen else ipaddress.ip_network(
            f"{net.network_address}/{net.max_prefixlen}")
        out.append(WorkloadRoute(dst=host, iface=spec.interface_name, mac=mac, endpoint=key))
    return tuple(out)


def _duplicate(key: str, host: IPNetwork, winner: str) -> str:
    return f"WorkloadEndpoint {key}: address {host} also used by {winner}; keeping the first"


def workload_routes(
    endpoints: Mapping[str, WorkloadEndpoint],
) -> tuple[dict[IPNetwork, WorkloadRoute], list[str]]:
    """Every endpoint's routes, from scratch: (routes by address, warnings)."""
    routes: dict[IPNetwork, WorkloadRoute] = {}
    warnings: list[str] = []
    for key, wep in sorted(endpoints.items()):
        for route in endpoint_routes(key, wep):
            if route.dst in routes:
                warnings.append(_duplicate(key, route.dst, routes[route.dst].endpoint))
                continue
            routes[route.dst] = route
    return routes, warnings


class WorkloadIndex:
    """`workload_routes`, maintained incrementally. Pure: no I/O, no clock."""

    def __init__(self) -> None:
        self._seen: dict[str, WorkloadEndpoint] = {}
        self._candidates: dict[str, tuple[WorkloadRoute, ...]] = {}
        self._claims: dict[IPNetwork, list[_Claim]] = {}
        self._routes: dict[IPNetwork, WorkloadRoute] = {}
        self._contested: set[IPNetwork] = set()  # addresses with more than one claim
        self._changed: set[IPNetwork] = set()  # addresses touched since take_changes()

    @property
    def routes(self) -> Mapping[IPNetwork, WorkloadRoute]:
        """The current routes (a live view: copy it to keep it)."""
        return self._routes

    def update(self, endpoints: Mapping[str, WorkloadEndpoint]) -> None:
        """Bring the routes in line with `endpoints`, touching only the endpoints that changed."""
        seen = self._seen
        present = 0
        changed: list[tuple[str, WorkloadEndpoint]] = []
        for key, wep in endpoints.items():
            old = seen.get(key)
            if old is not None:
                present += 1
            if old is not wep:
                changed.append((key, wep))
        if present < len(seen):
            for key in [k for k in seen if k not in endpoints]:
                self._set(key, None)
        for key, wep in changed:
            self._set(key, wep)

    def take_changes(self) -> set[IPNetwork]:
        """The addresses whose route may have changed since the last call (a superset)."""
        changed, self._changed = self._changed, set()
        return changed

    def warnings(self) -> list[str]:
        """The duplicate-address warnings, in the order `workload_routes` gives them."""
        losers: list[tuple[str, int, IPNetwork, str]] = []
        for host in self._contested:
            claims = self._claims[host]
            winner = claims[0][0]
            losers += [(key, pos, host, winner) for key, pos in claims[1:]]
        return [_duplicate(key, host, winner) for key, _, host, winner in sorted(
            losers, key=lambda x: (x[0], x[1]))]

    def _set(self, key: str, wep: WorkloadEndpoint | None) -> None:
        old = self._candidates.get(key, ())
        new = endpoint_routes(key, wep) if wep is not None else ()
        if new == old:
            new = old  # keep the objects: the managers compare by identity
        if wep is None:
            self._seen.pop(key, None)
            self._candidates.pop(key, None)
        else:
            self._seen[key] = wep
            self._candidates[key] = new
        if new is old:
            return
        touched: set[IPNetwork] = set()
        for pos, route in enumerate(old):
            claims = self._claims[route.dst]
            claims.remove((key, pos))
            touched.add(route.dst)
        for pos, route in enumerate(new):
            claims = self._claims.setdefault(route.dst, [])
            claims.append((key, pos))
            if len(claims) > 1:
                claims.sort()
            touched.add(route.dst)
        for host in touched:
            self._elect(host)
        self._changed |= touched

    def _elect(self, host: IPNetwork) -> None:
        claims = self._claims[host]
        if not claims:
            del self._claims[host]
            self._routes.pop(host, None)
            self._contested.discard(host)
            return
        key, pos = claims[0]
        route = self._candidates[key][pos]
        if self._routes.get(host) is not route:
            self._routes[host] = route
        if len(claims) > 1:
            self._contested.add(host)
        else:
            self._contested.discard(host)
