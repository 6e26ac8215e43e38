"""ExaBGP's configuration and settings rendered from the BGP intent."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bgp.exabgp_config import PROCESS_NAME, render, render_env
from bgp.intent import Announcement, BGPIntent, PeerIntent

HELPER = ["/usr/bin/python3", "-m", "bgp.relay", "--socket", "/run/wren/relay.sock"]
NODE_ADDR = ipaddress.ip_address("10.99.0.1")


def _peer(address: str = "10.99.0.2", **changes: object) -> PeerIntent:
    base = PeerIntent(address=ipaddress.ip_address(address), peer_as=64512, local_as=64512,
                      type="node-to-node mesh", name="node-2")
    return replace(base, **changes)  # type: ignore[arg-type]


def _intent(*peers: PeerIntent, **changes: object) -> BGPIntent:
    base = BGPIntent(node="node-1", router_id=ipaddress.IPv4Address("10.99.0.1"),
                     local_as=64512, address=NODE_ADDR, listen_port=179, peers=peers)
    return replace(base, **changes)  # type: ignore[arg-type]


def _block(text: str, address: str) -> list[str]:
    """The stripped lines of one neighbor's block."""
    lines = text.splitlines()
    start = lines.index(f"neighbor {address} {{")
    end = lines.index("}", start)
    return [line.strip() for line in lines[start + 1:end]]


def _only_block(peer: PeerIntent, **changes: object) -> list[str]:
    return _block(render(_intent(peer, **changes), HELPER), str(peer.address))


# -- the file ------------------------------------------------------------------------------------
def test_without_intent_only_the_api_process_is_configured() -> None:
    text = render(None, HELPER)
    assert f"process {PROCESS_NAME} {{" in text
    assert f"    run {' '.join(HELPER)};" in text
    assert "    encoder json;" in text
    assert "neighbor" not in text


def test_one_neighbor_block_per_peer_each_using_our_api_process() -> None:
    text = render(_intent(_peer("10.99.0.2"), _peer("10.99.0.3")), HELPER)
    assert re.findall(r"^neighbor (\S+) \{$", text, re.MULTILINE) == ["10.99.0.2", "10.99.0.3"]
    for address in ("10.99.0.2", "10.99.0.3"):
        assert f"api {{ processes [ {PROCESS_NAME} ]; neighbor-changes;" in _block(text, address)


def test_rendering_is_stable_so_reload_keeps_unchanged_sessions() -> None:
    intent = _intent(_peer("10.99.0.2", password="pw"), _peer("10.99.0.3"))
    again = _intent(_peer("10.99.0.2", password="pw"), _peer("10.99.0.3"))
    assert render(intent, HELPER) == render(again, HELPER)


def test_changing_one_peer_leaves_the_other_peers_block_unchanged() -> None:
    before = render(_intent(_peer("10.99.0.2"), _peer("10.99.0.3")), HELPER)
    after = render(_intent(_peer("10.99.0.2"), _peer("10.99.0.3", peer_as=65000)), HELPER)
    assert _block(before, "10.99.0.2") == _block(after, "10.99.0.2")
    assert _block(before, "10.99.0.3") != _block(after, "10.99.0.3")


def test_announcements_are_not_in_the_configuration() -> None:
    # Prefixes go through the API; a change of what we announce must not reload sessions.
    plain = _intent(_peer())
    announcing = replace(plain, announce=(Announcement(ipaddress.ip_network("10.200.1.0/26")),))
    assert render(plain, HELPER) == render(announcing, HELPER)


# -- one neighbor --------------------------------------------------------------------------------
def test_manual_eor_is_on_so_end_of_rib_follows_our_routes() -> None:
    assert "manual-eor true;" in _only_block(_peer())


def test_router_id_and_asns_come_from_the_intent_and_the_peer() -> None:
    block = _only_block(_peer(peer_as=65010, local_as=65001), router_id=ipaddress.IPv4Address(
        "192.0.2.7"))
    assert "router-id 192.0.2.7;" in block
    assert "local-as 65001;" in block
    assert "peer-as 65010;" in block


def test_local_address_is_the_node_address_unless_the_peer_names_a_source() -> None:
    assert "local-address 10.99.0.1;" in _only_block(_peer())
    sourced = _peer(source_address=ipaddress.ip_address("10.99.0.42"))
    assert "local-address 10.99.0.42;" in _only_block(sourced)


def test_connect_uses_the_peer_port() -> None:
    assert "connect 179;" in _only_block(_peer())
    assert "connect 1790;" in _only_block(_peer(port=1790))


@pytest.mark.parametrize(("passive", "line"), [(True, "passive true;"), (False, "passive false;")])
def test_passive_follows_the_peer(passive: bool, line: str) -> None:
    assert line in _only_block(_peer(passive=passive))


def test_md5_password_is_rendered_base64_so_quotes_cannot_break_the_file() -> None:
    password = 's"e\'c\\ret #1; {x}'
    block = _only_block(_peer(password=password))
    keys = [line for line in block if line.startswith("md5-password")]
    assert len(keys) == 1
    encoded = re.fullmatch(r'md5-password "([A-Za-z0-9+/=]+)";', keys[0])
    assert encoded is not None
    assert base64.b64decode(encoded.group(1)).decode() == password
    assert "md5-base64 true;" in block


def test_no_md5_lines_without_password() -> None:
    block = _only_block(_peer(password=None))
    assert not [line for line in block if line.startswith("md5")]


def test_graceful_restart_time_is_a_capability() -> None:
    assert "graceful-restart 120;" in _only_block(_peer())
    assert "graceful-restart 300;" in _only_block(_peer(restart_time=300))


def test_restart_time_zero_disables_graceful_restart() -> None:
    block = _only_block(_peer(restart_time=0))
    assert not [line for line in block if "graceful-restart" in line]
    assert "route-refresh;" in block


@pytest.mark.parametrize(("hops", "incoming"), [(1, 255), (2, 254), (255, 1)])
def test_ttl_security_sends_at_255_and_accepts_only_within_the_hop_count(hops: int,
                                                                      incoming: int) -> None:
    block = _only_block(_peer(ttl_security=hops))
    assert "outgoing-ttl 255;" in block
    assert f"incoming-ttl {incoming};" in block


def test_no_ttl_lines_without_ttl_security() -> None:
    block = _only_block(_peer(ttl_security=0))
    assert not [line for line in block if "ttl" in line]


@pytest.mark.parametrize(("keepalive", "hold"), [(20, 60), (1, 3), (None, None), (0, None)])
def test_hold_time_is_three_keepalives(keepalive: int | None, hold: int | None) -> None:
    block = _only_block(_peer(keepalive_time=keepalive))
    holds = [line for line in block if line.startswith("hold-time")]
    assert holds == ([f"hold-time {hold};"] if hold is not None else [])


def test_family_follows_the_peer_address_version() -> None:
    assert "family { ipv4 unicast; }" in _only_block(_peer("10.99.0.2"))
    v6 = _peer("fd99::2", source_address=ipaddress.ip_address("fd99::1"))
    assert "family { ipv6 unicast; }" in _only_block(v6)


def test_an_ipv6_neighbor_speaks_from_our_ipv6_address_with_our_ipv4_router_id() -> None:
    v6 = _peer("fd99::2")  # sourceAddress None: the session still needs an IPv6 local end
    block = _only_block(v6, address6=ipaddress.IPv6Address("fd99::1"))
    assert "local-address fd99::1;" in block
    assert "router-id 10.99.0.1;" in block  # an IPv6 neighbor needs one, and it is IPv4
    assert "family { ipv6 unicast; }" in block
    v4 = _only_block(_peer("10.99.0.2"), address6=ipaddress.IPv6Address("fd99::1"))
    assert "local-address 10.99.0.1;" in v4 and "family { ipv4 unicast; }" in v4


def test_description_names_peer_type_and_name() -> None:
    block = _only_block(_peer(type="global", name="tor-1"))
    assert 'description "global: tor-1";' in block


# -- settings ------------------------------------------------------------------------------------
def test_env_binds_to_the_node_address_and_listen_port() -> None:
    env = render_env(_intent(listen_port=1790), run_dir="/run/wren")
    assert env["exabgp_tcp_bind"] == "10.99.0.1"
    assert env["exabgp_tcp_port"] == "1790"


def test_env_binds_to_the_ipv6_address_too_so_ipv6_peers_can_dial_us() -> None:
    env = render_env(_intent(address6=ipaddress.IPv6Address("fd99::1")), run_dir="/run/wren")
    assert env["exabgp_tcp_bind"] == "10.99.0.1 fd99::1"  # ExaBGP's space-separated ip list
    without = render_env(_intent(address6=ipaddress.IPv6Address("fd99::1")), run_dir="/run/wren",
                         bind=("10.99.0.1",))
    assert without["exabgp_tcp_bind"] == "10.99.0.1"


def test_env_without_intent_does_not_bind() -> None:
    env = render_env(None, run_dir="/run/wren")
    assert "exabgp_tcp_bind" not in env
    assert "exabgp_tcp_port" not in env


def test_env_stays_root_with_acks_and_no_cli() -> None:
    env = render_env(_intent(), run_dir="/run/wren")
    assert env["exabgp_daemon_user"] == "root"
    assert env["exabgp_api_cli"] == "false"
    assert env["exabgp_api_ack"] == "true"
    assert env["exabgp_daemon_daemonize"] == "false"
    assert env["exabgp_api_pipename"] == "/run/wren/exabgp"


# -- ExaBGP's own parser -------------------------------------------------------------------------
EXABGP = Path(sys.executable).parent / "exabgp"  # a dependency of the package: never skipped


@pytest.mark.parametrize("command", [
    [str(EXABGP)],
    [sys.executable, "-m", "bgp.exabgp_main"],  # how wren-bgp starts it
], ids=["exabgp", "bgp.exabgp_main"])
def test_rendered_configuration_passes_exabgp_validate(tmp_path: Path,
                                                        command: list[str]) -> None:
    intent = _intent(
        _peer("10.99.0.2", password='s"e\'c\\ret', keepalive_time=20, ttl_security=1,
              passive=True),
        _peer("10.99.0.3", type="global", name="tor", peer_as=65000, port=1790,
              restart_time=0),
        _peer("fd99::2", type="node specific", source_address=ipaddress.ip_address("fd99::1")),
        _peer("fd99::3", type="node-to-node mesh"),
        address6=ipaddress.IPv6Address("fd99::1"),
    )
    helper = shutil.which("true") or "/bin/true"
    config = tmp_path / "exabgp.conf"
    config.write_text(render(intent, [helper]))
    env = {**os.environ, **render_env(intent, run_dir=str(tmp_path))}
    result = subprocess.run([*command, "validate", str(config)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
