"""`wren-bgp`: runs ExaBGP for this node and is the brain behind its API (BIRD's role).

    agent ──intent──► ┌─────────── wren-bgp (this process, long-lived) ───────────┐
          ◄─routes─── │ one loop: Rib (learned, best path, reflection, GR),       │
     bgp.sock         │ Adj-RIB-Out per peer, ack-paced Pacer, status file        │
                      └──────▲─────────────────────────────────┬─────────────────┘
                exabgp-api.sock (events)              (commands)│
                      relay (ExaBGP's API process: a pipe) ◄────┘
                      ExaBGP (child; restarted with backoff; dies with us)

The brain lives here and not in ExaBGP's helper so that it survives ExaBGP restarts: when ExaBGP
dies, learned paths are kept as stale for the graceful-restart time and the agent sees no change
if the sessions come back in time. Threads only read sockets and enqueue; the loop decides.
The last intent is cached in the run dir so a restarted sidecar resumes its sessions before the
agent reconnects. It never writes the kernel (the agent does) nor reads the datastore.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bgp.channel import Conn, Listener
from bgp.commands import Pacer, announce_commands, diff_commands
from bgp.exabgp_config import render, render_env
from bgp.exabgp_json import (
    Ack,
    EndOfRib,
    MessageError,
    NeighborList,
    Notification,
    OpenReceived,
    PeerState,
    RouteUpdate,
    parse_line,
)
from bgp.intent import BGPIntent, IntentError, IPAddress, IPNetwork, PeerIntent
from bgp.probe import probe
from bgp.rib import OutRoute, Rib
from bgp.status import PeerStatus, SidecarStatus, write_status
from wren.gc_tuning import freeze_burst, tune_for_bursts
from wren.log import configure_logging, get_logger
from wren.paths import node_run_dir
from wren.prefix import pack_prefix

__all__ = ["Sidecar", "SidecarConfig", "main"]

_log = get_logger("wren-bgp")

STATUS_INTERVAL = 2.0
POLL_INTERVAL = 10.0  # `show neighbor json` for FSM states in the status
# Changed prefixes after which a drain stops to publish a delta: with ExaBGP's lines queued
# faster than we read them, the agent would otherwise wait for the whole backlog.
PUBLISH_AT = 1000
STABLE_AFTER = 60.0  # ExaBGP up this long resets the restart backoff
BIND_RECHECK = 5.0  # seconds between looks for a node address (IPv4 or IPv6) not on the host


@dataclass(frozen=True)
class SidecarConfig:
    node_name: str
    run_dir: Path
    #: The command that starts ExaBGP (the config file is appended): by default ExaBGP's own
    #: entry point through `bgp.exabgp_main`; `WREN_EXABGP` names another executable.
    exabgp: tuple[str, ...]
    python: str = sys.executable
    restart_time: int = 120  # how long learned routes outlive our own ExaBGP's death

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SidecarConfig:
        env = dict(os.environ if env is None else env)
        import socket

        node = env.get("NODENAME") or socket.gethostname()
        custom = env.get("WREN_EXABGP")
        exabgp = (custom,) if custom else (sys.executable, "-m", "bgp.exabgp_main")
        return cls(node_name=node, run_dir=node_run_dir(node, env), exabgp=exabgp)

    @property
    def agent_socket(self) -> Path:
        return self.run_dir / "bgp.sock"

    @property
    def relay_socket(self) -> Path:
        return self.run_dir / "exabgp-api.sock"

    @property
    def intent_cache(self) -> Path:
        return self.run_dir / "bgp-intent.json"

    @property
    def config_file(self) -> Path:
        return self.run_dir / "exabgp.conf"


def _placeholder(node: str) -> BGPIntent:
    zero = ipaddress.IPv4Address(0)
    return BGPIntent(node=node, router_id=zero, local_as=64512, address=zero)


def can_bind(address: IPAddress) -> bool:
    """Is `address` on this host and usable (an IPv6 address still in duplicate address
    detection is not)? A bind to port 0 of a socket closed at once: nothing is sent."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((str(address), 0))
    except OSError:
        return False
    return True


def _bind_of(intent: BGPIntent, usable: Callable[[IPAddress], bool] = can_bind
             ) -> tuple[tuple[str, ...], int]:
    """Where ExaBGP listens. ExaBGP exits when it cannot bind one of its addresses, so an
    IPv6 address that is not on the host (yet) is left out: IPv4 sessions must not die of a
    wrong `ipv6Address`; IPv6 sessions are then only dialled by us until it appears."""
    addresses = [str(intent.address)]
    if intent.address6 is not None and usable(intent.address6):
        addresses.append(str(intent.address6))
    return tuple(addresses), intent.listen_port


def _by_next_hop(routes: Iterable[tuple[IPNetwork, tuple[IPAddress, IPAddress] | None]]
                 ) -> list[list[Any]]:
    """[[next hop, peer, [prefix, ...]], ...]: thousands of prefixes share a handful of next
    hops, and a triple per route was ~3 JSON values more per route to write and to read.
    Prefixes in the channel's form (`pack_prefix`: an IPv4 prefix as an int)."""
    groups: dict[tuple[IPAddress, IPAddress], list[int | str]] = {}
    for prefix, best in routes:
        if best is not None:
            group = groups.get(best)
            if group is None:
                group = groups[best] = []
            group.append(pack_prefix(prefix))
    return [[str(hop), str(peer), prefixes] for (hop, peer), prefixes in groups.items()]


class Sidecar:
    def __init__(self, cfg: SidecarConfig, *, clock: Callable[[], float] = time.monotonic,
                 usable: Callable[[IPAddress], bool] = can_bind) -> None:
        self.cfg = cfg
        self._clock = clock
        self._usable = usable
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.intent: BGPIntent | None = self._load_cache()
        self.rib = Rib(self.intent or _placeholder(cfg.node_name), clock=clock)
        self.status: dict[IPAddress, PeerStatus] = {}
        self.up: set[IPAddress] = set()
        self.eor_from: set[IPAddress] = set()
        self.sent: dict[IPAddress, dict[IPNetwork, OutRoute]] = {}
        self.relay: Conn | None = None
        self.pacer = Pacer(self._write_relay)
        self.agents: set[Conn] = set()
        self.proc: subprocess.Popen[bytes] | None = None
        self._proc_started = 0.0
        self._bind: tuple[tuple[str, ...], int] | None = None
        self._bind_check_at = 0.0  # next look for an IPv6 address missing from the bind list
        self._address_missing: IPAddress | None = None  # ExaBGP waits for this IPv4 address
        self._restart_at: float | None = None
        self._backoff = 1.0
        self._started = clock()
        self._published = -1
        self._complete_sent = False
        self._exports_dirty = True
        self._status_at = 0.0
        self._poll_at = 0.0
        self._stopping = False
        self._resync = False
        self._status_dirty = True
        self._status_soon = 0.0
        self._sync_status()

    # -- lifecycle -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        agents = Listener(self.cfg.agent_socket, self._agent_thread, name="agent-channel")
        relay = Listener(self.cfg.relay_socket, self._relay_thread, name="exabgp-relay")
        agents.start()
        relay.start()
        if self.intent is not None:
            self._start_exabgp()
        _log.info("started", node=self.cfg.node_name, socket=str(self.cfg.agent_socket),
                  cached_intent=self.intent is not None)
        try:
            while not stop.is_set():
                self._drain(timeout=self._timeout())
                self._tick()
        finally:
            self._stopping = True
            self._stop_exabgp()
            agents.close()
            relay.close()
            for conn in list(self.agents):
                conn.close()
            _log.info("stopped", node=self.cfg.node_name)

    def wake(self) -> None:
        self.events.put(("wake",))

    def _timeout(self) -> float:
        now = self._clock()
        deadlines = [now + 1.0]
        for d in (self._restart_at, self.rib.next_deadline()):
            if d is not None:
                deadlines.append(d)
        return max(0.0, min(deadlines) - now)

    def _drain(self, *, timeout: float) -> None:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        self.handle(event)
        for _ in range(50_000):
            if self.rib.pending_changes >= PUBLISH_AT:
                return  # let the agent program these while we read on
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self.handle(event)

    # -- threads: read and enqueue only ------------------------------------------------------
    def _agent_thread(self, conn: Conn) -> None:
        self.events.put(("agent", conn))
        for line in conn.lines():
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict) or msg.get("type") != "intent":
                    raise IntentError(f"unknown message {str(msg)[:80]!r}")
                intent = BGPIntent.from_json(msg.get("intent") or {})
            except (ValueError, IntentError) as err:
                _log.warning("bad message from the agent; ignored", error=str(err))
                try:
                    conn.send({"type": "error", "error": str(err)})
                except OSError:
                    break
                continue
            self.events.put(("intent", intent))
        self.events.put(("agent-gone", conn))

    def _relay_thread(self, conn: Conn) -> None:
        self.events.put(("relay", conn))
        for line in conn.lines():
            self.events.put(("line", conn, line))
        self.events.put(("relay-gone", conn))

    def _waiter(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        self.events.put(("exabgp-exit", proc, code))

    # -- the loop --------------------------------------------------------------------------
    def handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "line":
            if event[1] is self.relay:
                self._on_line(event[2])
        elif kind == "intent":
            self._on_intent(event[1])
        elif kind == "agent":
            self.agents.add(event[1])
            self._send_routes(event[1])
        elif kind == "agent-gone":
            self.agents.discard(event[1])
            event[1].close()
        elif kind == "relay":
            self._on_relay(event[1])
        elif kind == "relay-gone":
            if event[1] is self.relay:
                self.relay = None
                self.pacer.reset()
            event[1].close()
        elif kind == "exabgp-exit":
            self._on_exabgp_exit(event[1], event[2])

    def _tick(self) -> None:
        now = self._clock()
        if self.rib.expire():
            _log.info("graceful restart time over; stale routes removed")
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_at = None
            self._start_exabgp()
        if self.proc is not None and now - self._proc_started > STABLE_AFTER:
            self._backoff = 1.0
        if self._rebind_due(now):
            _log.info("IPv6 address now on this host; restarting ExaBGP to listen on it too")
            self._stop_exabgp()
            self._start_exabgp()
        if self._exports_dirty or (self.intent and self.intent.cluster_id is not None
                                   and self.rib.version != self._published):
            self._exports_dirty = False
            self._export_all()
        complete = self._complete()
        if self.rib.version != self._published or complete != self._complete_sent:
            # Every drained burst of ExaBGP lines becomes one delta: the agent programs the
            # first routes while ExaBGP still parses the rest (waiting to coalesce bursts, and
            # re-sending the whole set each time, cost ~0.5 s over 10,000 prefixes).
            self._published = self.rib.version
            self._complete_sent = complete
            delta = self._delta_message(self.rib.take_changes(), complete)
            for conn in list(self.agents):
                self._send(conn, delta)
            freeze_burst()  # the paths a burst of updates left live as long as the routes
        if self.relay is not None and now >= self._poll_at and self.pacer.idle:
            self._poll_at = now + POLL_INTERVAL
            self.pacer.send(["show neighbor json"])
        if now >= self._status_at or (self._status_dirty and now >= self._status_soon):
            self._status_at = now + STATUS_INTERVAL
            self._status_soon = now + 0.2
            self._status_dirty = False
            self._write_status()

    # -- agent side ------------------------------------------------------------------------
    def _on_intent(self, intent: BGPIntent) -> None:
        for warning in intent.warnings:
            _log.warning("intent", detail=warning)
        if intent == self.intent:
            return
        old = self.intent
        self.intent = intent
        self._save_cache(intent)
        self.rib.set_intent(intent)
        wanted = {p.address for p in intent.peers}
        for peer in list(self.up):
            if peer not in wanted:
                self.up.discard(peer)
        for peer in list(self.sent):
            if peer not in wanted:
                del self.sent[peer]
        self._sync_status()
        self._exports_dirty = True
        bind = _bind_of(intent, self._usable)
        if self.proc is None:
            if self._restart_at is None or self._address_missing is not None:
                self._restart_at = None  # a corrected node address is tried at once
                self._start_exabgp()
        elif bind != self._bind:
            _log.info("node address or port changed; restarting ExaBGP", bind=" ".join(bind[0]),
                      port=bind[1])
            self._stop_exabgp()
            self._start_exabgp()
        elif old is None or render(old, self._helper()) != render(intent, self._helper()):
            self._write_config()
            self.pacer.send(["reload"])
            _log.info("peers changed; ExaBGP reloads (unchanged sessions stay up)",
                      peers=len(intent.peers))

    def _rebind_due(self, now: float) -> bool:
        """ExaBGP runs without our IPv6 address (it was not usable at start) and it is now:
        checked every BIND_RECHECK seconds, since only a restart changes where ExaBGP listens."""
        intent = self.intent
        if (self.proc is None or intent is None or intent.address6 is None
                or self._bind is None or str(intent.address6) in self._bind[0]
                or now < self._bind_check_at):
            return False
        self._bind_check_at = now + BIND_RECHECK
        return self._usable(intent.address6)

    def _complete(self) -> bool:
        """Every peer sent End-of-RIB (or our restart time is over): routes missing now are
        really gone, so the agent may drop what it kept from before a restart."""
        peers = [p.address for p in (self.intent.peers if self.intent else ())]
        return all(p in self.eor_from for p in peers) or (
            self._clock() - self._started > self.cfg.restart_time)

    def _routes_message(self) -> dict[str, Any]:
        """The whole learned set: what a newly connected agent gets first."""
        return {"type": "routes", "complete": self._complete(),
                "via": _by_next_hop(self.rib.learned().items())}

    @staticmethod
    def _delta_message(changes: dict[IPNetwork, tuple[IPAddress, IPAddress] | None],
                       complete: bool) -> dict[str, Any]:
        """What changed since the last message: routes set (by next hop and peer) and
        prefixes withdrawn. Each entry is absolute, so applying one twice does no harm."""
        withdrawn = [pack_prefix(prefix) for prefix, best in changes.items() if best is None]
        return {"type": "routes", "complete": complete, "delta": True,
                "via": _by_next_hop(changes.items()), "withdrawn": withdrawn}

    def _send_routes(self, conn: Conn) -> None:
        self._send(conn, self._routes_message())

    def _send(self, conn: Conn, message: dict[str, Any]) -> None:
        try:
            conn.send(message)
        except OSError:
            self.agents.discard(conn)
            conn.close()

    # -- ExaBGP side -----------------------------------------------------------------------
    def _helper(self) -> list[str]:
        return [self.cfg.python, "-m", "bgp.relay", "--socket", str(self.cfg.relay_socket)]

    def _write_config(self) -> None:
        text = render(self.intent, self._helper())
        tmp = self.cfg.config_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.cfg.config_file)

    def _start_exabgp(self) -> None:
        if self._stopping or self._wait_for_node_address():
            return
        self._write_config()
        env = dict(os.environ)
        env.update(self._exabgp_env())
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [*self.cfg.exabgp, str(self.cfg.config_file)], env=env,
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self._proc_started = self._clock()
        threading.Thread(target=self._waiter, args=(self.proc,), daemon=True).start()
        _log.info("exabgp started", pid=self.proc.pid,
                  bind=" ".join(self._bind[0]) if self._bind else None,
                  port=self._bind[1] if self._bind else None)

    def _wait_for_node_address(self) -> bool:
        """True (and ExaBGP is not to start) while the node's IPv4 address is not on the host.
        ExaBGP exits when it cannot bind it, so with a wrong `spec.bgp.ipv4Address` (or one
        not configured yet) it would restart in a loop. Instead the peers' status says why,
        and the next look is due in BIND_RECHECK seconds (or when the intent changes)."""
        intent = self.intent
        if intent is None or self._usable(intent.address):
            if self._address_missing is not None:
                _log.info("node address now on this host; starting ExaBGP",
                          address=str(self._address_missing))
                self._address_missing = None
            return False
        self._restart_at = self._clock() + BIND_RECHECK
        if self._address_missing != intent.address:
            self._address_missing = intent.address
            _log.error("node address is not on this host; ExaBGP waits for it",
                       address=str(intent.address), node=self.cfg.node_name,
                       field="spec.bgp.ipv4Address")
        for peer in self.status:  # peers added since are told too
            self._set_state(peer, None, self._waiting_for())
        return True

    def _waiting_for(self) -> str:
        """Why ExaBGP is held back, for the peers' status and the sidecar's; "" if it is not."""
        if self._address_missing is None:
            return ""
        return f"node address {self._address_missing} (spec.bgp.ipv4Address) is not on this host"

    def _exabgp_env(self) -> dict[str, str]:
        """ExaBGP's settings, listening only where a socket can bind now (`_bind_of`)."""
        if self.intent is None:
            self._bind = None
            return render_env(None, run_dir=str(self.cfg.run_dir))
        self._bind = _bind_of(self.intent, self._usable)
        address6 = self.intent.address6
        if address6 is not None and str(address6) not in self._bind[0]:
            _log.warning("IPv6 address not on this host (or still tentative); ExaBGP listens "
                         "on IPv4 only until it is", address6=str(address6))
        return render_env(self.intent, run_dir=str(self.cfg.run_dir), bind=self._bind[0])

    def _stop_exabgp(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()  # ExaBGP blocked on a write ignores SIGTERM (notes/exabgp5.md)
            proc.wait()
        self._on_sessions_lost("exabgp stopped")

    def _on_exabgp_exit(self, proc: subprocess.Popen[bytes], code: int) -> None:
        if proc is not self.proc:
            return
        self.proc = None
        _log.warning("exabgp exited; restarting", code=code, after=self._backoff)
        self._on_sessions_lost(f"exabgp exited ({code})")
        self._restart_at = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, 30.0)

    def _on_sessions_lost(self, why: str) -> None:
        self.rib.all_down(self.cfg.restart_time)
        for peer in list(self.up):
            self._set_state(peer, "start", why)
        self.up.clear()
        self.sent.clear()
        self.eor_from.clear()
        self.pacer.reset()

    def _on_relay(self, conn: Conn) -> None:
        if self.relay is not None:
            self.relay.close()
        self.relay = conn
        self.pacer.reset()
        # A new relay (ExaBGP restarted it, or ExaBGP itself restarted) heard nothing so far:
        # ask which sessions are up; the reply re-syncs everything (`_on_neighbors`).
        self._poll_at = self._clock() + POLL_INTERVAL
        self._resync = True
        self.pacer.send(["show neighbor json"])

    def _write_relay(self, lines: list[str]) -> None:
        if self.relay is None:
            self.pacer.reset()
            return
        try:
            self.relay.send_lines(lines)
        except OSError as err:
            _log.warning("relay write failed", error=str(err))
            self.relay.close()

    def _on_line(self, line: str) -> None:
        try:
            event = parse_line(line)
        except MessageError as err:
            _log.warning("unusable ExaBGP message; skipped", error=str(err), line=line[:200])
            return
        except (TypeError, KeyError, AttributeError) as err:
            _log.warning("malformed ExaBGP message; skipped", error=repr(err), line=line[:200])
            return
        if event is None:
            return
        if isinstance(event, Ack):
            self.pacer.on_ack(event.ok)
        elif isinstance(event, RouteUpdate):
            self.rib.on_update(event.peer, event.announced, event.withdrawn, event.attributes)
        elif isinstance(event, PeerState):
            if event.state == "up":
                self._on_up(event.peer)
            else:
                self._on_down(event.peer, event.reason or "down")
        elif isinstance(event, EndOfRib):
            self.rib.on_end_of_rib(event.peer)
            self.eor_from.add(event.peer)
        elif isinstance(event, OpenReceived):
            self.rib.on_open(event.peer, event.router_id, event.restart_time)
        elif isinstance(event, Notification):
            self._set_state(event.peer, None, f"notification {event.code}/{event.subcode}")
        elif isinstance(event, NeighborList):
            self._on_neighbors(event)

    def _peer(self, address: IPAddress) -> PeerIntent | None:
        for peer in self.intent.peers if self.intent else ():
            if peer.address == address:
                return peer
        return None

    def _on_up(self, address: IPAddress) -> None:
        peer = self._peer(address)
        if peer is None:
            return
        self.up.add(address)
        self.eor_from.discard(address)
        self._set_state(address, "up", "Established")
        # The whole set on every session start (ExaBGP drops duplicates), then End-of-RIB:
        # a peer doing graceful restart sweeps our stale routes only after they are all back.
        wanted = self.rib.wanted_out(peer)
        self.sent[address] = wanted
        family = "ipv4 unicast" if address.version == 4 else "ipv6 unicast"
        self.pacer.send([*announce_commands(address, wanted.values()),
                         f"neighbor {address} announce eor {family}"])
        _log.info("peer up", peer=str(address), type=peer.type, announced=len(wanted))

    def _on_down(self, address: IPAddress, reason: str) -> None:
        was_up = address in self.up
        self.up.discard(address)
        self.sent.pop(address, None)
        self.eor_from.discard(address)
        self.rib.on_down(address)
        self._set_state(address, "start", reason)
        if was_up:
            _log.info("peer down", peer=str(address), reason=reason,
                      stale=address in self.rib.stale_until)

    def _on_neighbors(self, reply: NeighborList) -> None:
        # Only the first reply after a relay (re)connects re-syncs sessions: later ones are for
        # the status only, since ExaBGP's up/down events reach a connected relay reliably and
        # a reply can be older than an event that overtook it.
        resync, self._resync = self._resync, False
        for info in reply.neighbors:
            if info.router_id and info.router_id != "0.0.0.0":
                self.rib.router_ids.setdefault(info.peer, info.router_id)
            if not resync:
                pass
            elif info.up and info.peer not in self.up:
                self._on_up(info.peer)  # we missed its `up` (new relay): resend, ask again
                family = "ipv4 unicast" if info.peer.version == 4 else "ipv6 unicast"
                self.pacer.send([f"neighbor {info.peer} announce route-refresh {family}"])
            elif not info.up and info.peer in self.up:
                self._on_down(info.peer, "down (missed)")
            status = self.status.get(info.peer)
            if status is not None and info.peer not in self.up and info.fsm:
                status.info = info.fsm.capitalize()

    def _export_all(self) -> None:
        for address in sorted(self.up, key=lambda a: (a.version, a)):
            peer = self._peer(address)
            if peer is None:
                continue
            wanted = self.rib.wanted_out(peer)
            commands = diff_commands(address, self.sent.get(address, {}), wanted)
            if commands:
                self.sent[address] = wanted
                self.pacer.send(commands)

    # -- status ------------------------------------------------------------------------------
    def _sync_status(self) -> None:
        self._status_dirty = True
        wanted = {p.address: p for p in (self.intent.peers if self.intent else ())}
        for address in list(self.status):
            if address not in wanted:
                del self.status[address]
        for address, peer in wanted.items():
            st = self.status.get(address)
            if st is None:
                self.status[address] = PeerStatus(address=str(address), type=peer.type,
                                                  name=peer.name)
            else:
                st.type, st.name = peer.type, peer.name

    def _set_state(self, address: IPAddress, state: str | None, info: str) -> None:
        self._status_dirty = True
        st = self.status.get(address)
        if st is None:
            return
        if state is not None and state != st.state:
            st.state = state
            st.since = time.time()
        st.info = info

    def _write_status(self) -> None:
        for address, st in self.status.items():
            counters = self.rib.counters(address)
            st.received, st.accepted, st.rejected = (counters.received, counters.accepted,
                                                     counters.rejected)
        try:
            write_status(self.cfg.run_dir, SidecarStatus(
                node=self.cfg.node_name, pid=os.getpid(),
                exabgp_pid=self.proc.pid if self.proc else None, updated=time.time(),
                peers=sorted(self.status.values(), key=lambda s: s.address),
                learned=self.rib.learned_count(),
                announced=len(self.intent.announce) if self.intent else 0,
                exabgp_waiting=self._waiting_for(),
            ))
        except OSError as err:
            _log.warning("cannot write status", error=str(err))

    # -- the intent cache ---------------------------------------------------------------------
    def _load_cache(self) -> BGPIntent | None:
        try:
            raw = json.loads(self.cfg.intent_cache.read_text())
            intent = BGPIntent.from_json(raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, IntentError) as err:
            _log.warning("cached intent unusable; waiting for the agent", error=str(err))
            return None
        return intent if intent.node == self.cfg.node_name else None

    def _save_cache(self, intent: BGPIntent) -> None:
        tmp = self.cfg.intent_cache.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # passwords inside
            with os.fdopen(fd, "w") as f:
                json.dump(intent.to_json(), f)
            os.replace(tmp, self.cfg.intent_cache)
        except OSError as err:
            _log.warning("cannot cache the intent", error=str(err))


def _die_with_parent() -> None:
    """ExaBGP must not outlive the sidecar (Linux PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wren-bgp", description="Wren's BGP sidecar (ExaBGP).")
    probes = parser.add_mutually_exclusive_group()
    probes.add_argument("--live", action="store_true",
                        help="exit 0 if a running sidecar is looping (liveness probe)")
    probes.add_argument("--ready", action="store_true",
                        help="exit 0 if every BGP session is established (readiness probe)")
    args = parser.parse_args(argv)
    cfg = SidecarConfig.from_env()
    if args.live or args.ready:
        code, message = probe(cfg.run_dir, "live" if args.live else "ready")
        print(message, file=sys.stderr if code else sys.stdout)
        return code
    configure_logging()
    tune_for_bursts()
    stop = threading.Event()
    sidecar = Sidecar(cfg)
    pid_file = cfg.run_dir / "wren-bgp.pid"

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.info("signal received; stopping", signal=signal.Signals(signum).name)
        stop.set()
        sidecar.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        sidecar.run(stop)
    finally:
        pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
