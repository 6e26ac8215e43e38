"""The agent's view of the cluster: validation at the boundary, Felix's config precedence."""

import ipaddress
from typing import Any

import pytest

from agent.calc.cluster_state import ClusterState, felix_settings
from agent.calc.dataplane_calc import HostFacts
from wren.errors import ValidationError
from wren.model import FelixConfiguration, parse


def felix(name: str, **spec: Any) -> FelixConfiguration:
    res = parse({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                 "metadata": {"name": name}, "spec": spec})
    assert isinstance(res, FelixConfiguration)
    return res


POOL = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
        "spec": {"cidr": "10.65.0.0/16", "vxlanMode": "Always"}}


def test_node_config_overrides_only_the_fields_it_sets() -> None:
    configs = {
        "default": felix("default", vxlanVNI=5000, routeRefreshInterval="30s", vxlanMTU=1400),
        "node.n1": felix("node.n1", vxlanVNI=6000),
    }
    s = felix_settings(configs, "n1")
    assert (s.vxlan_vni, s.vxlan_mtu, s.route_refresh_interval) == (6000, 1400, 30.0)
    other = felix_settings(configs, "n2")
    assert other.vxlan_vni == 5000


def test_defaults_without_any_felix_configuration() -> None:
    s = felix_settings({}, "n1")
    assert (s.vxlan_vni, s.vxlan_port, s.route_refresh_interval) == (4096, 4789, None)


def test_invalid_update_is_refused_and_the_last_valid_version_stays() -> None:
    state = ClusterState("n1")
    assert state.apply("IPPool", "p", POOL)
    bad = {**POOL, "spec": {**POOL["spec"], "vxlanMode": "Sometimes"}}
    with pytest.raises(ValidationError, match="vxlanMode"):
        state.apply("IPPool", "p", bad)
    assert state.of("IPPool")["p"].spec.vxlan_mode == "Always"


def test_a_bare_resource_version_bump_is_not_a_change() -> None:
    state = ClusterState("n1")
    state.apply("IPPool", "p", {**POOL, "metadata": {"name": "p", "resourceVersion": "1"}})
    assert not state.apply("IPPool", "p", {**POOL, "metadata": {"name": "p",
                                                                 "resourceVersion": "2"}})


def test_other_nodes_endpoints_are_not_kept() -> None:
    wep = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
           "metadata": {"name": "n2-k8s-a-eth0", "namespace": "default"},
           "spec": {"node": "n2", "orchestrator": "k8s", "pod": "a", "endpoint": "eth0",
                    "ipNetworks": ["10.65.1.5/32"], "interfaceName": "cali0123456789a"}}
    state = ClusterState("n1")
    assert not state.apply("WorkloadEndpoint", "default/n2-k8s-a-eth0", wep)
    assert state.of("WorkloadEndpoint") == {}


def test_a_body_of_another_kind_is_refused() -> None:
    state = ClusterState("n1")
    with pytest.raises(ValidationError, match="is IPPool, not Node"):
        state.apply("Node", "p", POOL)
    assert state.of("Node") == {}


def test_calc_input_reads_the_live_tables_without_copying_them() -> None:
    state = ClusterState("n1")
    state.apply("IPPool", "p", POOL)
    inp = state.calc_input(HostFacts())
    assert list(inp.pools) == ["p"]
    with pytest.raises(TypeError):
        inp.pools["q"] = inp.pools["p"]  # type: ignore[index]
    assert inp.learned is state.learned


def test_learned_changes_are_applied_in_place_and_counted_for_the_calc() -> None:
    a, b = ipaddress.ip_address("10.0.1.12"), ipaddress.ip_address("10.0.1.13")
    one, two = ipaddress.ip_network("10.65.1.0/26"), ipaddress.ip_network("10.65.2.0/26")
    state = ClusterState("n1")
    assert state.set_learned({one: a})
    assert state.learned_changed is None  # the calc has taken nothing yet: it decides all
    state.learned_seen()
    held = state.learned
    assert not state.update_learned({one: a, two: None})  # nothing new
    assert state.update_learned({two: b})
    assert state.update_learned({one: None})
    assert state.learned is held and held == {two: b}
    assert state.learned_changed == {one, two}
    assert set(state.learned_next_hops) == {b}
    assert state.calc_input(HostFacts()).learned_changed == frozenset({one, two})
    state.learned_seen()
    assert state.learned_changed == set()
    # a whole new set (a reconnect) is counted too: what differs from the set it replaces
    three = ipaddress.ip_network("10.65.3.0/26")
    assert state.set_learned({two: b, three: a})
    assert state.learned_changed == {three}
