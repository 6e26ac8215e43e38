"""IP sets we own (names `cali40...` / `cali60...`), rewritten atomically with `ipset restore`.

A changed set is filled as a temporary set and swapped in, so rules matching on it never see it
half-written. Sets that are no longer wanted are destroyed only in the second phase, after the
rules that used them are gone (Felix's ordering: updates before iptables, deletions after). Sets
with other names are never read or written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.kernel.netfilter import Runner
from wren.log import get_logger

__all__ = ["OWNED_SET_PREFIXES", "IpsetTable", "parse_ipset_save", "plan_ipset_updates"]

log = get_logger(__name__)

OWNED_SET_PREFIXES = ("cali40", "cali60")
_TEMP = "cali4-wren-tmp"


def parse_ipset_save(text: str) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "create":
            sets.setdefault(parts[1], set())
        elif len(parts) >= 3 and parts[0] == "add":
            sets.setdefault(parts[1], set()).add(parts[2])
    return sets


def plan_ipset_updates(desired: Mapping[str, Iterable[str]], current: Mapping[str, set[str]],
                       *, family: Mapping[str, str]) -> str | None:
    lines: list[str] = []
    for name, members in sorted(desired.items()):
        want = set(members)
        if name in current and current[name] == want:
            continue
        fam = family.get(name, "inet")
        lines.append(f"create {name} hash:net family {fam} -exist")
        lines.append(f"create {_TEMP} hash:net family {fam} -exist")
        lines.append(f"flush {_TEMP}")
        lines += [f"add {_TEMP} {m}" for m in sorted(want)]
        lines.append(f"swap {_TEMP} {name}")
        lines.append(f"destroy {_TEMP}")
    return "\n".join(lines) + "\n" if lines else None


@dataclass
class IpsetTable:
    runner: Runner
    desired: dict[str, set[str]] = field(default_factory=dict)
    family: dict[str, str] = field(default_factory=dict)
    writes: int = 0
    _dirty: bool = True

    def set_desired(self, sets: Mapping[str, Iterable[str]], *,
                    family: Mapping[str, str] | None = None) -> None:
        new = {n: set(m) for n, m in sets.items()}
        for name in new:
            if not name.startswith(OWNED_SET_PREFIXES):
                raise ValueError(f"ipset {name!r} is not a name this agent owns")
        if new != self.desired:
            self.desired, self._dirty = new, True
        self.family = dict(family or {})

    def queue_resync(self) -> None:
        self._dirty = True

    def _current(self) -> tuple[dict[str, set[str]] | None, str]:
        rc, out, err = self.runner.run(["ipset", "list", "-n"])
        if rc != 0:
            return None, f"ipset list failed: {err.strip()}"
        ours = [n for n in out.split() if n.startswith(OWNED_SET_PREFIXES)]
        current: dict[str, set[str]] = {}
        for name in ours:
            rc, saved, err = self.runner.run(["ipset", "save", name])
            if rc == 0:
                current.update(parse_ipset_save(saved))
        return current, ""

    def apply_updates(self) -> str | None:
        if not self._dirty:
            return None
        current, error = self._current()
        if current is None:
            return error
        script = plan_ipset_updates(self.desired, current, family=self.family)
        if script is not None:
            rc, _, err = self.runner.run(["ipset", "restore"], input=script)
            if rc != 0:
                self.runner.run(["ipset", "destroy", _TEMP])
                return f"ipset restore failed: {err.strip()}"
            self.writes += 1
            log.info("ipsets written", sets=sorted(self.desired))
        return None

    def apply_deletions(self) -> str | None:
        if not self._dirty:
            return None
        current, error = self._current()
        if current is None:
            return error
        for name in sorted(set(current) - set(self.desired)):
            rc, _, err = self.runner.run(["ipset", "destroy", name])
            if rc != 0:
                return f"ipset destroy {name} failed (still in use?): {err.strip()}"
            log.info("ipset destroyed", set=name)
        self._dirty = False
        return None
