"""iptables transactions and ipsets, planned purely from save output (no kernel)."""

import ipaddress
from collections.abc import Sequence

from agent.calc.desired import DesiredDataplane, NatPoolSpec
from agent.dataplane.nat_outgoing import ALL_POOLS_SET, MASQ_POOLS_SET, render
from agent.kernel.ipset_table import parse_ipset_save, plan_ipset_updates
from agent.kernel.netfilter import detect_backend, parse_save, plan_restore, rule_id

EMPTY_NAT = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 192.168.0.0/16 -j MASQUERADE
COMMIT
"""
CHAINS = {"cali-POSTROUTING": ["-j cali-nat-outgoing"],
          "cali-nat-outgoing": ["-m set --match-set a src -j MASQUERADE"]}
INSERTS = {"POSTROUTING": ["-j cali-POSTROUTING"]}


def applied(text: str | None, before: str = EMPTY_NAT) -> str:
    """A tiny model of `iptables-restore --noflush` + save, enough to check plans converge."""
    assert text is not None
    state = parse_save(before, "nat")
    for line in text.splitlines():
        if line.startswith(":"):
            state.chains[line[1:].split()[0]] = []
        elif line.startswith("-A "):
            chain = line.split()[1]
            state.chains[chain].append(line[len(f"-A {chain} "):])
        elif line.startswith("-I "):
            _, chain, _pos, *rest = line.split(" ", 3)
            state.chains[chain].insert(0, " ".join(rest))
        elif line.startswith("-D "):
            chain = line.split()[1]
            state.chains[chain].remove(line[len(f"-D {chain} "):])
        elif line.startswith("-X "):
            del state.chains[line.split()[1]]
    out = ["*nat"] + [f":{c} - [0:0]" for c in state.chains]
    out += [f"-A {c} {r}" for c, rules in state.chains.items() for r in rules]
    return "\n".join([*out, "COMMIT", ""])


def test_first_apply_creates_our_chains_and_jump_and_leaves_foreign_rules() -> None:
    text = plan_restore("nat", chains=CHAINS, inserts=INSERTS, current=parse_save(EMPTY_NAT, "nat"))
    after = applied(text)
    assert "-A POSTROUTING -s 192.168.0.0/16 -j MASQUERADE" in after
    assert f'wren:{rule_id("cali-nat-outgoing", CHAINS["cali-nat-outgoing"][0])}' in after
    postrouting = [line for line in after.splitlines() if line.startswith("-A POSTROUTING")]
    first_postrouting = postrouting[0]
    assert "cali-POSTROUTING" in first_postrouting  # ours goes to the top


def test_second_apply_of_the_same_state_writes_nothing() -> None:
    after = applied(plan_restore("nat", chains=CHAINS, inserts=INSERTS,
                                 current=parse_save(EMPTY_NAT, "nat")))
    assert plan_restore("nat", chains=CHAINS, inserts=INSERTS,
                        current=parse_save(after, "nat")) is None


def test_a_flushed_chain_is_rewritten() -> None:
    after = applied(plan_restore("nat", chains=CHAINS, inserts=INSERTS,
                                 current=parse_save(EMPTY_NAT, "nat")))
    flushed = "\n".join(line for line in after.splitlines()
                        if not line.startswith("-A cali-nat-outgoing"))
    text = plan_restore("nat", chains=CHAINS, inserts=INSERTS, current=parse_save(flushed, "nat"))
    assert text is not None and ":cali-nat-outgoing" in text and ":cali-POSTROUTING" not in text


def test_a_chain_no_longer_wanted_is_deleted_after_its_jump_but_foreign_cali_chains_stay() -> None:
    current = applied(plan_restore("nat", chains=CHAINS, inserts=INSERTS,
                                   current=parse_save(EMPTY_NAT, "nat")))
    current = current.replace("COMMIT", ":cali-theirs - [0:0]\n-A cali-theirs -j RETURN\nCOMMIT")
    text = plan_restore("nat", chains={"cali-POSTROUTING": []}, inserts=INSERTS,
                        current=parse_save(current, "nat"))
    assert text is not None and "-X cali-nat-outgoing" in text
    assert "cali-theirs" not in text
    after = applied(text, current)
    assert "cali-theirs -j RETURN" in after and "cali-nat-outgoing" not in after


def test_backend_detection_follows_kube_proxy() -> None:
    class Fake:
        def __init__(self, outputs: dict[str, str]) -> None:
            self.outputs = outputs
            self.calls: list[Sequence[str]] = []

        def run(self, argv: Sequence[str], *, input: str | None = None) -> tuple[int, str, str]:
            self.calls.append(argv)
            return 0, self.outputs.get(argv[0], ""), ""

    assert detect_backend(Fake({"iptables-legacy-save": ":KUBE-IPTABLES-HINT - [0:0]"})) == "legacy"
    legacy_more = Fake({"iptables-legacy-save": "-A INPUT -j ACCEPT\n-A INPUT -j DROP",
                        "iptables-nft-save": "-A INPUT -j ACCEPT"})
    assert detect_backend(legacy_more) == "legacy"
    assert detect_backend(Fake({})) == "nft"  # a tie means nft
    assert all("-t" not in c for c in legacy_more.calls)  # never probes legacy mangle
    assert detect_backend(Fake({}), "Legacy") == "legacy"


def test_ipset_plan_swaps_only_changed_sets() -> None:
    current = parse_ipset_save("create cali40all-ipam-pools hash:net family inet\n"
                               "add cali40all-ipam-pools 10.65.0.0/16\n")
    desired = {"cali40all-ipam-pools": {"10.65.0.0/16"}, "cali40masq-ipam-pools": {"10.65.0.0/16"}}
    script = plan_ipset_updates(desired, current, family={})
    assert script is not None
    assert "swap cali4-wren-tmp cali40masq-ipam-pools" in script
    assert "cali40all-ipam-pools 10" not in script.replace("add cali4-wren-tmp", "")
    same = {"cali40all-ipam-pools": {"10.65.0.0/16"}}
    assert plan_ipset_updates(same, current, family={}) is None


def test_nat_rendering_masquerades_only_natoutgoing_pools() -> None:
    pools = (NatPoolSpec(ipaddress.ip_network("10.65.0.0/16"), True),
             NatPoolSpec(ipaddress.ip_network("10.66.0.0/16"), False))
    r = render(DesiredDataplane(nat_pools=pools))
    assert r.sets == {ALL_POOLS_SET: {"10.65.0.0/16", "10.66.0.0/16"},
                      MASQ_POOLS_SET: {"10.65.0.0/16"}}
    assert "MASQUERADE" in r.nat_chains["cali-nat-outgoing"][0]
    off = render(DesiredDataplane(nat_pools=(NatPoolSpec(ipaddress.ip_network("10.65.0.0/16"),
                                                         False),)))
    assert off.nat_chains["cali-nat-outgoing"] == []
    assert render(DesiredDataplane()).sets == {}
