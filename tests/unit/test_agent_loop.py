"""The agent's loop with a memory datastore and a dataplane stand-in: how it paces applies."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

import pytest

from agent.agent import Agent, ApplyReport
from agent.calc.cluster_state import ClusterState
from agent.calc.dataplane_calc import HostFacts
from agent.calc.desired import DesiredDataplane
from agent.health import HealthAggregator
from agent.metrics import AgentMetrics
from wren.datastore.memory import MemoryBackend
from wren.gc_tuning import FREEZE_AT, tune_for_bursts


class SlicedDataplane:
    """Says `more_work` for the first `slices` applies, as a sliced sysctl resync does."""

    def __init__(self, slices: int) -> None:
        self.slices = slices
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def on_desired(self, desired: DesiredDataplane) -> None:
        pass

    def queue_resync(self) -> None:
        pass

    def on_kernel_event(self, event: object) -> bool:
        return False

    def apply(self) -> ApplyReport:
        time.sleep(0.02)  # a slice of work
        with self.lock:
            self.seen.append("apply")
            more = self.seen.count("apply") <= self.slices
        return ApplyReport(in_sync=True, problems={}, more_work=more)

    def note(self, what: str) -> None:
        with self.lock:
            self.seen.append(what)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def host_facts(state: ClusterState) -> HostFacts:
    return HostFacts()


def test_the_loop_comes_back_for_every_slice_and_handles_events_in_between() -> None:
    dataplane = SlicedDataplane(slices=30)
    agent = Agent(node_name="n1", backend=MemoryBackend(), dataplane=dataplane,
                  host_facts=host_facts, health=HealthAggregator(),
                  metrics=AgentMetrics.create(), route_refresh_interval=3600)
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,))
    loop.start()
    try:
        assert wait_for(lambda: dataplane.seen.count("apply") >= 2)
        agent.events.put(lambda: dataplane.note("event"))  # work another thread asks for
        # every slice is applied without waiting for the next resync (an hour away)
        assert wait_for(lambda: dataplane.seen.count("apply") >= 31)
        assert "event" in dataplane.seen[:-1]  # handled between slices, not after them all
        applied = dataplane.seen.count("apply")
        time.sleep(0.3)
        assert dataplane.seen.count("apply") == applied  # no more work: the loop waits
    finally:
        stop.set()
        agent.wake()
        loop.join(timeout=10)
    assert not loop.is_alive()


class BurstDataplane(SlicedDataplane):
    """Keeps `burst` new objects alive per apply, as programming 10,000 learned routes does."""

    def __init__(self) -> None:
        super().__init__(slices=0)
        self.burst = 0
        self.kept: list[list[int]] = []

    def apply(self) -> ApplyReport:
        self.kept.extend([i] for i in range(self.burst))
        return ApplyReport(in_sync=True, problems={})


def test_what_a_programmed_burst_left_is_frozen_out_of_the_collectors_sight(
        monkeypatch: pytest.MonkeyPatch) -> None:
    young_at_freeze: list[int] = []
    freeze = gc.freeze

    def counted_freeze() -> None:
        young_at_freeze.append(gc.get_count()[0])
        freeze()

    monkeypatch.setattr(gc, "freeze", counted_freeze)
    dataplane = BurstDataplane()
    agent = Agent(node_name="n1", backend=MemoryBackend(), dataplane=dataplane,
                  host_facts=host_facts, health=HealthAggregator(),
                  metrics=AgentMetrics.create(), route_refresh_interval=3600)
    thresholds = gc.get_threshold()
    tune_for_bursts()  # the daemon's settings: a burst stays young until it is frozen
    try:
        agent.step(time.monotonic())
        assert len(young_at_freeze) == 1  # the first full state
        dataplane.burst = FREEZE_AT // 10
        agent.step(time.monotonic())
        assert len(young_at_freeze) == 1  # a few new objects stay in the collector's care
        dataplane.burst = FREEZE_AT * 2
        agent.step(time.monotonic())
        assert len(young_at_freeze) == 2 and young_at_freeze[1] >= FREEZE_AT * 2
        assert gc.get_count()[0] < FREEZE_AT  # nothing young left to scan
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
