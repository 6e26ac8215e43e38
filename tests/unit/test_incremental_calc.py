"""The incremental calc gives exactly what a full recomputation gives.

`WorkloadIndex` against `workload_routes`, and `DesiredCalc` against `compute_desired`, after
random sequences of changes (endpoints added, changed, re-sent unchanged, deleted; addresses
claimed twice; pools, nodes, blocks, learned routes, Felix settings and host facts changing in
between), plus the identity the managers rely on: unchanged endpoints keep their route objects,
and an endpoint-only change reuses the block routes.
"""

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.calc.cluster_state import ClusterState
from agent.calc.dataplane_calc import (
    CalcInput,
    DesiredCalc,
    FelixSettings,
    HostFacts,
    compute_desired,
)
from agent.calc.desired import DesiredDataplane
from agent.calc.workloads import WorkloadIndex, workload_routes
from tests.unit.test_dataplane_calc import block, node, pool
from wren.model import WorkloadEndpoint, parse

ip = ipaddress.ip_address
net = ipaddress.ip_network

KEYS = [f"default/w{i}" for i in range(6)]
ADDRS = ["10.65.0.1/32", "10.65.0.2/32", "10.65.0.3/32", "10.65.1.7/32", "fd00::5/128"]
IFACES = ["cali0000000000a", "cali0000000000b", "cali0000000000c"]


def wep(key: str, addrs: list[str], iface: str, mac: str = "") -> WorkloadEndpoint:
    res = parse({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                 "metadata": {"name": key.split("/")[1], "namespace": "default"},
                 "spec": {"node": "n1", "orchestrator": "k8s", "pod": "p", "endpoint": "eth0",
                          "ipNetworks": addrs, "interfaceName": iface, "mac": mac}})
    assert isinstance(res, WorkloadEndpoint)
    return res


endpoint_ops = st.tuples(
    st.sampled_from(KEYS),
    st.one_of(
        st.none(),  # deleted
        st.just("same"),  # re-sent with the same content (a new object)
        st.tuples(st.lists(st.sampled_from(ADDRS), min_size=1, max_size=3),
                  st.sampled_from(IFACES), st.sampled_from(["", "ee:ee:ee:ee:ee:ee"])),
    ),
)


def apply_endpoint_op(endpoints: dict[str, WorkloadEndpoint], op: Any) -> None:
    key, change = op
    if change is None:
        endpoints.pop(key, None)
    elif change == "same":
        old = endpoints.get(key)
        if old is not None:
            endpoints[key] = parse(old.to_body())  # type: ignore[assignment]
    else:
        addrs, iface, mac = change
        endpoints[key] = wep(key, addrs, iface, mac)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(endpoint_ops, max_size=4), max_size=12))
def test_workload_index_equals_a_full_recomputation(batches: list[list[Any]]) -> None:
    index = WorkloadIndex()
    endpoints: dict[str, WorkloadEndpoint] = {}
    before: dict[Any, Any] = {}
    for batch in batches:
        for op in batch:
            apply_endpoint_op(endpoints, op)
        index.update(endpoints)
        routes, warnings = workload_routes(endpoints)
        assert dict(index.routes) == routes
        assert index.warnings() == warnings
        # every route that is not the very same object as before is reported as changed
        changed = {d for d in before.keys() | routes.keys()
                   if before.get(d) is not index.routes.get(d)}
        assert changed <= index.take_changes()
        before = dict(index.routes)


def test_unchanged_endpoints_keep_their_route_objects() -> None:
    index = WorkloadIndex()
    endpoints = {k: wep(k, [f"10.65.0.{i + 1}/32"], IFACES[0]) for i, k in enumerate(KEYS)}
    index.update(endpoints)
    before = dict(index.routes)
    endpoints[KEYS[0]] = wep(KEYS[0], ["10.65.0.1/32"], IFACES[1])  # changed
    endpoints[KEYS[1]] = wep(KEYS[1], ["10.65.0.2/32"], IFACES[0])  # same content, new object
    index.update(endpoints)
    after = index.routes
    assert after[net("10.65.0.1/32")].iface == IFACES[1]
    assert all(after[d] is before[d] for d in before if d != net("10.65.0.1/32"))


def test_duplicate_address_moves_to_the_next_claim_when_the_first_goes() -> None:
    index = WorkloadIndex()
    endpoints = {KEYS[0]: wep(KEYS[0], ["10.65.0.1/32"], IFACES[0]),
                 KEYS[1]: wep(KEYS[1], ["10.65.0.1/32"], IFACES[1])}
    index.update(endpoints)
    assert index.routes[net("10.65.0.1/32")].iface == IFACES[0]
    assert index.warnings() == [f"WorkloadEndpoint {KEYS[1]}: address 10.65.0.1/32 also used "
                                f"by {KEYS[0]}; keeping the first"]
    del endpoints[KEYS[0]]
    index.update(endpoints)
    assert index.routes[net("10.65.0.1/32")].iface == IFACES[1]
    assert index.warnings() == []


POOLS = [
    {"p": pool("p", "10.65.0.0/16", vxlanMode="Always")},
    {"p": pool("p", "10.65.0.0/16", vxlanMode="CrossSubnet", natOutgoing=True)},
    {"p": pool("p", "10.65.0.0/16", ipipMode="Always")},
    {"p": pool("p", "10.65.0.0/16"), "q": pool("q", "10.66.0.0/16", vxlanMode="Always")},
]
NODES = [
    {"n1": node("n1", "10.0.1.11/24", ipv4VXLANTunnelAddr="10.65.0.1"),
     "n2": node("n2", "10.0.1.12/24", ipv4VXLANTunnelAddr="10.65.1.1")},
    {"n1": node("n1", "10.0.1.11/24"), "n2": node("n2", "10.0.2.12/24")},
    {"n2": node("n2", "10.0.2.12/24", ipv4VXLANTunnelAddr="10.65.1.1")},
]
BLOCKS = [
    {"a": block("10.65.0.0/26", "n1"), "b": block("10.65.1.0/26", "n2")},
    {"b": block("10.65.1.0/26", "n2"), "c": block("10.66.3.0/26", "n2")},
    {},
]
LEARNED = [
    {},
    {net("10.65.1.0/26"): ip("10.0.1.12"), net("10.65.2.0/26"): ip("10.0.2.11")},
    {net("10.65.0.1/32"): ip("10.0.1.12"), net("192.168.0.0/24"): ip("10.0.1.1")},
    # the same prefix by another next hop; a prefix covering n1's subnet (a warning)
    {net("10.65.1.0/26"): ip("10.0.2.11"), net("10.0.0.0/16"): ip("10.0.1.1"),
     net("10.65.2.0/26"): ip("10.0.2.11")},
]
FELIX = [FelixSettings(), FelixSettings(vxlan_mtu=1400, veth_mtu=1300)]
HOSTS = [HostFacts(parent_iface="eth0", host_mtu=1500),
         HostFacts(parent_iface="eth0", host_mtu=9000, gateways={ip("10.0.2.11"): ip("10.0.1.1")})]

infra_ops = st.tuples(
    st.sampled_from(["pools", "nodes", "blocks", "learned", "felix", "host"]),
    st.integers(min_value=0, max_value=3),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(endpoint_ops, max_size=3), st.lists(infra_ops, max_size=2)),
                max_size=10))
def test_desired_calc_equals_compute_desired(steps: list[Any]) -> None:
    calc = DesiredCalc()
    endpoints: dict[str, WorkloadEndpoint] = {}
    choice = {"pools": 0, "nodes": 0, "blocks": 0, "learned": 0, "felix": 0, "host": 0}
    tables: dict[str, list[Any]] = {"pools": POOLS, "nodes": NODES, "blocks": BLOCKS,
                                    "learned": LEARNED, "felix": FELIX, "host": HOSTS}
    previous: DesiredDataplane | None = None
    for endpoint_changes, infra_changes in steps:
        for op in endpoint_changes:
            apply_endpoint_op(endpoints, op)
        for part, i in infra_changes:
            choice[part] = i % len(tables[part])
        inp = CalcInput(node_name="n1", endpoints=endpoints,
                        **{k: tables[k][v] for k, v in choice.items()})
        desired = calc.compute(inp)
        assert desired == compute_desired(inp)
        if previous is None:
            assert desired.delta is None
        else:  # the delta covers every route that is not the very same object as before
            assert desired.delta is not None and desired.delta.since is previous.token
            old, new = previous.workload_routes, desired.workload_routes
            assert {d for d in old.keys() | new.keys()
                    if old.get(d) is not new.get(d)} <= desired.delta.dsts
            if desired.delta.blocks is not None:  # the same for block routes, when known
                old_b, new_b = previous.block_routes, desired.block_routes
                assert {d for d in old_b.keys() | new_b.keys()
                        if old_b.get(d) is not new_b.get(d)} <= desired.delta.blocks
        previous = desired


LEARNED_PREFIXES = [net("10.65.1.0/26"), net("10.65.2.0/26"), net("10.65.0.1/32"),
                    net("192.168.0.0/24"), net("10.0.0.0/16"), net("10.66.3.0/26")]
LEARNED_HOPS = [None, ip("10.0.1.12"), ip("10.0.2.11"), ip("10.0.1.1")]
learned_ops = st.one_of(
    st.tuples(st.just("whole"), st.integers(min_value=0, max_value=3)),
    st.tuples(st.just("change"), st.dictionaries(st.sampled_from(LEARNED_PREFIXES),
                                                 st.sampled_from(LEARNED_HOPS), max_size=4)),
    st.tuples(st.just("infra"), st.tuples(st.sampled_from(["pools", "nodes", "host"]),
                                          st.integers(min_value=0, max_value=3))),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(learned_ops, max_size=3), max_size=10))
def test_desired_calc_fed_the_states_account_of_learned_changes_equals_compute_desired(
        steps: list[Any]) -> None:
    """As in the agent: the learned set changes in place (`update_learned`) or whole
    (`set_learned`), and the calc trusts the state's list of changed prefixes instead of
    comparing the two sets; any input that is not only learned routes recomputes."""
    calc = DesiredCalc()
    state = ClusterState("n1")
    choice = {"pools": 0, "nodes": 1, "blocks": 0, "felix": 0, "host": 1}
    tables: dict[str, list[Any]] = {"pools": POOLS, "nodes": NODES, "blocks": BLOCKS,
                                    "felix": FELIX, "host": HOSTS}
    for ops in steps:
        for kind, arg in ops:
            if kind == "whole":
                state.set_learned(LEARNED[arg])
            elif kind == "change":
                state.update_learned(arg)
            else:
                choice[arg[0]] = arg[1] % len(tables[arg[0]])
        changed = state.learned_changed
        inp = CalcInput(node_name="n1", learned=state.learned,
                        learned_changed=None if changed is None else frozenset(changed),
                        **{k: tables[k][v] for k, v in choice.items()})
        desired = calc.compute(inp)
        state.learned_seen()
        assert desired == compute_desired(CalcInput(
            node_name="n1", learned=dict(state.learned),
            **{k: tables[k][v] for k, v in choice.items()}))
        assert set(state.learned_next_hops) == set(state.learned.values())


def test_an_endpoint_event_reuses_the_block_routes_and_other_routes() -> None:
    calc = DesiredCalc()
    endpoints = {KEYS[0]: wep(KEYS[0], ["10.65.0.1/32"], IFACES[0])}
    inp = CalcInput(node_name="n1", pools=POOLS[0], nodes=NODES[0], blocks=BLOCKS[0],
                    endpoints=endpoints, host=HOSTS[0])
    first = calc.compute(inp)
    endpoints[KEYS[1]] = wep(KEYS[1], ["10.65.0.2/32"], IFACES[1])
    second = calc.compute(inp)
    assert second.block_routes is first.block_routes
    assert second.workload_routes[net("10.65.0.1/32")] is first.workload_routes[
        net("10.65.0.1/32")]
    assert net("10.65.0.2/32") in second.workload_routes
    assert net("10.65.0.2/32") not in first.workload_routes  # each result is its own copy
    # a pool change recomputes the rest
    third = calc.compute(CalcInput(node_name="n1", pools=POOLS[1], nodes=NODES[0],
                                   blocks=BLOCKS[0], endpoints=endpoints, host=HOSTS[0]))
    assert third == compute_desired(CalcInput(node_name="n1", pools=POOLS[1], nodes=NODES[0],
                                              blocks=BLOCKS[0], endpoints=endpoints,
                                              host=HOSTS[0]))


def test_a_learned_route_change_redecides_only_that_prefix() -> None:
    calc = DesiredCalc()
    learned = {net("10.65.1.0/26"): ip("10.0.1.12"), net("10.65.2.0/26"): ip("10.0.1.13")}
    inp = CalcInput(node_name="n1", pools=POOLS[2], nodes=NODES[1], blocks=BLOCKS[0],
                    learned=learned, host=HOSTS[0])
    first = calc.compute(inp)
    learned = {**learned, net("10.65.2.0/26"): ip("10.0.1.14"),
               net("10.65.3.0/26"): ip("10.0.1.15")}
    inp = CalcInput(node_name="n1", pools=POOLS[2], nodes=NODES[1], blocks=BLOCKS[0],
                    learned=learned, host=HOSTS[0])
    second = calc.compute(inp)
    assert second == compute_desired(inp)
    assert second.block_routes is not first.block_routes  # the managers still hold the first
    kept = net("10.65.1.0/26")
    assert second.block_routes[kept] is first.block_routes[kept]
    assert second.block_routes[net("10.65.2.0/26")].gateway == ip("10.0.1.14")
    assert first.block_routes[net("10.65.2.0/26")].gateway == ip("10.0.1.13")
    assert net("10.65.3.0/26") not in first.block_routes
    assert second.delta is not None
    assert second.delta.blocks == {net("10.65.2.0/26"), net("10.65.3.0/26")}
