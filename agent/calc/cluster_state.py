"""The agent's view of the cluster: the last valid version of every resource calc reads.

Raw bodies come from the datastore watchers; they are parsed and validated here, at the
boundary. An invalid body is reported and ignored — the last valid version stays in force, so a
bad edit never half-programs the node (DESIGN: every bad input changes nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, cast

from agent.calc.dataplane_calc import CalcInput, FelixSettings, HostFacts
from agent.calc.desired import IPAddress, IPNetwork, changed_keys
from wren.errors import ValidationError
from wren.model import (
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    FelixConfiguration,
    IPAMBlock,
    IPPool,
    Node,
    Resource,
    WorkloadEndpoint,
    parse,
    parse_duration,
)

__all__ = ["WATCHED_KINDS", "ClusterState", "felix_settings"]

_R = TypeVar("_R", bound=Resource)

# What the agent watches, in the order calc needs them to be in sync.
WATCHED_KINDS: tuple[str, ...] = (
    "FelixConfiguration",
    "BGPConfiguration",
    "IPPool",
    "Node",
    "BGPPeer",
    "BGPFilter",
    "IPAMBlock",
    "BlockAffinity",
    "WorkloadEndpoint",
)


@dataclass
class ClusterState:
    node_name: str
    resources: dict[str, dict[str, Resource]] = field(default_factory=dict)
    learned: dict[IPNetwork, IPAddress] = field(default_factory=dict)
    # The prefixes whose next hop changed since the calc last took its input (`learned_seen`);
    # None before the calc took any: it decides every prefix then.
    learned_changed: set[IPNetwork] | None = None
    _hops: dict[IPAddress, int] = field(default_factory=dict)  # next hop → prefixes using it
    # Bumped for a kind whenever `apply` changes it, so a consumer of a few kinds (the BGP
    # intent) can tell whether its inputs changed without rebuilding and comparing them.
    _generations: dict[str, int] = field(default_factory=dict)

    def apply(self, kind: str, key: str, body: Mapping[str, Any] | None) -> bool:
        """Record one update; returns whether anything calc reads changed.

        Raises ValidationError for an invalid body (the caller logs it); state is unchanged.
        """
        changed = self._apply(kind, key, body)
        if changed:
            self._generations[kind] = self._generations.get(kind, 0) + 1
        return changed

    def generation(self, kinds: Collection[str]) -> tuple[int, ...]:
        """Changes `apply` made to these kinds so far: equal while none of them changed."""
        return tuple(self._generations.get(kind, 0) for kind in kinds)

    def _apply(self, kind: str, key: str, body: Mapping[str, Any] | None) -> bool:
        table = self.resources.setdefault(kind, {})
        if body is None:
            return table.pop(key, None) is not None
        resource = parse(body)
        if kind != resource.KIND:
            # Each table holds its own kind only, so calc can read it without filtering.
            raise ValidationError(kind=kind, name=key, field="kind",
                                  rule=f"is {resource.KIND}, not {kind}")
        if isinstance(resource, WorkloadEndpoint) and resource.spec.node != self.node_name:
            # Other nodes' pods are reached through their blocks; drop a stale local copy only.
            return table.pop(key, None) is not None
        old = table.get(key)
        table[key] = resource
        return old is None or _content(old) != _content(resource)

    def set_learned(self, routes: Mapping[IPNetwork, IPAddress]) -> bool:
        """A whole new learned set (prefix → next hop); returns whether it differs."""
        if routes == self.learned:
            return False
        old, self.learned = self.learned, dict(routes)
        if self.learned_changed is not None:  # rare (a reconnect): compared here, once
            self.learned_changed.update(changed_keys(old, self.learned))
        hops: dict[IPAddress, int] = {}
        for hop in self.learned.values():
            hops[hop] = hops.get(hop, 0) + 1
        self._hops = hops
        return True

    def update_learned(self, changes: Mapping[IPNetwork, IPAddress | None]) -> bool:
        """What changed in the learned set (prefix → next hop, None: withdrawn), applied in
        place: at 10,000 learned prefixes, copying and comparing the whole set for every
        message of a few hundred cost more than the changes themselves."""
        learned, hops, changed = self.learned, self._hops, self.learned_changed
        any_change = False
        for prefix, hop in changes.items():
            old = learned.get(prefix)
            if old is None:
                if hop is None:
                    continue
            elif old is hop or old == hop:
                continue
            else:
                left = hops[old] - 1
                if left:
                    hops[old] = left
                else:
                    del hops[old]
            if hop is None:
                del learned[prefix]
            else:
                learned[prefix] = hop
                hops[hop] = hops.get(hop, 0) + 1
            if changed is not None:
                changed.add(prefix)
            any_change = True
        return any_change

    def learned_seen(self) -> None:
        """The calc has computed from the current learned set: count changes afresh."""
        self.learned_changed = set()

    @property
    def learned_next_hops(self) -> Collection[IPAddress]:
        """The distinct next hops of the learned set."""
        return self._hops.keys()

    def of(self, kind: str) -> dict[str, Any]:
        return self.resources.get(kind, {})

    def calc_input(self, host: HostFacts) -> CalcInput:
        """The calc's input: read-only views of the live tables, not copies (copying 10,000
        endpoints for every event was a cost of its own); valid until the next update."""
        return CalcInput(
            node_name=self.node_name,
            pools=self._view("IPPool", IPPool),
            nodes=self._view("Node", Node),
            blocks=self._view("IPAMBlock", IPAMBlock),
            endpoints=self._view("WorkloadEndpoint", WorkloadEndpoint),
            learned=self.learned,  # changed in place by update_learned: valid until then
            learned_changed=(None if self.learned_changed is None
                             else frozenset(self.learned_changed)),
            felix=felix_settings(self.of("FelixConfiguration"), self.node_name),
            host=host,
        )

    def _view(self, kind: str, cls: type[_R]) -> Mapping[str, _R]:
        del cls  # for the type only: apply() keeps every table to its own kind
        return cast("Mapping[str, _R]", MappingProxyType(self.resources.setdefault(kind, {})))

    @property
    def bgp_configuration(self) -> BGPConfiguration | None:
        default = self.of("BGPConfiguration").get("default")
        return default if isinstance(default, BGPConfiguration) else None

    @property
    def bgp_peers(self) -> list[BGPPeer]:
        return [p for p in self.of("BGPPeer").values() if isinstance(p, BGPPeer)]

    @property
    def bgp_filters(self) -> dict[str, BGPFilter]:
        return {k: v for k, v in self.of("BGPFilter").items() if isinstance(v, BGPFilter)}

    @property
    def block_affinities(self) -> list[BlockAffinity]:
        return [a for a in self.of("BlockAffinity").values() if isinstance(a, BlockAffinity)]


def _content(res: Resource) -> Any:
    """A resource without its resourceVersion: a bare version bump is not a change."""
    return (res.metadata.labels, res.metadata.annotations, res.spec)


def felix_settings(configs: Mapping[str, Any], node_name: str) -> FelixSettings:
    """Felix's precedence: fields set in `node.<name>` over those set in `default` over the
    built-in defaults. Merged on the bodies, so a field a config does not set never overrides
    one that another config sets."""
    spec: dict[str, Any] = {}
    for name in ("default", f"node.{node_name}"):
        cfg = configs.get(name)
        if isinstance(cfg, FelixConfiguration):
            spec.update(cfg.to_body().get("spec") or {})
    base = FelixSettings()
    refresh = spec.get("routeRefreshInterval")
    return FelixSettings(
        vxlan_vni=int(spec.get("vxlanVNI") or base.vxlan_vni),
        vxlan_port=int(spec.get("vxlanPort") or base.vxlan_port),
        vxlan_mtu=int(spec.get("vxlanMTU") or 0),
        ipip_mtu=int(spec.get("ipipMTU") or 0),
        ipip_enabled=spec.get("ipipEnabled"),
        vxlan_enabled=spec.get("vxlanEnabled"),
        route_refresh_interval=(parse_duration(refresh).total_seconds()
                                if isinstance(refresh, str) else None),
    )
