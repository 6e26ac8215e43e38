"""ExaBGP's API output, one line at a time, into typed events.

Pinned to the JSON API version 5.0.0 that exabgp 5.0.x prints in its `exabgp` field. Lines that
are not what we expect raise `MessageError` with the reason; the caller logs and skips them, so a
peer sending garbage (or an ExaBGP surprise) never stops the sidecar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from bgp.intent import IPAddress, IPNetwork
from wren.prefix import parse_address, parse_prefix

__all__ = [
    "API_VERSION",
    "Ack",
    "Attributes",
    "EndOfRib",
    "Event",
    "MessageError",
    "NeighborInfo",
    "NeighborList",
    "Notification",
    "OpenReceived",
    "PeerState",
    "RouteUpdate",
    "parse_line",
]

API_VERSION = "5.0.0"


class MessageError(ValueError):
    """An API line we cannot use."""


@dataclass(frozen=True, slots=True)
class Ack:
    ok: bool


@dataclass(frozen=True, slots=True)
class PeerState:
    peer: IPAddress
    state: str  # up | down | connected
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OpenReceived:
    peer: IPAddress
    router_id: str
    asn: int
    restart_time: int  # the peer's graceful-restart time; 0 when it does not do GR


@dataclass(frozen=True, slots=True)
class Attributes:
    local_pref: int | None = None
    med: int | None = None
    as_path: tuple[int, ...] = ()
    communities: tuple[str, ...] = ()
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()
    origin: str = "igp"


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    peer: IPAddress
    announced: tuple[tuple[IPNetwork, IPAddress], ...] = ()  # (prefix, next hop)
    withdrawn: tuple[IPNetwork, ...] = ()
    attributes: Attributes = field(default_factory=Attributes)


@dataclass(frozen=True, slots=True)
class EndOfRib:
    peer: IPAddress
    family: str


@dataclass(frozen=True, slots=True)
class Notification:
    peer: IPAddress
    code: int
    subcode: int
    data: str = ""


@dataclass(frozen=True, slots=True)
class NeighborInfo:
    peer: IPAddress
    up: bool
    fsm: str  # ExaBGP's FSM state name, e.g. ESTABLISHED, ACTIVE, CONNECT, IDLE
    router_id: str = ""


@dataclass(frozen=True, slots=True)
class NeighborList:
    """The reply to `show neighbor json`: every configured peer and its session state."""

    neighbors: tuple[NeighborInfo, ...]


Event = Ack | PeerState | OpenReceived | RouteUpdate | EndOfRib | Notification | NeighborList


def parse_line(line: str) -> Event | None:
    """One line from ExaBGP; None for lines worth nothing (e.g. `connected` noise).

    Raises only `MessageError`: a field of the wrong type deep in a message (say a non-numeric
    AS number) would otherwise surface as a bare ValueError or TypeError that the caller does not
    expect to skip.
    """
    try:
        return _parse(line)
    except MessageError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise MessageError(f"malformed message ({err}): {line.strip()[:120]!r}") from None


def _parse(line: str) -> Event | None:
    text = line.strip()
    if text in ("done", "error"):
        return Ack(ok=text == "done")
    if not text or text.endswith(" in progress"):  # "reload in progress" and the like
        return None
    try:
        msg = json.loads(text)
    except ValueError:
        raise MessageError(f"not JSON: {text[:120]!r}") from None
    if isinstance(msg, list):
        return _neighbor_list(msg)
    if not isinstance(msg, dict):
        raise MessageError(f"unexpected JSON {type(msg).__name__}")
    version = msg.get("exabgp")
    if version != API_VERSION:
        raise MessageError(f"API version {version!r}, this sidecar speaks {API_VERSION}")
    kind = msg.get("type")
    if kind == "notification" and msg.get("notification") == "shutdown":
        return None  # ExaBGP itself is stopping; it names no peer (the process exit tells us)
    neighbor = _obj(msg, "neighbor")
    peer = _addr(_obj(neighbor, "address").get("peer"), "neighbor.address.peer")
    if kind == "state":
        state = neighbor.get("state")
        if state not in ("up", "down", "connected", "fsm"):
            raise MessageError(f"peer {peer}: unknown state {state!r}")
        if state not in {"up", "down"}:
            return None
        return PeerState(peer=peer, state=state, reason=str(neighbor.get("reason", "")))
    if kind == "open":
        if neighbor.get("direction") != "receive":
            return None
        return _open(peer, _obj(neighbor, "open"))
    if kind == "update":
        if neighbor.get("direction", "receive") != "receive":
            return None
        message = _obj(neighbor, "message")
        if "eor" in message:
            eor = _obj(message, "eor")
            return EndOfRib(peer=peer, family=f"{eor.get('afi')} {eor.get('safi')}")
        return _update(peer, _obj(message, "update"))
    if kind == "notification":
        note = neighbor.get("notification") or neighbor.get("message", {}).get("notification", {})
        if not isinstance(note, dict):
            note = {}
        return Notification(peer=peer, code=int(note.get("code", 0)),
                            subcode=int(note.get("subcode", 0)), data=str(note.get("data", "")))
    if kind in ("keepalive", "signal", "negotiated", "operational", "refresh"):
        return None
    raise MessageError(f"peer {peer}: unknown message type {kind!r}")


def _neighbor_list(items: list[Any]) -> NeighborList:
    out: list[NeighborInfo] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("peer"), dict):
            raise MessageError("show neighbor reply: an item without a peer object")
        peer = item["peer"]
        out.append(NeighborInfo(peer=_addr(peer.get("address"), "show neighbor peer.address"),
                                up=str(item.get("fsm", "")).lower() == "established",
                                fsm=str(item.get("fsm", "")),
                                router_id=str(peer.get("id") or "")))
    return NeighborList(neighbors=tuple(out))


def _open(peer: IPAddress, body: dict[str, Any]) -> OpenReceived:
    restart = 0
    caps = body.get("capabilities", {})
    if isinstance(caps, dict):
        for cap in caps.values():
            if isinstance(cap, dict) and cap.get("name") == "graceful restart":
                restart = int(cap.get("time", 0))
    return OpenReceived(peer=peer, router_id=str(body.get("router_id", "")),
                        asn=int(body.get("asn", 0)), restart_time=restart)


def _update(peer: IPAddress, body: dict[str, Any]) -> RouteUpdate:
    attrs = _attributes(body.get("attribute", {}), peer)
    announced: list[tuple[IPNetwork, IPAddress]] = []
    for family, by_hop in (body.get("announce") or {}).items():
        if family not in ("ipv4 unicast", "ipv6 unicast"):
            continue
        if not isinstance(by_hop, dict):
            raise MessageError(f"peer {peer}: announce {family} is not an object")
        for hop, nlris in by_hop.items():
            next_hop = _addr(hop, f"peer {peer}: next hop")
            if next_hop.version == 6 and next_hop.is_link_local:
                continue  # IPv6 NLRIs repeat under the link-local next hop
            announced.extend(zip(_nlris(nlris, peer), repeat(next_hop)))
    withdrawn: list[IPNetwork] = []
    for family, nlris in (body.get("withdraw") or {}).items():
        if family in ("ipv4 unicast", "ipv6 unicast"):
            withdrawn.extend(_nlris(nlris, peer))
    return RouteUpdate(peer=peer, announced=tuple(announced), withdrawn=tuple(withdrawn),
                       attributes=attrs)


def _nlris(items: Any, peer: IPAddress) -> list[IPNetwork]:
    """The prefixes of `[{"nlri": text}, ...]` (or of `[text, ...]`): in one comprehension
    (an UPDATE brings hundreds), and one by one only to name a bad one."""
    if not isinstance(items, list):
        raise MessageError(f"peer {peer}: NLRI list is not a list")
    try:
        return [parse_prefix(item["nlri"] if type(item) is dict else item) for item in items]
    except (ValueError, TypeError, KeyError, AttributeError):
        pass  # not text, no "nlri", not a prefix: which one, below
    out: list[IPNetwork] = []
    for item in items:
        raw = item.get("nlri") if isinstance(item, dict) else item
        try:
            out.append(parse_prefix(str(raw)))
        except ValueError:
            raise MessageError(f"peer {peer}: bad NLRI {raw!r}") from None
    return out


def _attributes(raw: Any, peer: IPAddress) -> Attributes:
    if not isinstance(raw, dict):
        raise MessageError(f"peer {peer}: attribute is not an object")
    path: list[int] = []
    as_path = raw.get("as-path")
    if isinstance(as_path, dict):  # {"0": {"element": "as-sequence", "value": [..]}}
        for key in sorted(as_path, key=lambda k: int(k) if str(k).isdigit() else 0):
            seg = as_path[key]
            if isinstance(seg, dict):
                path.extend(int(x) for x in seg.get("value", []))
    elif isinstance(as_path, list):
        path.extend(int(x) for x in as_path)
    communities: list[str] = []
    for pair in raw.get("community", []) or []:
        if isinstance(pair, list) and len(pair) == 2:
            communities.append(f"{pair[0]}:{pair[1]}")
    for triple in raw.get("large-community", []) or []:
        if isinstance(triple, list) and len(triple) == 3:
            communities.append(f"{triple[0]}:{triple[1]}:{triple[2]}")
    cluster = raw.get("cluster-list", []) or []
    return Attributes(
        local_pref=_opt_int(raw.get("local-preference")),
        med=_opt_int(raw.get("med")),
        as_path=tuple(path),
        communities=tuple(communities),
        originator_id=str(raw["originator-id"]) if raw.get("originator-id") else None,
        cluster_list=tuple(str(c) for c in cluster) if isinstance(cluster, list) else (),
        origin=str(raw.get("origin", "igp")),
    )


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise MessageError(f"{key}: missing or not an object")
    return value


def _addr(value: Any, where: str) -> IPAddress:
    try:
        return parse_address(str(value))
    except ValueError:
        raise MessageError(f"{where}: {value!r} is not an address") from None
