"""An in-memory kernel behind the `Netlink` seam, for unit tests of the tables' logic.

It mimics the kernel where the route table depends on it: routes keyed like the kernel keys
them (table, destination, metric), IPv6 metric 0 stored as 1024, IPv6 blackholes reported on
`lo`, ENODEV for an unknown interface, ESRCH when deleting a route that is not there. Failures
can be injected per destination, or for a whole `send_routes` call.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence

from agent.kernel.netlink import (
    RTN_BLACKHOLE,
    LinkInfo,
    RouteFailure,
    RouteMsg,
    RouteOp,
)
from wren.errors import TemporaryError

__all__ = ["FakeNetlink"]

_RouteKey = tuple[int, object, int]  # table, dst, priority


class FakeNetlink:
    def __init__(self, links: dict[str, int] | None = None) -> None:
        self.links: dict[int, LinkInfo] = {}
        self.routes: dict[_RouteKey, RouteMsg] = {}
        #: dst → errno returned for any operation on that destination (until removed).
        self.fail_dst: dict[object, int] = {}
        #: How many upcoming send_routes calls raise TemporaryError (lost replies).
        self.fail_sends = 0
        self.sent_ops: list[RouteOp] = []
        self.send_calls = 0
        self.dump_calls = 0
        for name, index in (links or {}).items():
            self.add_link(name, index)

    # -- test helpers: the "someone else" side ------------------------------------------------

    def add_link(self, name: str, index: int) -> None:
        self.links[index] = LinkInfo(index=index, name=name, up=True)

    def del_link(self, name: str) -> None:
        for index, link in list(self.links.items()):
            if link.name == name:
                del self.links[index]
                for key, route in list(self.routes.items()):
                    if route.oif == index:
                        del self.routes[key]

    def index_of(self, name: str) -> int:
        return next(i for i, link in self.links.items() if link.name == name)

    def add_route(self, route: RouteMsg) -> None:
        """Insert as the kernel would store it (bypasses failure injection)."""
        route = self._as_stored(route)
        self.routes[(route.table, route.dst, route.priority)] = route

    def remove_route(self, dst: object) -> None:
        for key in [k for k in self.routes if k[1] == dst]:
            del self.routes[key]

    def routes_to(self, dst: object) -> list[RouteMsg]:
        return [r for k, r in self.routes.items() if k[1] == dst]

    # -- the Netlink protocol -----------------------------------------------------------------

    @staticmethod
    def _as_stored(route: RouteMsg) -> RouteMsg:
        if route.dst.version == 6:
            route = route._replace(priority=route.priority or 1024, scope=0)
            if route.type == RTN_BLACKHOLE:
                route = route._replace(oif=1)
        return route

    def send_routes(self, ops: Sequence[RouteOp]) -> list[RouteFailure]:
        self.send_calls += 1
        if self.fail_sends:
            self.fail_sends -= 1
            raise TemporaryError("fake netlink: replies lost")
        failures: list[RouteFailure] = []
        for op in ops:
            self.sent_ops.append(op)
            route = self._as_stored(op.route)
            key = (route.table, route.dst, route.priority)
            code = self.fail_dst.get(route.dst)
            if code is None:
                if op.op == "replace":
                    if route.oif and route.oif not in self.links:
                        code = errno.ENODEV
                    else:
                        self.routes[key] = route
                elif key in self.routes:
                    del self.routes[key]
                else:
                    code = errno.ESRCH
            if code is not None:
                failures.append(RouteFailure(op=op, errno=code, message="injected"
                                             if route.dst in self.fail_dst else ""))
        return failures

    def dump_routes(self, *, family: int, table: int = 254, protocol: int = 0,
                    oif: int = 0, known: Mapping[int, object] | None = None
                    ) -> list[RouteMsg]:
        self.dump_calls += 1
        version = 4 if family == 2 else 6
        return [r for r in self.routes.values()
                if r.dst.version == version and (not table or r.table == table)
                and (not protocol or r.protocol == protocol) and (not oif or r.oif == oif)]

    def dump_links(self) -> list[LinkInfo]:
        return list(self.links.values())

    def close(self) -> None:
        pass
