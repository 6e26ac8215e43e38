"""iptables as transactions: our own chains, one `*-restore --noflush` per table per apply.

Felix's iptables/table.go in Python. Desired state is a set of chains we own (names `cali-...`)
plus a few jump rules at the top of builtin chains. Every rule we write carries a comment
`wren:<id>`, the id a hash of the chain and the rule; a chain is in sync when the ids found in
the kernel, in order, are the ids we want. That survives iptables re-ordering matches in its
save output, and it is how ownership is decided:

- a chain is ours if we want it, or if it is a `cali-` chain whose rules all carry `wren:`
  comments (one we wrote earlier and no longer want: it is deleted);
- a `cali-` chain without our comments is someone else's and is never touched;
- in builtin chains only rules with our comment are ever removed or inserted.

The backend (nft or legacy) is the one the node already uses, detected the way kube-proxy's
iptables wrappers do (hint chains first, then which has more rules; a tie means nft), unless
`FELIX_IPTABLESBACKEND` says otherwise. An error in one table's transaction leaves that table as
it was (restore commits per table) and is reported with the table and iptables' own message.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from wren.log import get_logger

__all__ = [
    "OUR_CHAIN_PREFIX",
    "IptablesTable",
    "Runner",
    "SubprocessRunner",
    "TableState",
    "detect_backend",
    "parse_save",
    "plan_restore",
    "rule_id",
]

log = get_logger(__name__)

OUR_CHAIN_PREFIX = "cali-"
_COMMENT = "wren:"
_HINT_CHAINS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")
Backend = Literal["nft", "legacy"]


class Runner(Protocol):
    def run(self, argv: Sequence[str], *, input: str | None = None) -> tuple[int, str, str]: ...


class SubprocessRunner:
    """Runs commands here, or inside a named network namespace (`ip netns exec`)."""

    def __init__(self, netns: str | None = None) -> None:
        self._prefix = ["ip", "netns", "exec", netns] if netns else []

    def run(self, argv: Sequence[str], *, input: str | None = None) -> tuple[int, str, str]:
        proc = subprocess.run([*self._prefix, *argv], input=input, capture_output=True,
                              text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def rule_id(chain: str, rule: str) -> str:
    return hashlib.sha256(f"{chain}\0{rule}".encode()).hexdigest()[:16]


def _with_comment(chain: str, rule: str) -> str:
    return f'-m comment --comment "{_COMMENT}{rule_id(chain, rule)}" {rule}'


@dataclass
class TableState:
    """One table as `iptables-save -t TABLE` shows it."""

    chains: dict[str, list[str]] = field(default_factory=dict)  # chain → rule lines as saved

    def ids(self, chain: str) -> list[str]:
        return [i for i in (_id_of(r) for r in self.chains.get(chain, [])) if i]

    def is_ours(self, chain: str) -> bool:
        rules = self.chains.get(chain, [])
        return chain.startswith(OUR_CHAIN_PREFIX) and bool(rules) and all(_id_of(r)
                                                                         for r in rules)


def _id_of(rule: str) -> str | None:
    marker = f'--comment "{_COMMENT}'
    start = rule.find(marker)
    if start < 0:
        marker = f"--comment {_COMMENT}"
        start = rule.find(marker)
        if start < 0:
            return None
    begin = start + len(marker)
    return rule[begin:begin + 16]


def parse_save(text: str, table: str) -> TableState:
    state = TableState()
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:].strip()
        elif current != table:
            continue
        elif line.startswith(":"):
            state.chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chain = line.split()[1]
            state.chains.setdefault(chain, []).append(line[len(f"-A {chain} "):])
    return state


BUILTIN = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})


def plan_restore(
    table: str,
    *,
    chains: Mapping[str, Sequence[str]],
    inserts: Mapping[str, Sequence[str]],
    current: TableState,
    known_ours: set[str] | frozenset[str] = frozenset(),
) -> str | None:
    """The restore transaction that makes `current` match the desired chains and inserts;
    None when nothing differs."""
    declare: list[str] = []
    body: list[str] = []
    deletes: list[str] = []
    for chain, rules in chains.items():
        want = [rule_id(chain, r) for r in rules]
        if chain in current.chains and current.ids(chain) == want and \
                len(current.chains[chain]) == len(want):
            continue
        declare.append(f":{chain} - [0:0]")  # with --noflush: creates, or flushes ours
        body += [f"-A {chain} {_with_comment(chain, r)}" for r in rules]
    for builtin, rules in inserts.items():
        want = [rule_id(builtin, r) for r in rules]
        have_rules = current.chains.get(builtin, [])
        have = [_id_of(r) for r in have_rules]
        if have[:len(want)] == want and sum(1 for i in have if i) == len(want):
            continue
        body += [f"-D {builtin} {r}" for r in have_rules if _id_of(r)]
        body += [f"-I {builtin} 1 {_with_comment(builtin, r)}" for r in reversed(rules)]
    for builtin in sorted(BUILTIN & current.chains.keys() - inserts.keys()):
        body += [f"-D {builtin} {r}" for r in current.chains[builtin] if _id_of(r)]
    for chain in sorted(current.chains):
        if chain in chains or chain in BUILTIN:
            continue
        if current.is_ours(chain) or (chain in known_ours and not current.chains[chain]):
            declare.append(f":{chain} - [0:0]")
            deletes.append(f"-X {chain}")
    if not declare and not body and not deletes:
        return None
    return "\n".join([f"*{table}", *declare, *body, *deletes, "COMMIT", ""])


def detect_backend(runner: Runner, override: str = "auto") -> Backend:
    """nft or legacy, as kube-proxy's wrappers decide; `override` is FELIX_IPTABLESBACKEND."""
    choice = override.lower()
    if choice in ("nft", "legacy"):
        return "nft" if choice == "nft" else "legacy"
    saves: dict[Backend, str] = {}
    for backend in ("nft", "legacy"):
        # Never probe legacy with `-t mangle`: it would create the table.
        rc, out, _ = runner.run([f"iptables-{backend}-save"])
        saves[backend] = out if rc == 0 else ""
        if any(hint in saves[backend] for hint in _HINT_CHAINS):
            return backend
    count = {b: sum(1 for line in s.splitlines() if line.startswith("-A ")) for b, s in
             saves.items()}
    return "legacy" if count["legacy"] > count["nft"] else "nft"


@dataclass
class IptablesTable:
    """The chains we own in one table of one IP version, applied as one transaction."""

    table: str
    backend: Backend
    runner: Runner
    ip_version: int = 4
    chains: dict[str, list[str]] = field(default_factory=dict)
    inserts: dict[str, list[str]] = field(default_factory=dict)
    writes: int = 0
    drift_repaired: int = 0
    _written: set[str] = field(default_factory=set)
    _dirty: bool = True
    _synced_once: bool = False

    def set_desired(self, *, chains: Mapping[str, Sequence[str]],
                    inserts: Mapping[str, Sequence[str]]) -> None:
        new_chains = {c: list(r) for c, r in chains.items()}
        new_inserts = {c: list(r) for c, r in inserts.items()}
        if new_chains != self.chains or new_inserts != self.inserts:
            self.chains, self.inserts, self._dirty = new_chains, new_inserts, True

    def queue_resync(self) -> None:
        self._dirty = True

    @property
    def _cmd(self) -> str:
        return ("ip6tables" if self.ip_version == 6 else "iptables") + f"-{self.backend}"

    def apply(self) -> str | None:
        """Returns an error message, or None when the kernel matches (or now matches)."""
        if not self._dirty:
            return None
        rc, out, err = self.runner.run([f"{self._cmd}-save", "-t", self.table])
        if rc != 0:
            return f"{self._cmd}-save -t {self.table} failed: {err.strip()}"
        current = parse_save(out, self.table)
        text = plan_restore(self.table, chains=self.chains, inserts=self.inserts,
                            current=current, known_ours=self._written)
        if text is not None:
            rc, _, err = self.runner.run([f"{self._cmd}-restore", "--noflush"], input=text)
            if rc != 0:
                log.warning("iptables transaction failed; table unchanged", table=self.table,
                            backend=self.backend, error=err.strip())
                return f"{self._cmd}-restore of table {self.table} failed: {err.strip()}"
            self.writes += 1
            if self._synced_once:
                self.drift_repaired += 1
            log.info("iptables table written", table=self.table, backend=self.backend,
                     lines=text.count("\n"))
        self._written = set(self.chains)
        self._synced_once = True
        self._dirty = False
        return None
