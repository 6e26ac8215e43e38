"""Our chains and sets on real iptables (nft and legacy) and ipset, inside a namespace."""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from agent.calc.desired import DesiredDataplane, NatPoolSpec
from agent.dataplane.nat_outgoing import NatOutgoing
from agent.kernel.ipset_table import IpsetTable
from agent.kernel.netfilter import IptablesTable, SubprocessRunner

pytestmark = pytest.mark.integration

POOLS = DesiredDataplane(nat_pools=(NatPoolSpec(ipaddress.ip_network("10.65.0.0/16"), True),))


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"wt-nf{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def sh(ns: str, *args: str, check: bool = True) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                          check=check).stdout


def stage(ns: str, backend: str) -> NatOutgoing:
    runner = SubprocessRunner(ns)
    return NatOutgoing(ipsets=IpsetTable(runner),
                       nat=IptablesTable("nat", backend, runner),  # type: ignore[arg-type]
                       filter=IptablesTable("filter", backend, runner))  # type: ignore[arg-type]


def apply(s: NatOutgoing) -> list[str]:
    return s.apply_ipset_updates() + s.apply_rules() + s.apply_ipset_deletions()


def rules(ns: str, backend: str) -> str:
    return "\n".join(line for line in sh(ns, f"iptables-{backend}-save").splitlines()
                     if not line.startswith("#"))


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_apply_is_idempotent_and_leaves_foreign_state_alone(ns: str, backend: str) -> None:
    ipt = f"iptables-{backend}"
    sh(ns, ipt, "-t", "nat", "-A", "POSTROUTING", "-s", "192.168.0.0/16", "-j", "MASQUERADE")
    sh(ns, ipt, "-t", "nat", "-N", "cali-theirs")
    sh(ns, ipt, "-t", "nat", "-A", "cali-theirs", "-j", "RETURN")
    sh(ns, "ipset", "create", "theirs", "hash:net")
    s = stage(ns, backend)
    s.on_desired(POOLS)
    assert apply(s) == []
    first = rules(ns, backend)
    assert "MASQUERADE" in first and "cali40masq-ipam-pools" in first and "cali-FORWARD" in first
    assert "10.65.0.0/16" in sh(ns, "ipset", "list", "cali40masq-ipam-pools")

    s.queue_resync()
    assert apply(s) == []
    assert rules(ns, backend) == first  # nothing rewritten
    assert s.nat.writes == 1 and s.filter.writes == 1

    s.on_desired(DesiredDataplane())  # no pools at all: everything of ours goes
    assert apply(s) == []
    after = rules(ns, backend)
    assert "cali40masq-ipam-pools" not in after  # our masquerade rule is gone with the sets
    assert "cali40" not in sh(ns, "ipset", "list", "-n")
    assert "-A POSTROUTING -s 192.168.0.0/16 -j MASQUERADE" in after
    assert "-A cali-theirs -j RETURN" in after
    assert "theirs" in sh(ns, "ipset", "list", "-n")


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_a_flushed_chain_is_repaired_on_resync(ns: str, backend: str) -> None:
    s = stage(ns, backend)
    s.on_desired(POOLS)
    assert apply(s) == []
    sh(ns, f"iptables-{backend}", "-t", "nat", "-F", "cali-nat-outgoing")
    assert "MASQUERADE" not in rules(ns, backend)
    s.queue_resync()
    assert apply(s) == []
    assert "MASQUERADE" in rules(ns, backend)
    assert s.nat.drift_repaired == 1


def test_a_broken_transaction_leaves_the_table_as_it_was(ns: str) -> None:
    s = stage(ns, "nft")
    s.on_desired(POOLS)
    assert apply(s) == []
    before = rules(ns, "nft")
    s.nat.set_desired(chains={"cali-nat-outgoing": ["-j NO-SUCH-TARGET-ANYWHERE"],
                              "cali-POSTROUTING": []}, inserts={})
    errors = s.apply_rules()
    assert errors and "nat" in errors[0]
    assert rules(ns, "nft") == before
