"""The dataplane driver: Felix's int_dataplane. Managers in, kernel tables out, one apply loop.

    desired ──► managers.on_desired()            (record only; no kernel I/O)
    apply():    managers.complete_deferred_work() (render into the tables)
                then the tables, in this order:
                  1. sysctls         forwarding first; per-device ones wait for their device
                  2. links           tunnel devices before anything that points at them
                  3. ipsets (adds)   before the rules that match on them
                  4. neighbours/FDB  remote VTEPs before the routes through vxlan.calico
                  5. routes          IPv4, then IPv6
                  6. iptables        nat, then filter
                  7. ipsets (dels)   after the rules that used them are gone

Each step's failure is collected, not raised: the others still run, the report says what is
wrong, and the agent retries the next pass. Kernel change notifications go to the tables that
care, so a route deleted by hand is back on the next apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.agent import ApplyReport
from agent.calc.desired import DesiredDataplane
from agent.kernel.events import EventsLost, LinkEvent, RouteEvent
from agent.kernel.link_table import LinkTable
from agent.kernel.neigh_table import NeighTable
from agent.kernel.route_table import RouteTable
from agent.kernel.sysctl import SysctlTable
from agent.metrics import AgentMetrics
from wren.log import get_logger

__all__ = ["DataplaneDriver", "Manager", "NetfilterStage"]

_log = get_logger(__name__)


class Manager(Protocol):
    def on_desired(self, desired: DesiredDataplane) -> None: ...

    def complete_deferred_work(self) -> None: ...


class NetfilterStage(Protocol):
    """NAT and friends: ipsets and iptables applied around the route tables (steps 3, 6, 7)."""

    def on_desired(self, desired: DesiredDataplane) -> None: ...

    def apply_ipset_updates(self) -> list[str]: ...

    def apply_rules(self) -> list[str]: ...

    def apply_ipset_deletions(self) -> list[str]: ...

    def queue_resync(self) -> None: ...


@dataclass
class DataplaneDriver:
    managers: Sequence[Manager]
    sysctls: SysctlTable
    links: LinkTable
    neighbours: NeighTable
    routes: dict[int, RouteTable]
    metrics: AgentMetrics | None = None
    netfilter: NetfilterStage | None = None
    _drift_seen: dict[str, int] = field(default_factory=dict)

    def on_desired(self, desired: DesiredDataplane) -> None:
        for manager in self.managers:
            manager.on_desired(desired)
        if self.netfilter is not None:
            self.netfilter.on_desired(desired)

    def queue_resync(self) -> None:
        self.sysctls.queue_resync()
        self.links.queue_resync()
        self.neighbours.queue_resync()
        for table in self.routes.values():
            table.queue_resync()
        if self.netfilter is not None:
            self.netfilter.queue_resync()
        if self.metrics is not None:
            for name in ("routes", "links", "neighbours", "sysctls"):
                self.metrics.resyncs.labels(table=name).inc()

    def on_kernel_event(self, event: object) -> bool:
        if isinstance(event, RouteEvent):
            for table in self.routes.values():
                table.on_route(event.route, deleted=event.deleted)
            return True
        if isinstance(event, LinkEvent):
            self.links.on_link(event.link, deleted=event.deleted)
            self.neighbours.on_link(event.link, deleted=event.deleted)
            for table in self.routes.values():
                table.on_link(event.link, deleted=event.deleted)
            return True
        if isinstance(event, EventsLost):
            _log.warning("kernel notifications lost; resyncing every table", reason=event.reason)
            self.queue_resync()
            return True
        return False

    def apply(self) -> ApplyReport:
        for manager in self.managers:
            manager.complete_deferred_work()
        problems: dict[str, str] = {}
        errors: list[str] = []

        sys_result = self.sysctls.apply()
        errors += [f"sysctl: {e}" for e in sys_result.errors]

        link_result = self.links.apply()
        errors += [f"link: {e}" for e in link_result.errors]
        for unsupported in link_result.unsupported:
            problems[unsupported.feature] = str(unsupported)

        if self.netfilter is not None:
            errors += self.netfilter.apply_ipset_updates()

        neigh_result = self.neighbours.apply()
        errors += [f"neighbour: {e}" for e in neigh_result.errors]

        programmed = 0
        for version, table in self.routes.items():
            result = table.apply()
            if result.error:
                errors.append(result.error)
            errors += [f"route: {f}" for f in result.failures]
            programmed += table.counters.routes_programmed
            if self.metrics is not None:
                self._count_drift(f"routes-v{version}", table.counters.drift_repaired)

        if self.netfilter is not None:
            errors += self.netfilter.apply_rules()
            errors += self.netfilter.apply_ipset_deletions()

        if self.metrics is not None:
            self.metrics.routes_programmed.labels(kind="all").set(programmed)
            self._count_drift("links", self.links.counters.drift_repaired)
            if errors:
                self.metrics.apply_errors.labels(table="any").inc()
        for error in errors:
            _log.warning("dataplane apply error; will retry", error=error)
        if errors:
            problems.setdefault("dataplane-errors", "; ".join(errors[:5]))
        return ApplyReport(in_sync=not errors, problems=problems,
                           more_work=sys_result.rechecks_left > 0)

    def _count_drift(self, name: str, total: int) -> None:
        assert self.metrics is not None
        seen = self._drift_seen.get(name, 0)
        if total > seen:
            self.metrics.drift_repaired.labels(table=name).inc(total - seen)
        self._drift_seen[name] = total
