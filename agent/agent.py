"""The agent's one loop: datastore and BGP updates in, desired state out, kernel tables applied.

    watchers (thread per kind) ─┐
    BGP channel (thread) ───────┼──► events ──► loop ──► ClusterState ──► compute_desired()
    node upkeep (thread) ───────┘                 │                         │
                                                  │      BGP intent ◄───────┤
                                                  ▼                         ▼
                                          health, metrics        Dataplane.on_desired / apply

Only this loop decides and only the dataplane it drives touches the kernel; the threads around it
enqueue. Nothing is programmed before every watched kind has delivered its first full list, so a
restart never removes a route that is still wanted, and while the datastore is down the
dataplane simply keeps its last state.
"""

from __future__ import annotations

import dataclasses
import gc
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from agent.calc.cluster_state import WATCHED_KINDS, ClusterState
from agent.calc.dataplane_calc import DesiredCalc, HostFacts
from agent.calc.desired import DesiredDataplane, IPAddress, IPNetwork
from agent.health import HealthAggregator
from agent.metrics import AgentMetrics
from agent.syncer import Syncer
from wren.datastore.backend import Backend
from wren.datastore.watcher import InSync, Status, Update
from wren.errors import ValidationError
from wren.gc_tuning import freeze_burst
from wren.log import get_logger

__all__ = ["Agent", "ApplyReport", "BGPLink", "Dataplane", "LearnedChanges", "LearnedRoutes"]

_log = get_logger(__name__)
_WAKE = object()


@dataclass(frozen=True, slots=True)
class LearnedRoutes:
    """The full set of routes the BGP sidecar currently offers: prefix → next hop."""

    routes: Mapping[IPNetwork, IPAddress]


@dataclass(frozen=True, slots=True)
class LearnedChanges:
    """What changed in that set since the previous LearnedRoutes or LearnedChanges:
    prefix → next hop, None for a prefix no longer offered."""

    changes: Mapping[IPNetwork, IPAddress | None]


@dataclass(frozen=True, slots=True)
class ApplyReport:
    in_sync: bool  # everything desired is programmed
    problems: Mapping[str, str]  # part → reason (e.g. "ipip": "kernel has no ipip support")
    more_work: bool = False  # a resync is worked off in slices: apply again after the events


class Dataplane(Protocol):
    def on_desired(self, desired: DesiredDataplane) -> None: ...

    def queue_resync(self) -> None: ...

    def on_kernel_event(self, event: object) -> bool:
        """A kernel change notification; False if the dataplane does not know the event."""
        ...

    def apply(self) -> ApplyReport: ...


class BGPLink(Protocol):
    def publish(self, state: ClusterState, desired: DesiredDataplane) -> None: ...


class Agent:
    def __init__(
        self,
        *,
        node_name: str,
        backend: Backend,
        dataplane: Dataplane,
        host_facts: Callable[[ClusterState], HostFacts],
        health: HealthAggregator,
        metrics: AgentMetrics,
        bgp: BGPLink | None = None,
        on_desired: Callable[[DesiredDataplane], None] | None = None,
        route_refresh_interval: float = 90.0,
        veth_mtu: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_name = node_name
        self.events: queue.Queue[object] = queue.Queue()
        self.state = ClusterState(node_name)
        self._calc = DesiredCalc()  # compute_desired, in proportion to what changed
        self._backend = backend
        self._dataplane = dataplane
        self._host_facts = host_facts
        self._health = health
        self._metrics = metrics
        self._bgp = bgp
        self._on_desired = on_desired
        self._refresh = route_refresh_interval
        self._veth_mtu = veth_mtu
        self._clock = clock
        self._dirty = True
        self._retry_at: float | None = None
        self._more_work = False
        self._failures = 0
        self.desired: DesiredDataplane | None = None
        self._problem_parts: set[str] = set()
        self._frozen = False
        self.syncer: Syncer | None = None

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.syncer = Syncer(self._backend, WATCHED_KINDS, self.events, stop=stop)
        self._health.report("datastore", ready=False, detail="first sync incomplete")
        self._health.report("dataplane", ready=False, detail="not programmed yet")
        self.syncer.start()
        next_resync = self._clock() + self._refresh
        while not stop.is_set():
            deadline = min(next_resync, self._retry_at or next_resync)
            if self._more_work and self._retry_at is None:
                deadline = self._clock()  # take what is queued, then the next slice
            self._drain(timeout=max(0.0, deadline - self._clock()))
            if stop.is_set():
                break
            now = self._clock()
            if now >= next_resync:
                self._dataplane.queue_resync()
                self._dirty = True  # and read the host facts again (MTU, next-hop routes)
                next_resync = now + self._refresh
            if self.syncer.all_in_sync:
                self.step(now)
        _log.info("agent stopping; the dataplane stays as it is", node=self.node_name)

    def wake(self) -> None:
        """Make the loop look at its stop event now (from a signal handler or another thread)."""
        self.events.put(_WAKE)

    def _drain(self, *, timeout: float) -> None:
        try:
            msg = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        self.handle(msg)
        # Take what else is waiting, so a burst of updates costs one calculation.
        for _ in range(10_000):
            try:
                msg = self.events.get_nowait()
            except queue.Empty:
                return
            self.handle(msg)

    def handle(self, msg: object) -> None:
        if msg is _WAKE:
            return
        if isinstance(msg, Update):
            key = f"{msg.key[0]}/{msg.key[1]}" if msg.key[0] else msg.key[1]
            try:
                if self.state.apply(msg.kind, key, msg.body):
                    self._dirty = True
            except ValidationError as err:
                self._metrics.invalid_resources.labels(kind=msg.kind).inc()
                _log.warning("ignoring invalid resource", kind=msg.kind, name=key, error=str(err))
        elif isinstance(msg, InSync | Status):
            assert self.syncer is not None
            self.syncer.note(msg)
            if isinstance(msg, Status) and not msg.connected:
                self._metrics.datastore_reconnects.labels(kind=msg.kind).inc()
            self._report_datastore()
        elif isinstance(msg, LearnedRoutes | LearnedChanges):
            if (self.state.set_learned(msg.routes) if isinstance(msg, LearnedRoutes)
                    else self.state.update_learned(msg.changes)):
                self._metrics.bgp_routes_learned.set(len(self.state.learned))
                self._dirty = True
        elif self._dataplane.on_kernel_event(msg):
            pass  # the tables noted it; the next apply repairs what differs
        elif callable(msg):
            msg()  # work another thread asked the loop to do (e.g. a resync request)
        else:
            _log.warning("unexpected agent event", message=repr(msg)[:200])

    def step(self, now: float) -> None:
        """Recompute if anything changed, then apply; failures retry with backoff."""
        if self._dirty:
            self._dirty = False
            calc_input = self.state.calc_input(self._host_facts(self.state))
            if self._veth_mtu:
                calc_input = dataclasses.replace(
                    calc_input, felix=dataclasses.replace(calc_input.felix,
                                                          veth_mtu=self._veth_mtu))
            if calc_input.felix.route_refresh_interval:
                self._refresh = calc_input.felix.route_refresh_interval
            self.desired = self._calc.compute(calc_input)
            self.state.learned_seen()
            for warning in self.desired.warnings:
                _log.warning("calc", detail=warning)
            self._dataplane.on_desired(self.desired)
            if self._on_desired is not None:
                self._on_desired(self.desired)
            if self._bgp is not None:
                self._bgp.publish(self.state, self.desired)
        if self._retry_at is not None and now < self._retry_at:
            return
        started = self._clock()
        report = self._dataplane.apply()
        self._more_work = report.more_work
        self._metrics.apply_seconds.observe(self._clock() - started)
        if report.in_sync:
            self._failures = 0
            self._retry_at = None
            if not self._frozen:
                # The first full state is long-lived: move it out of the collector's sight, so
                # later collections do not rescan tens of thousands of routes (C1 measured the
                # collector at ~40% of programming 50k routes).
                gc.freeze()
                self._frozen = True
            else:
                freeze_burst()  # so is what a burst of learned routes added
        else:
            self._failures += 1
            self._retry_at = now + min(30.0, 0.1 * 2 ** min(self._failures, 8))
        for part, reason in report.problems.items():
            self._health.report(part, ready=False, detail=reason)
        for part in self._problem_parts - set(report.problems):
            self._health.report(part, ready=True)
        self._problem_parts = set(report.problems)
        self._health.report(
            "dataplane", ready=report.in_sync,
            detail="" if report.in_sync else "some changes failed; retrying",
        )

    def _report_datastore(self) -> None:
        assert self.syncer is not None
        if self.syncer.down:
            kinds = ", ".join(sorted(self.syncer.down))
            error = next(iter(self.syncer.down.values()))
            self._health.report(
                "datastore", ready=self.syncer.all_in_sync,
                detail=f"datastore unreachable for {kinds}: {error}; keeping the last dataplane",
            )
        elif not self.syncer.all_in_sync:
            self._health.report("datastore", ready=False, detail="first sync incomplete")
        else:
            self._health.report("datastore", ready=True)
