"""BGP intent: what the agent tells the sidecar to do — peers to keep and prefixes to announce.

The agent computes it from the datastore (confd's job in Calico) and sends it over the channel;
the sidecar renders ExaBGP's configuration from it and filters what it learns with it. The wire
form is plain JSON; `from_json` is the boundary where it is checked, so everything inside the
sidecar trusts these types.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PEER_TYPES",
    "Announcement",
    "BGPIntent",
    "FilterRule",
    "IntentError",
    "PeerIntent",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PEER_TYPES = ("node-to-node mesh", "global", "node specific")


class IntentError(ValueError):
    """A malformed intent message; names the field."""


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One BGPFilter rule, already resolved to the address family it applies to."""

    action: str  # Accept | Reject
    cidr: IPNetwork | None = None
    match_operator: str | None = None  # Equal | NotEqual | In | NotIn
    min_len: int | None = None
    max_len: int | None = None


@dataclass(frozen=True, slots=True)
class PeerIntent:
    address: IPAddress
    peer_as: int
    local_as: int
    type: str  # one of PEER_TYPES
    name: str = ""  # the BGPPeer (or node) that asked for it, for status and logs
    port: int = 179
    passive: bool = False  # the other side dials (Calico: wait for a greater address, as text)
    password: str | None = None
    source_address: IPAddress | None = None
    restart_time: int = 120  # graceful restart, seconds; 0 disables
    keepalive_time: int | None = None
    ttl_security: int = 0
    next_hop_mode: str = "Auto"  # Auto | Self | Keep (for reflected routes)
    rr_client: bool = False  # we reflect to it (we are a reflector, it is not in our cluster)
    is_node: bool = False  # the peer is another node of this cluster
    import_rules: tuple[FilterRule, ...] = ()
    export_rules: tuple[FilterRule, ...] = ()

    @property
    def ebgp(self) -> bool:
        return self.peer_as != self.local_as


@dataclass(frozen=True, slots=True)
class Announcement:
    prefix: IPNetwork
    communities: tuple[str, ...] = ()  # "aa:nn" standard or "aa:nn:mm" large


@dataclass(frozen=True, slots=True)
class BGPIntent:
    node: str
    router_id: ipaddress.IPv4Address
    local_as: int
    address: IPAddress  # where we listen and the next hop of what we announce
    listen_port: int = 179
    cluster_id: ipaddress.IPv4Address | None = None  # set: we are a route reflector
    peers: tuple[PeerIntent, ...] = ()
    announce: tuple[Announcement, ...] = ()
    # What iBGP peers may send us: the IP pools and service ranges. Our own blocks never.
    accept: tuple[IPNetwork, ...] = ()
    own: tuple[IPNetwork, ...] = ()
    # Our IPv6 address (Node spec.bgp.ipv6Address): we listen there too, and it is the
    # source of IPv6 sessions and the next hop of what they carry. None: no IPv6 sessions.
    address6: ipaddress.IPv6Address | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    # -- wire form ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "router_id": str(self.router_id),
            "local_as": self.local_as,
            "address": str(self.address),
            "address6": str(self.address6) if self.address6 else None,
            "listen_port": self.listen_port,
            "cluster_id": str(self.cluster_id) if self.cluster_id else None,
            "peers": [_peer_json(p) for p in self.peers],
            "announce": [{"prefix": str(a.prefix), "communities": list(a.communities)}
                         for a in self.announce],
            "accept": [str(n) for n in self.accept],
            "own": [str(n) for n in self.own],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BGPIntent:
        r = _Reader(raw, "intent")
        cluster = r.opt_addr("cluster_id", version=4)
        addr6 = r.opt_addr("address6", version=6)
        return cls(
            node=r.text("node"),
            router_id=ipaddress.IPv4Address(r.addr("router_id", version=4)),
            local_as=r.asn("local_as"),
            address=r.addr("address"),
            address6=ipaddress.IPv6Address(addr6) if addr6 else None,
            listen_port=r.integer("listen_port", 1, 65535),
            cluster_id=ipaddress.IPv4Address(cluster) if cluster else None,
            peers=tuple(_peer_from(p, f"intent.peers[{i}]")
                        for i, p in enumerate(r.items("peers"))),
            announce=tuple(_announcement_from(a, f"intent.announce[{i}]")
                           for i, a in enumerate(r.items("announce"))),
            accept=tuple(_net(n, "intent.accept") for n in r.items("accept")),
            own=tuple(_net(n, "intent.own") for n in r.items("own")),
        )


def _peer_json(p: PeerIntent) -> dict[str, Any]:
    return {
        "address": str(p.address), "peer_as": p.peer_as, "local_as": p.local_as, "type": p.type,
        "name": p.name, "port": p.port, "passive": p.passive, "password": p.password,
        "source_address": str(p.source_address) if p.source_address else None,
        "restart_time": p.restart_time, "keepalive_time": p.keepalive_time,
        "ttl_security": p.ttl_security, "next_hop_mode": p.next_hop_mode,
        "rr_client": p.rr_client, "is_node": p.is_node,
        "import_rules": [_rule_json(x) for x in p.import_rules],
        "export_rules": [_rule_json(x) for x in p.export_rules],
    }


def _rule_json(rule: FilterRule) -> dict[str, Any]:
    return {"action": rule.action, "cidr": str(rule.cidr) if rule.cidr else None,
            "match_operator": rule.match_operator, "min_len": rule.min_len,
            "max_len": rule.max_len}


def _announcement_from(raw: Any, where: str) -> Announcement:
    r = _Reader(raw, where)
    communities = r.items("communities")
    for i, community in enumerate(communities):
        if not isinstance(community, str) or community.count(":") not in (1, 2):
            raise IntentError(f"{where}.communities[{i}]: expected \"aa:nn\" or \"aa:nn:mm\", "
                              f"got {community!r}")
    return Announcement(prefix=_net(r.text("prefix"), f"{where}.prefix"),
                        communities=tuple(communities))


def _peer_from(raw: Any, where: str) -> PeerIntent:
    r = _Reader(raw, where)
    kind = r.text("type")
    if kind not in PEER_TYPES:
        raise IntentError(f"{where}.type: {kind!r} is not one of {', '.join(PEER_TYPES)}")
    next_hop_mode = r.opt_text("next_hop_mode") or "Auto"
    if next_hop_mode not in ("Auto", "Self", "Keep"):
        raise IntentError(f"{where}.next_hop_mode: {next_hop_mode!r} is not Auto, Self or Keep")
    keepalive = raw.get("keepalive_time")
    return PeerIntent(
        address=r.addr("address"), peer_as=r.asn("peer_as"), local_as=r.asn("local_as"),
        type=kind, name=r.opt_text("name") or "", port=r.integer("port", 1, 65535),
        passive=r.flag("passive"), password=r.opt_text("password"),
        source_address=r.opt_addr("source_address"),
        restart_time=r.integer("restart_time", 0, 65535),
        keepalive_time=r.integer("keepalive_time", 0, 65535) if keepalive is not None else None,
        ttl_security=r.integer("ttl_security", 0, 255),
        next_hop_mode=next_hop_mode,
        rr_client=r.flag("rr_client"), is_node=r.flag("is_node"),
        import_rules=tuple(_rule_from(x, f"{where}.import_rules[{i}]")
                           for i, x in enumerate(r.items("import_rules"))),
        export_rules=tuple(_rule_from(x, f"{where}.export_rules[{i}]")
                           for i, x in enumerate(r.items("export_rules"))),
    )


def _rule_from(raw: Any, where: str) -> FilterRule:
    r = _Reader(raw, where)
    action = r.text("action")
    if action not in ("Accept", "Reject"):
        raise IntentError(f"{where}.action: {action!r} is not Accept or Reject")
    cidr = r.opt_text("cidr")
    op = r.opt_text("match_operator")
    if op is not None and op not in ("Equal", "NotEqual", "In", "NotIn"):
        raise IntentError(f"{where}.match_operator: {op!r} is not Equal, NotEqual, In or NotIn")
    lo, hi = raw.get("min_len"), raw.get("max_len")
    return FilterRule(action=action, cidr=_net(cidr, f"{where}.cidr") if cidr else None,
                      match_operator=op,
                      min_len=r.integer("min_len", 0, 128) if lo is not None else None,
                      max_len=r.integer("max_len", 0, 128) if hi is not None else None)


def _net(text: Any, where: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(text))
    except ValueError as err:
        raise IntentError(f"{where}: {err}") from None


class _Reader:
    """Typed field access with errors that say where."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise IntentError(f"{where}: expected an object, got {type(raw).__name__}")
        self.raw = raw
        self.where = where

    def _get(self, key: str) -> Any:
        if key not in self.raw:
            raise IntentError(f"{self.where}.{key}: missing")
        return self.raw[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise IntentError(f"{self.where}.{key}: expected a non-empty string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise IntentError(f"{self.where}.{key}: expected a string")
        return value

    def integer(self, key: str, lo: int, hi: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise IntentError(f"{self.where}.{key}: expected an integer {lo}-{hi}, got {value!r}")
        return value

    def asn(self, key: str) -> int:
        return self.integer(key, 1, 4294967295)

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            raise IntentError(f"{self.where}.{key}: expected true or false, got {value!r}")
        return value

    def addr(self, key: str, *, version: int | None = None) -> IPAddress:
        try:
            value = ipaddress.ip_address(self.text(key))
        except ValueError as err:
            raise IntentError(f"{self.where}.{key}: {err}") from None
        if version is not None and value.version != version:
            raise IntentError(f"{self.where}.{key}: {value} is not an IPv{version} address")
        return value

    def opt_addr(self, key: str, *, version: int | None = None) -> IPAddress | None:
        return self.addr(key, version=version) if self.opt_text(key) is not None else None

    def items(self, key: str) -> list[Any]:
        value = self.raw.get(key, [])
        if not isinstance(value, list):
            raise IntentError(f"{self.where}.{key}: expected a list")
        return value
