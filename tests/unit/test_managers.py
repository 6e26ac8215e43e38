"""The route, neighbour and sysctl managers render by difference; the tables end up exactly where
a full rendering of the same desired state puts them.

Each manager is driven through random sequences of desired states from `DesiredCalc` (objects
shared with the previous state where nothing changed) and from `compute_desired` (every object
new), and compared after every step with a table given the full rendering (`replace_all`).
"""

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.calc.dataplane_calc import CalcInput, DesiredCalc, compute_desired
from agent.calc.desired import DesiredDataplane
from agent.dataplane._diff import changed_keys
from agent.dataplane.neighbours import NeighbourManager, neighbour_entries
from agent.dataplane.routes import RouteManager, block_route, workload_route
from agent.dataplane.sysctls import SysctlManager, wanted_sysctls
from agent.kernel.fake import FakeNetlink
from agent.kernel.neigh_table import NeighTable
from agent.kernel.route_table import Route, RouteTable
from agent.kernel.sysctl import SysctlTable
from tests.unit.test_incremental_calc import (
    BLOCKS,
    HOSTS,
    IFACES,
    LEARNED,
    NODES,
    POOLS,
    apply_endpoint_op,
    endpoint_ops,
    wep,
)
from tests.unit.test_neigh_table import FakeNeighKernel
from wren.model import WorkloadEndpoint

LINKS = {"eth0": 2, "vxlan.calico": 3, "tunl0": 4, **{name: 10 + i for i, name in
                                                      enumerate(IFACES)}}


def full_routes(desired: DesiredDataplane) -> list[Route]:
    """What the route manager handed to `replace_all` before it rendered by difference."""
    routes = [workload_route(w) for w in desired.workload_routes.values()]
    return routes + [r for r in map(block_route, desired.block_routes.values()) if r is not None]


class RecordingSysctls(SysctlTable):
    def __init__(self) -> None:
        super().__init__(root=Path("/nonexistent"))
        self.wanted: dict[str, str] = {}

    def set(self, key: str, value: str | int) -> None:
        super().set(key, value)
        self.wanted[key] = str(value)

    def delete(self, key: str) -> None:
        super().delete(key)
        self.wanted.pop(key, None)


steps = st.lists(
    st.tuples(st.lists(endpoint_ops, max_size=3),
              st.sampled_from(["pools", "nodes", "blocks", "learned", None]),
              st.integers(min_value=0, max_value=3),
              # where the state comes from: the incremental calc, compute_desired (no shared
              # objects, no delta), or a second incremental calc (a delta the managers never
              # saw the base of)
              st.sampled_from(["calc", "calc", "calc", "fresh", "other"]),
              st.booleans()),  # True: rendered; False: recorded only (an apply postponed)
    max_size=12,
)


def desired_states(plan: list[Any]) -> list[tuple[DesiredDataplane, bool]]:
    """(desired state, whether the manager renders it) for each step; the last is rendered."""
    calcs = {"calc": DesiredCalc(), "other": DesiredCalc()}
    endpoints: dict[str, WorkloadEndpoint] = {}
    choice = {"pools": 0, "nodes": 0, "blocks": 0, "learned": 0}
    tables: dict[str, list[Any]] = {"pools": POOLS, "nodes": NODES, "blocks": BLOCKS,
                                    "learned": LEARNED}
    out = []
    for n, (endpoint_changes, part, i, source, rendered) in enumerate(plan):
        for op in endpoint_changes:
            apply_endpoint_op(endpoints, op)
        if part is not None:
            choice[part] = i % len(tables[part])
        inp = CalcInput(node_name="n1", endpoints=dict(endpoints), host=HOSTS[0],
                        **{k: tables[k][v] for k, v in choice.items()})
        desired = compute_desired(inp) if source == "fresh" else calcs[source].compute(inp)
        out.append((desired, rendered or n == len(plan) - 1))
    return out


@settings(max_examples=100, deadline=None)
@given(steps)
def test_route_manager_matches_a_full_rendering(plan: list[Any]) -> None:
    kernel, reference_kernel = FakeNetlink(LINKS), FakeNetlink(LINKS)
    table, reference = RouteTable(kernel), RouteTable(reference_kernel)
    manager = RouteManager({4: table, 6: RouteTable(kernel, ip_version=6)})
    for desired, rendered in desired_states(plan):
        manager.on_desired(desired)
        if not rendered:
            continue
        manager.complete_deferred_work()
        reference.replace_all(r for r in full_routes(desired) if r.dst.version == 4)
        assert table.apply().ok and reference.apply().ok
        assert kernel.routes == reference_kernel.routes


@settings(max_examples=100, deadline=None)
@given(steps)
def test_neighbour_manager_matches_a_full_rendering(plan: list[Any]) -> None:
    kernel, reference_kernel = FakeNeighKernel(LINKS), FakeNeighKernel(LINKS)
    table, reference = NeighTable(None, kernel), NeighTable(None, reference_kernel)
    manager = NeighbourManager(table)
    for desired, rendered in desired_states(plan):
        manager.on_desired(desired)
        if not rendered:
            continue
        manager.complete_deferred_work()
        reference.replace_all(neighbour_entries(desired))
        assert table.apply().ok and reference.apply().ok
        assert (kernel.neighs, kernel.fdbs) == (reference_kernel.neighs, reference_kernel.fdbs)


@settings(max_examples=100, deadline=None)
@given(steps)
def test_sysctl_manager_matches_a_full_rendering(plan: list[Any]) -> None:
    table = RecordingSysctls()
    manager = SysctlManager(table)
    for desired, rendered in desired_states(plan):
        manager.on_desired(desired)
        if not rendered:
            continue
        manager.complete_deferred_work()
        assert table.wanted == wanted_sysctls(desired)


def test_an_endpoint_event_touches_one_route() -> None:
    kernel = FakeNetlink(LINKS)
    table = RouteTable(kernel)
    manager = RouteManager({4: table})
    calc = DesiredCalc()
    endpoints = {f"default/w{i}": wep(f"default/w{i}", [f"10.65.0.{i + 1}/32"], IFACES[i % 3])
                 for i in range(50)}

    def render() -> None:
        manager.on_desired(calc.compute(CalcInput(node_name="n1", pools=POOLS[0],
                                                  nodes=NODES[0], blocks=BLOCKS[0],
                                                  endpoints=endpoints, host=HOSTS[0])))
        manager.complete_deferred_work()
        assert table.apply().ok

    render()
    sent = len(kernel.sent_ops)
    endpoints["default/new"] = wep("default/new", ["10.65.0.200/32"], IFACES[0])
    render()
    assert [str(op.route.dst) for op in kernel.sent_ops[sent:]] == ["10.65.0.200/32"]


def test_changed_keys_by_identity() -> None:
    a, b, c = object(), object(), object()
    old = {"x": a, "y": b}
    assert changed_keys(old, old) == []
    assert changed_keys(old, {"x": a, "y": b}) == []
    assert sorted(changed_keys(old, {"x": a, "y": c})) == ["y"]
    assert sorted(changed_keys(old, {"x": a})) == ["y"]
    assert sorted(changed_keys(old, {"x": a, "z": b})) == ["y", "z"]
    assert changed_keys(old, {"x": object(), "y": b}) == ["x"]  # equal is not enough


def test_a_pod_interface_we_do_not_own_gets_no_neighbour_entry() -> None:
    kernel = FakeNeighKernel({**LINKS, "tap9": 99})
    table = NeighTable(None, kernel)
    manager = NeighbourManager(table)
    endpoints = {"default/a": wep("default/a", ["10.65.0.1/32"], "tap9", "ee:ee:ee:ee:ee:ee"),
                 "default/b": wep("default/b", ["10.65.0.2/32"], IFACES[0], "ee:ee:ee:ee:ee:ee")}
    manager.on_desired(compute_desired(CalcInput(node_name="n1", endpoints=endpoints)))
    manager.complete_deferred_work()
    assert table.apply().ok
    assert [str(m.dst) for m in kernel.neighs.values()] == ["10.65.0.2"]
