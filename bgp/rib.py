"""What we learned, per peer, and what each peer should get from us. Pure, clock injected.

    ExaBGP updates ──► Adj-RIB-In (per peer, raw) ──import policy──► accepted ──best path──►
        learned (prefix → next hop, for the agent)
        reflected (route reflectors only: RFC 4456 to clients / non-clients)
    intent.announce ──export policy──► Adj-RIB-Out wanted per peer (ours + reflected)

ExaBGP keeps no RIB of what it receives and chooses no best path: this does both. Graceful
restart (helper side, RFC 4724): when a peer that advertised GR goes down its paths stay, marked
stale, until it sends End-of-RIB after coming back or its restart time runs out.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from bgp.exabgp_json import Attributes
from bgp.intent import BGPIntent, IPAddress, IPNetwork, PeerIntent
from bgp.policy import Verdict, attributes_problem, export_allowed, prefix_verdict
from wren.prefix import address_int

__all__ = ["OutRoute", "Path", "PeerCounters", "Rib"]


class Path(NamedTuple):
    """One peer's route to a prefix. A NamedTuple: one is built per received prefix, and a
    frozen dataclass's `__init__` cost ~1.4 µs of that."""

    prefix: IPNetwork
    next_hop: IPAddress
    peer: IPAddress
    attributes: Attributes
    stale: bool = False


@dataclass(frozen=True, slots=True)
class OutRoute:
    """One prefix as we announce it to one peer."""

    prefix: IPNetwork
    next_hop: IPAddress
    local_pref: int | None = None
    communities: tuple[str, ...] = ()
    as_path: tuple[int, ...] = ()
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()

    def attribute_key(self) -> tuple[object, ...]:
        return (self.next_hop, self.local_pref, self.communities, self.as_path,
                self.originator_id, self.cluster_list)


@dataclass
class PeerCounters:
    received: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class Rib:
    def __init__(self, intent: BGPIntent, *, clock: Callable[[], float]) -> None:
        self.intent = intent
        self._clock = clock
        self._peers = {p.address: p for p in intent.peers}
        self.adj_in: dict[IPAddress, dict[IPNetwork, Path]] = {}
        self.accepted: dict[IPAddress, dict[IPNetwork, Path]] = {}
        self.rejected: dict[IPAddress, dict[IPNetwork, str]] = {}
        self.router_ids: dict[IPAddress, str] = {}
        self.restart_times: dict[IPAddress, int] = {}
        self.stale_until: dict[IPAddress, float] = {}
        self._best: dict[IPNetwork, Path] = {}
        self._by_prefix: dict[IPNetwork, set[IPAddress]] = {}
        self.version = 0  # bumps whenever `learned` may have changed
        self._changed: set[IPNetwork] = set()  # prefixes whose best path changed, for deltas

    # -- configuration ---------------------------------------------------------------------
    def set_intent(self, intent: BGPIntent) -> None:
        """New peers, pools or blocks: drop paths of peers that are gone, re-judge the rest."""
        self.intent = intent
        self._peers = {p.address: p for p in intent.peers}
        for peer in list(self.adj_in):
            if peer not in self._peers:
                self.drop_peer(peer)
        for peer, paths in self.adj_in.items():
            self._judge(peer, paths.values())
        self._rebuild_best(set(self._by_prefix))

    # -- events from ExaBGP ----------------------------------------------------------------
    def on_open(self, peer: IPAddress, router_id: str, restart_time: int) -> None:
        self.router_ids[peer] = router_id
        self.restart_times[peer] = restart_time

    def on_update(self, peer: IPAddress, announced: Iterable[tuple[IPNetwork, IPAddress]],
                  withdrawn: Iterable[IPNetwork], attrs: Attributes) -> None:
        if peer not in self._peers:
            return
        table = self.adj_in.setdefault(peer, {})
        touched: set[IPNetwork] = set()
        new: list[Path] = []
        for prefix in withdrawn:
            if table.pop(prefix, None) is not None:
                touched.add(prefix)
                self.accepted.get(peer, {}).pop(prefix, None)
                self.rejected.get(peer, {}).pop(prefix, None)
        for prefix, next_hop in announced:
            path = Path(prefix, next_hop, peer, attrs)
            table[prefix] = path
            new.append(path)
            touched.add(prefix)
        self._judge(peer, new)
        self._rebuild_best(touched)

    def on_down(self, peer: IPAddress) -> None:
        """Session lost: keep the paths as stale if both sides do graceful restart."""
        intent = self._peers.get(peer)
        restart = min(self.restart_times.get(peer, 0), intent.restart_time if intent else 0)
        if restart <= 0 or not self.adj_in.get(peer):
            self.drop_peer(peer)
            return
        self.stale_until[peer] = self._clock() + restart
        for table in (self.adj_in, self.accepted):
            paths = table.get(peer, {})
            for prefix, path in paths.items():
                paths[prefix] = Path(path.prefix, path.next_hop, path.peer, path.attributes,
                                     stale=True)
        # A fresh path of another peer now ranks above these stale ones.
        self._rebuild_best(set(self.adj_in.get(peer, {})))

    def all_down(self, restart_time: int) -> None:
        """Our own speaker restarts: every peer's paths are kept for `restart_time` as stale."""
        for peer in list(self.adj_in):
            self.restart_times[peer] = max(self.restart_times.get(peer, 0), restart_time)
            self.on_down(peer)

    def on_end_of_rib(self, peer: IPAddress) -> None:
        """The peer re-sent everything it has: what is still stale is gone."""
        self.stale_until.pop(peer, None)
        paths = self.adj_in.get(peer, {})
        gone = [p for p, path in paths.items() if path.stale]
        for prefix in gone:
            del paths[prefix]
            self.accepted.get(peer, {}).pop(prefix, None)
            self.rejected.get(peer, {}).pop(prefix, None)  # else counted as dropped forever
        self._rebuild_best(gone)  # only the swept paths can change a best path

    def expire(self) -> bool:
        """Sweep peers whose restart time ran out; True if any was swept."""
        now = self._clock()
        late = [peer for peer, until in self.stale_until.items() if until <= now]
        for peer in late:
            self.on_end_of_rib(peer)
        return bool(late)

    def next_deadline(self) -> float | None:
        return min(self.stale_until.values(), default=None)

    def drop_peer(self, peer: IPAddress) -> None:
        self.stale_until.pop(peer, None)
        gone = set(self.adj_in.pop(peer, {}))
        self.accepted.pop(peer, None)
        self.rejected.pop(peer, None)
        self._rebuild_best(gone)

    # -- results ---------------------------------------------------------------------------
    def learned(self) -> dict[IPNetwork, tuple[IPAddress, IPAddress]]:
        """prefix → (next hop, peer) of the best path."""
        return {prefix: (path.next_hop, path.peer) for prefix, path in self._best.items()}

    def take_changes(self) -> dict[IPNetwork, tuple[IPAddress, IPAddress] | None]:
        """What `learned()` gained, changed (prefix → (next hop, peer)) or lost (→ None) since
        the last call: the agent is sent this, not the whole set, on every change."""
        changed, self._changed = self._changed, set()
        best = self._best
        return {prefix: (path.next_hop, path.peer) if (path := best.get(prefix)) else None
                for prefix in changed}

    @property
    def pending_changes(self) -> int:
        """How many prefixes `take_changes` would report now."""
        return len(self._changed)

    def learned_count(self) -> int:
        """len(learned()) without building it."""
        return len(self._best)

    def counters(self, peer: IPAddress) -> PeerCounters:
        rejected: dict[str, int] = {}
        for reason in self.rejected.get(peer, {}).values():
            rejected[reason] = rejected.get(reason, 0) + 1
        return PeerCounters(received=len(self.adj_in.get(peer, {})),
                            accepted=len(self.accepted.get(peer, {})), rejected=rejected)

    def wanted_out(self, peer: PeerIntent) -> dict[IPNetwork, OutRoute]:
        """Everything this peer should have from us now."""
        intent = self.intent
        hop = intent.address if peer.address.version == 4 else intent.address6
        out: dict[IPNetwork, OutRoute] = {}
        if hop is None:
            return out  # an IPv6 peer without our IPv6 address: nothing can carry a next hop
        for ann in intent.announce:
            if ann.prefix.version == peer.address.version and export_allowed(peer, ann.prefix):
                out[ann.prefix] = OutRoute(prefix=ann.prefix, next_hop=hop,
                                           communities=ann.communities)
        if intent.cluster_id is None or peer.ebgp:
            return out
        # Route reflection (RFC 4456): from a client to everyone; from a non-client to clients.
        cluster = str(intent.cluster_id)
        for prefix, path in self._best.items():
            source = self._peers.get(path.peer)
            if source is None or source.ebgp or path.peer == peer.address or prefix in out:
                continue
            if prefix.version != peer.address.version:
                continue
            if not (source.rr_client or peer.rr_client):
                continue
            a = path.attributes
            originator = a.originator_id or self.router_ids.get(path.peer) or str(path.peer)
            if originator == self.router_ids.get(peer.address):
                continue  # the peer would drop it as its own (and BIRD does so silently)
            if not export_allowed(peer, prefix):
                continue
            next_hop = hop if peer.next_hop_mode == "Self" else path.next_hop
            out[prefix] = OutRoute(prefix=prefix, next_hop=next_hop, local_pref=a.local_pref,
                                   communities=a.communities, as_path=a.as_path,
                                   originator_id=originator,
                                   cluster_list=(cluster, *a.cluster_list))
        return out

    # -- internals -------------------------------------------------------------------------
    def _judge(self, peer: IPAddress, paths: Iterable[Path]) -> None:
        intent = self.intent
        intent_peer = self._peers.get(peer)
        accepted = self.accepted.setdefault(peer, {})
        rejected = self.rejected.setdefault(peer, {})
        by_prefix = self._by_prefix
        # By id of the attributes an UPDATE shares (the paths keep them alive meanwhile).
        problems: dict[int, Verdict | None] = {}
        for path in paths:
            prefix = path.prefix
            if intent_peer is None:
                verdict = "peer not configured"
            else:
                key = id(path.attributes)
                if key not in problems:
                    problems[key] = attributes_problem(intent, intent_peer, path.attributes)
                verdict = prefix_verdict(intent, intent_peer, prefix, problems[key])
            if verdict == "accept":
                accepted[prefix] = path
                rejected.pop(prefix, None)
            else:
                accepted.pop(prefix, None)
                rejected[prefix] = verdict
            holders = by_prefix.get(prefix)
            if holders is None:
                by_prefix[prefix] = {peer}
            else:
                holders.add(peer)

    def _rebuild_best(self, prefixes: Iterable[IPNetwork]) -> None:
        by_prefix, accepted, best_paths = self._by_prefix, self.accepted, self._best
        nothing: dict[IPNetwork, Path] = {}
        for prefix in prefixes:
            holders = by_prefix.get(prefix, ())
            if len(holders) == 1:  # the usual case, without building a list per prefix
                (holder,) = holders
                only = accepted.get(holder, nothing).get(prefix)
                candidates = [] if only is None else [only]
            else:
                candidates = [path for p in holders
                              if (path := accepted.get(p, nothing).get(prefix)) is not None]
            if not candidates:
                still = {p for p in holders if prefix in self.adj_in.get(p, nothing)}
                if still:
                    by_prefix[prefix] = still
                else:
                    by_prefix.pop(prefix, None)
                if best_paths.pop(prefix, None) is not None:
                    self.version += 1
                    self._changed.add(prefix)
                continue
            # One path (the usual case) needs no ranking; a path compared with itself is equal.
            best = candidates[0] if len(candidates) == 1 else self._best_of(candidates)
            current = best_paths.get(prefix)
            if current is not best and current != best:
                best_paths[prefix] = best
                self.version += 1
                if current is None or (current.next_hop, current.peer) != (best.next_hop,
                                                                           best.peer):
                    self._changed.add(prefix)

    def _best_of(self, candidates: list[Path]) -> Path:
        """The BGP decision process (RFC 4271 9.1.2.2, RFC 4456 9), in BIRD's order: fresh
        before stale, then higher local preference, shorter AS path, lower origin, lower MED,
        eBGP over iBGP, lower router ID (the ORIGINATOR_ID where a reflector set one), shorter
        CLUSTER_LIST, lower peer address. MED compares only paths from the same neighbouring
        AS, so it cannot be one sort key over all of them: each neighbouring AS's best is
        chosen with MED, then those are compared without it (deterministic MED), so the
        choice does not depend on the order the paths arrived in."""
        by_neighbour: dict[int | None, list[Path]] = {}
        for path in candidates:
            as_path = path.attributes.as_path
            # The neighbouring AS: the first on the path; None: from our own AS.
            by_neighbour.setdefault(as_path[0] if as_path else None, []).append(path)
        with_med = functools.partial(self._rank, med=True)
        return min((min(paths, key=with_med) for paths in by_neighbour.values()),
                   key=self._rank)

    def _rank(self, path: Path, *, med: bool = False) -> tuple[object, ...]:
        """Lower is better; see `_best_of`. A missing local preference counts as 100 and a
        missing MED as 0 (RFC 4271 9.1.2.2 c)."""
        a = path.attributes
        peer = self._peers.get(path.peer)
        return (path.stale, -(a.local_pref if a.local_pref is not None else 100),
                len(a.as_path), _ORIGIN_RANK.get(a.origin, 3),
                (a.med or 0) if med else 0, 0 if peer is not None and peer.ebgp else 1,
                _router_id_rank(a.originator_id or self.router_ids.get(path.peer)),
                len(a.cluster_list), path.peer.version, address_int(path.peer))


_ORIGIN_RANK = {"igp": 0, "egp": 1, "incomplete": 2}


@functools.lru_cache(maxsize=4096)  # parsing the text costs more than the rest of _rank
def _router_id_rank(router_id: str | None) -> int:
    """A BGP identifier compares as a 32-bit number (10.0.0.9 < 10.0.0.10); unknown ranks last."""
    try:
        return int(ipaddress.IPv4Address(router_id or ""))
    except ValueError:
        return 1 << 32
