"""The resource kinds Wren knows, their plural names and the spellings users type.

The table is the one place that says which kinds exist; the model, the datastores, the CRDs
and wrenctl all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "Kind", "UnknownKind", "kind_by_name"]

GROUP_CRD = "crd.projectcalico.org"
API_CRD = "crd.projectcalico.org/v1"
API_V3 = "projectcalico.org/v3"


@dataclass(frozen=True, slots=True)
class Kind:
    name: str  # "IPPool"
    plural: str  # "ippools"
    namespaced: bool = False
    # How the Kubernetes datastore stores it: a CRD of crd.projectcalico.org, or derived from a
    # core object (Node from the Kubernetes Node, WorkloadEndpoint from the Pod), as Calico does.
    k8s_source: str = "crd"  # "crd" | "node" | "pod"
    short_names: tuple[str, ...] = ()

    @property
    def spellings(self) -> frozenset[str]:
        """Every lower-cased form a user may type: ippool, ippools, ipPool, IPPools, short names."""
        forms = {self.name.lower(), self.plural.lower(), *(s.lower() for s in self.short_names)}
        return frozenset(forms)


KINDS: tuple[Kind, ...] = (
    Kind("IPPool", "ippools", short_names=("pool", "pools", "ipp", "ipps")),
    Kind("IPReservation", "ipreservations", short_names=("ipreservation", "ipr")),
    Kind("BGPPeer", "bgppeers", short_names=("bgpp", "bgpps", "bp", "bps")),
    Kind("BGPConfiguration", "bgpconfigurations", short_names=("bgpconfig", "bgpconfigs")),
    Kind("BGPFilter", "bgpfilters", short_names=("bgpf",)),
    Kind("Node", "nodes", k8s_source="node", short_names=("no",)),
    Kind("FelixConfiguration", "felixconfigurations", short_names=("felixconfig", "fc")),
    Kind("IPAMConfiguration", "ipamconfigurations", short_names=("ipamconfig",)),
    Kind("IPAMBlock", "ipamblocks", short_names=("ipamblock",)),
    Kind("BlockAffinity", "blockaffinities", short_names=("blockaffinity", "affinity")),
    Kind("IPAMHandle", "ipamhandles", short_names=("ipamhandle", "handle")),
    Kind(
        "WorkloadEndpoint",
        "workloadendpoints",
        namespaced=True,
        k8s_source="pod",
        short_names=("wep", "weps"),
    ),
)

_BY_SPELLING: dict[str, Kind] = {s: k for k in KINDS for s in k.spellings}


class UnknownKind(ValueError):
    def __init__(self, name: str) -> None:
        known = ", ".join(k.name for k in KINDS)
        super().__init__(f"unknown resource kind {name!r} (known kinds: {known})")


def kind_by_name(name: str) -> Kind:
    """Resolve any spelling users type (`ippool`, `IPPools`, `ipPool`, `pool`) to its Kind."""
    try:
        return _BY_SPELLING[name.lower()]
    except KeyError:
        raise UnknownKind(name) from None
