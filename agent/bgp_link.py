"""The agent's end of the BGP channel: intent out to wren-bgp, learned routes in.

The agent computes the intent (confd's job) on every recalculation and sends it when it changed;
the sidecar sends its whole learned set when the agent connects, then what changed (routes set,
prefixes withdrawn) after every burst of BGP updates. Either side may restart.
When the channel drops, the routes last learned stay in force (the sidecar may be restarting);
after a reconnect they are merged with the new ones until the sidecar says it is complete (every
peer re-sent its table) or the graceful-restart time runs out — so a sidecar restart moves no
route.

The channel's thread only reads: each line, and the news that the channel dropped, go to the
agent's loop as work to do there, which parses them and keeps the learned state. Parsing ~1,000
prefixes per message in the reader thread had the two threads take the interpreter lock from
each other all through a learn (10 + 10 interleaved learns of 10,000 prefixes: agent CPU
0.155 → 0.130 s and 0.165 → 0.155 s; learn 190 → 174 ms and 223 → 213 ms).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from agent.agent import Agent, LearnedChanges, LearnedRoutes
from agent.calc.bgp_intent import BGPInputs, compute_intent
from agent.calc.cluster_state import ClusterState
from agent.calc.desired import DesiredDataplane, IPAddress, IPNetwork
from agent.config import AgentConfig
from bgp.channel import Conn, connect
from bgp.intent import BGPIntent
from wren.log import get_logger
from wren.model import IPAMBlock, IPPool, Node
from wren.prefix import parse_address, parse_prefix, unpack_prefixes

__all__ = ["INTENT_KINDS", "BGPChannelLink", "make_bgp_link"]

_log = get_logger("wren-agent.bgp")

SECRET_TTL = 60.0
# What compute_intent reads from the cluster state (BGPInputs).
INTENT_KINDS = ("Node", "IPPool", "IPAMBlock", "BlockAffinity", "BGPConfiguration", "BGPPeer",
                "BGPFilter")
RECONNECT = 1.0


class BGPChannelLink:
    def __init__(self, *, node_name: str, socket_path: Path, post: Callable[[object], None],
                 secret: Callable[[str, str], str | None] | None = None,
                 keep_for: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._node = node_name
        self._path = socket_path
        self._post = post
        self._secret = secret
        self._keep_for = keep_for
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._intent: BGPIntent | None = None
        self._generation: tuple[int, ...] | None = None  # of the inputs of the last intent
        self._recompute_at = 0.0
        self._secrets: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._stale: dict[IPNetwork, IPAddress] = {}
        self._stale_until = 0.0
        self._current: dict[IPNetwork, IPAddress] = {}
        self._parse = _Parser()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bgp-channel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    # -- called from the agent loop ------------------------------------------------------------
    def publish(self, state: ClusterState, desired: DesiredDataplane) -> None:
        """Recompute the intent when a resource it reads changed, or a cached password may
        have (every SECRET_TTL). Every recalculation used to rebuild it: while 10,000 routes
        were learned that was a few ms per step for nothing, and with a thousand blocks in the
        cluster it copied all of them for every pod event."""
        del desired
        now = self._clock()
        generation = state.generation(INTENT_KINDS)
        if generation == self._generation and now < self._recompute_at:
            return
        inputs = BGPInputs(
            node_name=state.node_name,
            nodes={k: v for k, v in state.of("Node").items() if isinstance(v, Node)},
            pools={k: v for k, v in state.of("IPPool").items() if isinstance(v, IPPool)},
            blocks={k: v for k, v in state.of("IPAMBlock").items() if isinstance(v, IPAMBlock)},
            affinities=state.block_affinities, config=state.bgp_configuration,
            peers=state.bgp_peers, filters=state.bgp_filters,
        )
        intent = compute_intent(inputs, self._lookup_secret)
        self._generation, self._recompute_at = generation, now + SECRET_TTL
        if intent is None or intent == self._intent:
            return
        for warning in intent.warnings:
            _log.warning("bgp intent", detail=warning)
        with self._lock:
            self._intent = intent
            conn = self._conn
        if conn is not None:
            self._send(conn, intent)

    def _lookup_secret(self, name: str, key: str) -> str | None:
        if self._secret is None:
            return None
        now = self._clock()
        hit = self._secrets.get((name, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            value = self._secret(name, key)
        except Exception as err:
            _log.warning("cannot read BGP password secret", secret=name, key=key, error=str(err))
            return hit[1] if hit else None
        self._secrets[(name, key)] = (now + SECRET_TTL, value)
        return value

    # -- the channel thread ---------------------------------------------------------------------
    def _send(self, conn: Conn, intent: BGPIntent) -> None:
        try:
            conn.send({"type": "intent", "intent": intent.to_json()})
        except OSError as err:
            _log.info("bgp channel write failed; reconnecting", error=str(err))
            conn.close()

    def _run(self) -> None:
        logged = False
        while not self._stop.is_set():
            try:
                conn = connect(self._path)
            except OSError:
                if not logged:
                    _log.info("waiting for wren-bgp", socket=str(self._path))
                    logged = True
                self._post(self._expire_stale)
                self._stop.wait(RECONNECT)
                continue
            logged = False
            with self._lock:
                self._conn = conn
                intent = self._intent
            _log.info("bgp channel connected", socket=str(self._path))
            if intent is not None:
                self._send(conn, intent)
            for line in conn.lines():
                self._post(partial(self._on_line, line))
            with self._lock:
                self._conn = None
            conn.close()
            if self._stop.is_set():
                return
            self._post(self._on_lost)

    # -- in the agent's loop --------------------------------------------------------------------
    def _on_lost(self) -> None:
        """The sidecar went away: what it taught us stays until it is back and complete."""
        self._stale = dict(self._current) | self._stale
        self._stale_until = self._clock() + self._keep_for
        _log.warning("bgp channel lost; keeping learned routes", routes=len(self._stale),
                     for_seconds=self._keep_for)

    def _on_line(self, line: str) -> None:
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            if msg.get("type") == "error":
                _log.warning("wren-bgp refused the intent", error=msg.get("error"))
                return
            if msg.get("type") != "routes":
                raise ValueError(f"unknown type {msg.get('type')!r}")
            routes = self._parse.routes(msg.get("routes", []))
            routes.update(self._parse.via(msg.get("via", [])))
            withdrawn = self._parse.prefixes(msg.get("withdrawn", []))
        except ValueError as err:
            _log.warning("bad message from wren-bgp; skipped", error=str(err), line=line[:200])
            return
        delta = bool(msg.get("delta"))
        if delta:
            for prefix in withdrawn:
                self._current.pop(prefix, None)
            self._current.update(routes)
        else:
            self._current = routes
        if msg.get("complete") and self._stale:
            self._stale = {}
            delta = False  # the kept routes go: say the whole set
        if delta:
            # Only what changed, as the agent sees it: a withdrawn prefix falls back to the
            # route kept from before a reconnect, if any.
            changes: dict[IPNetwork, IPAddress | None] = {p: self._stale.get(p)
                                                           for p in withdrawn}
            changes.update(routes)
            self._post(LearnedChanges(changes))
        self._expire_stale()
        if not delta:
            self._post(LearnedRoutes(self._stale | self._current))

    def _expire_stale(self) -> None:
        if self._stale and self._clock() >= self._stale_until:
            _log.info("bgp routes kept after the channel loss expired", routes=len(self._stale))
            self._stale = {}
            self._post(LearnedRoutes(dict(self._current)))


class _Parser:
    """Prefixes and next hops from the sidecar's messages, at ~10,000 per message: an IPv4
    prefix comes as an int (`wren.prefix.unpack_prefixes`), not as text to parse; the few
    distinct next hops are parsed once and shared, so an unchanged route keeps the very same
    objects (the calc compares by identity)."""

    def __init__(self) -> None:
        self._addresses: dict[str, IPAddress] = {}

    def routes(self, raw: Any) -> dict[IPNetwork, IPAddress]:
        if not isinstance(raw, list):
            raise ValueError("routes is not a list")
        out: dict[IPNetwork, IPAddress] = {}
        for item in raw:
            if not isinstance(item, list) or len(item) < 2:
                raise ValueError(f"route {item!r} is not [prefix, next_hop, peer]")
            out[_prefix(item[0])] = self._address(item[1])
        return out

    def via(self, raw: Any) -> dict[IPNetwork, IPAddress]:
        """[[next hop, peer, [prefix, ...]], ...]: the sidecar's grouped form."""
        if not isinstance(raw, list):
            raise ValueError("via is not a list")
        out: dict[IPNetwork, IPAddress] = {}
        for group in raw:
            if not isinstance(group, list) or len(group) != 3 or not isinstance(group[2], list):
                raise ValueError(f"via entry {str(group)[:80]} is not "
                                 "[next_hop, peer, [prefix, ...]]")
            out.update(dict.fromkeys(unpack_prefixes(group[2]), self._address(group[0])))
        return out

    def prefixes(self, raw: Any) -> list[IPNetwork]:
        if not isinstance(raw, list):
            raise ValueError("withdrawn is not a list")
        return unpack_prefixes(raw)

    def _address(self, text: Any) -> IPAddress:
        hit = self._addresses.get(text)
        if hit is None:
            if not isinstance(text, str):
                raise ValueError(f"next hop {text!r} is not an address")
            if len(self._addresses) > 4096:
                self._addresses.clear()
            hit = self._addresses[text] = parse_address(text)
        return hit


def _prefix(text: Any) -> IPNetwork:
    if not isinstance(text, str):
        raise ValueError(f"prefix {text!r} is not a string")
    return parse_prefix(text)


def make_bgp_link(cfg: AgentConfig, agent: Agent,
                  secret: Callable[[str, str], str | None] | None = None) -> BGPChannelLink:
    link = BGPChannelLink(node_name=cfg.node_name, socket_path=cfg.run_dir / "bgp.sock",
                          post=agent.events.put, secret=secret)
    link.start()
    return link
