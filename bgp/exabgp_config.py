"""ExaBGP's configuration from the BGP intent (the role of Calico's bird.cfg templates).

Only sessions live here; prefixes go through the API, so a change of what we announce never
touches the configuration. The rendering is stable (peers sorted, one block per peer) so that
ExaBGP's `reload` sees unchanged peers as identical and leaves their sessions alone.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from bgp.intent import BGPIntent, PeerIntent

__all__ = ["PROCESS_NAME", "render", "render_env"]

PROCESS_NAME = "wren"


def render(intent: BGPIntent | None, helper: Sequence[str]) -> str:
    """The whole file. With no intent yet: just the API process, so ExaBGP starts and waits."""
    lines = [
        "# Written by wren-bgp from the agent's BGP intent; edits are overwritten.",
        f"process {PROCESS_NAME} {{",
        f"    run {' '.join(helper)};",
        "    encoder json;",
        "}",
        "",
    ]
    if intent is not None:
        for peer in intent.peers:
            lines += _neighbor(intent, peer)
    return "\n".join(lines) + "\n"


def _neighbor(intent: BGPIntent, peer: PeerIntent) -> list[str]:
    # A session's own end is of its family: the IPv6 address for an IPv6 peer. The intent has
    # no IPv6 peer without one (`compute_intent` makes none), so the IPv4 fallback is never used
    # for a session; it only keeps `local` an address.
    family_address = intent.address if peer.address.version == 4 else intent.address6
    local = peer.source_address or family_address or intent.address
    hold = max(3, peer.keepalive_time * 3) if peer.keepalive_time else None
    out = [
        f"neighbor {peer.address} {{",
        f"    description \"{peer.type}: {_quote_free(peer.name)}\";",
        f"    router-id {intent.router_id};",
        f"    local-address {local};",
        f"    local-as {peer.local_as};",
        f"    peer-as {peer.peer_as};",
        f"    connect {peer.port};",
        f"    passive {'true' if peer.passive else 'false'};",
        "    manual-eor true;",  # we send End-of-RIB after our routes, so GR peers sweep right
        "    group-updates true;",
        # Our RIB is wren-bgp's; ExaBGP's own copy of what peers sent (on unless said) cost a
        # fifth of its CPU when 10,000 prefixes arrived, and nothing here reads it.
        "    adj-rib-in false;",
    ]
    if hold is not None:
        out.append(f"    hold-time {hold};")
    if peer.password:
        # Base64: ExaBGP's configuration parser has no escape for a quote, so a password with
        # `"` or `'` in it would make the whole file invalid; its plain form is also ASCII-only.
        key = base64.b64encode(peer.password.encode()).decode("ascii")
        out += [f"    md5-password \"{key}\";", "    md5-base64 true;"]
    if peer.ttl_security:
        # GTSM (RFC 5082): send at 255, accept only what came at most N-1 hops.
        out.append("    outgoing-ttl 255;")
        out.append(f"    incoming-ttl {256 - peer.ttl_security};")
    family = "ipv4 unicast" if peer.address.version == 4 else "ipv6 unicast"
    out += [
        "    capability {",
        "        route-refresh;",
    ]
    if peer.restart_time:
        out.append(f"        graceful-restart {peer.restart_time};")
    out += [
        "    }",
        f"    family {{ {family}; }}",
        f"    api {{ processes [ {PROCESS_NAME} ]; neighbor-changes;",
        "          receive { parsed; update; open; notification; } }",
        "}",
        "",
    ]
    return out


def _quote_free(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render_env(intent: BGPIntent | None, *, run_dir: str, bind: Sequence[str] | None = None
               ) -> dict[str, str]:
    """ExaBGP's settings (environment form): listen on the node addresses, stay root, no CLI.
    `bind` narrows the addresses to listen on (ExaBGP exits when it cannot bind one, so the
    sidecar leaves out an address the host does not have yet); None: both of the intent's."""
    env = {
        "exabgp_daemon_user": "root",
        "exabgp_daemon_daemonize": "false",
        "exabgp_api_cli": "false",
        "exabgp_api_ack": "true",
        # NLRIs as plain strings ("10.65.1.0/26"), not {"nlri": ...} objects: less JSON to
        # write for ExaBGP and to read for us when 10,000 prefixes arrive (add-path NLRIs
        # keep the object form; exabgp_json reads both).
        "exabgp_api_compact": "true",
        "exabgp_api_respawn": "true",
        "exabgp_log_destination": "stderr",
        "exabgp_log_level": "INFO",
        # Not a line per received UPDATE ("statistics for receive-update counter N"): with
        # 10,000 routes arriving that is ~40 log lines, each a stdlib logging call.
        "exabgp_log_statistics": "false",
        "exabgp_daemon_pid": "",
        "exabgp_cache_attributes": "true",
        "exabgp_api_pipename": f"{run_dir}/exabgp",
    }
    if intent is not None:
        # A space-separated list (ExaBGP's `ip_list`): a listener per address, so IPv6 peers
        # can dial us too.
        if bind is None:
            bind = [str(a) for a in (intent.address, intent.address6) if a is not None]
        env["exabgp_tcp_bind"] = " ".join(bind)
        env["exabgp_tcp_port"] = str(intent.listen_port)
    return env
