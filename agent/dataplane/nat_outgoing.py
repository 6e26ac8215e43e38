"""NAT outgoing (Felix's masq_mgr) and the FORWARD accept for pod traffic.

    ipset cali40all-ipam-pools    every IPv4 pool
    ipset cali40masq-ipam-pools   pools with natOutgoing
    nat:    POSTROUTING -j cali-POSTROUTING -j cali-nat-outgoing:
              -m set --match-set cali40masq-ipam-pools src
              -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE
    filter: FORWARD -j cali-FORWARD: -i cali+ -j ACCEPT, -o cali+ -j ACCEPT

Traffic from a natOutgoing pool to anything outside every pool leaves with the node's address;
pod-to-pod traffic (destination inside a pool) keeps its source. Only IPv4 is masqueraded today.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.calc.desired import DesiredDataplane
from agent.kernel.ipset_table import IpsetTable
from agent.kernel.netfilter import IptablesTable, Runner, SubprocessRunner, detect_backend

__all__ = ["ALL_POOLS_SET", "MASQ_POOLS_SET", "NatOutgoing", "make_nat_outgoing", "render"]

ALL_POOLS_SET = "cali40all-ipam-pools"
MASQ_POOLS_SET = "cali40masq-ipam-pools"


@dataclass(frozen=True, slots=True)
class Rendered:
    sets: dict[str, set[str]]
    nat_chains: dict[str, list[str]]
    nat_inserts: dict[str, list[str]]
    filter_chains: dict[str, list[str]]
    filter_inserts: dict[str, list[str]]


def render(desired: DesiredDataplane) -> Rendered:
    v4 = [p for p in desired.nat_pools if p.cidr.version == 4]
    masq = [str(p.cidr) for p in v4 if p.nat_outgoing]
    nat_rules = [f"-m set --match-set {MASQ_POOLS_SET} src "
                 f"-m set ! --match-set {ALL_POOLS_SET} dst -j MASQUERADE"] if masq else []
    return Rendered(
        sets={ALL_POOLS_SET: {str(p.cidr) for p in v4}, MASQ_POOLS_SET: set(masq)} if v4 else {},
        nat_chains={"cali-nat-outgoing": nat_rules, "cali-POSTROUTING": ["-j cali-nat-outgoing"]},
        nat_inserts={"POSTROUTING": ["-j cali-POSTROUTING"]},
        filter_chains={"cali-FORWARD": ["-i cali+ -j ACCEPT", "-o cali+ -j ACCEPT"]},
        filter_inserts={"FORWARD": ["-j cali-FORWARD"]},
    )


class NatOutgoing:
    """The driver's netfilter stage: ipset updates, then both tables, then ipset deletions."""

    def __init__(self, *, ipsets: IpsetTable, nat: IptablesTable, filter: IptablesTable) -> None:
        self.ipsets, self.nat, self.filter = ipsets, nat, filter

    def on_desired(self, desired: DesiredDataplane) -> None:
        r = render(desired)
        self.ipsets.set_desired(r.sets)
        self.nat.set_desired(chains=r.nat_chains, inserts=r.nat_inserts)
        self.filter.set_desired(chains=r.filter_chains, inserts=r.filter_inserts)

    def apply_ipset_updates(self) -> list[str]:
        error = self.ipsets.apply_updates()
        return [error] if error else []

    def apply_rules(self) -> list[str]:
        return [e for e in (self.nat.apply(), self.filter.apply()) if e]

    def apply_ipset_deletions(self) -> list[str]:
        error = self.ipsets.apply_deletions()
        return [error] if error else []

    def queue_resync(self) -> None:
        self.ipsets.queue_resync()
        self.nat.queue_resync()
        self.filter.queue_resync()


def make_nat_outgoing(backend_override: str = "auto", runner: Runner | None = None) -> NatOutgoing:
    runner = runner or SubprocessRunner()
    backend = detect_backend(runner, backend_override)
    return NatOutgoing(
        ipsets=IpsetTable(runner),
        nat=IptablesTable("nat", backend, runner),
        filter=IptablesTable("filter", backend, runner),
    )
