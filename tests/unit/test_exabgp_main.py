"""bgp.exabgp_main: ExaBGP started through it, with queued work run at once, a longer idle
sleep and no debug calls below DEBUG."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from bgp.exabgp_main import (
    IDLE_SPEED,
    debug_wanted,
    fast_ipv4_prefixes,
    fast_update_text,
    poll_timeout,
    prepare,
    run_queued_work_at_once,
)
from bgp.sidecar import SidecarConfig

_PROBE = """
import types
from exabgp.logger import log
from exabgp.logger.option import option
{setup}
calls = []
option.logger = types.SimpleNamespace(debug=print, info=print)  # what log.init would set
log.logger = staticmethod(lambda *a: calls.append(a))
log.debug(lambda: "debug text", "reactor")
log.info(lambda: "info text", "reactor")
print(len(calls))
"""


def _probe(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(setup=setup)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return int(out.split()[-1])


@pytest.mark.parametrize(("env", "wanted"), [
    ({}, False),
    ({"exabgp_log_level": "INFO"}, False),
    ({"exabgp_log_level": "debug"}, True),
    ({"exabgp.log.level": "DEBUG"}, True),
    ({"exabgp_log_level": "WARNING", "exabgp.log.level": "DEBUG"}, False),
])
def test_debug_is_wanted_only_when_exabgp_is_asked_for_debug(env: dict[str, str],
                                                            wanted: bool) -> None:
    assert debug_wanted(env) is wanted


def test_quiet_debug_drops_debug_calls_and_keeps_the_other_levels() -> None:
    assert _probe("") == 2  # ExaBGP as shipped: both calls reach its logger
    assert _probe("from bgp.exabgp_main import quiet_debug; quiet_debug()") == 1


def test_the_sidecar_starts_exabgp_through_the_module_unless_told_otherwise() -> None:
    default = SidecarConfig.from_env({"NODENAME": "n1", "WREN_RUN_DIR": "/tmp/x"})
    assert default.exabgp == (sys.executable, "-m", "bgp.exabgp_main")
    custom = SidecarConfig.from_env({"NODENAME": "n1", "WREN_EXABGP": "/opt/exabgp"})
    assert custom.exabgp == ("/opt/exabgp",)



class _Queue:
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def ready(self) -> bool:
        return self.steps == 0


class _Reactor:
    """The two things of ExaBGP's Reactor the loop change touches."""

    def __init__(self, steps: int) -> None:
        self.asynchronous = _Queue(steps)
        self.waited: list[int] = []

    def _wait_for_io(self, sleeptime: int) -> Iterator[int]:
        self.waited.append(sleeptime)
        return iter(())


@pytest.mark.parametrize(("steps", "timeout"), [(0, 50), (1, 0), (120, 0)])
def test_the_loop_waits_for_input_only_when_no_steps_are_queued(steps: int,
                                                              timeout: int) -> None:
    assert poll_timeout(_Reactor(steps), 50) == timeout


def test_the_loop_change_passes_the_adjusted_timeout_to_exabgps_own_wait() -> None:
    class Patched(_Reactor):
        pass

    assert run_queued_work_at_once(Patched)
    busy, idle = Patched(3), Patched(0)
    list(busy._wait_for_io(50))
    list(idle._wait_for_io(50))
    assert (busy.waited, idle.waited) == ([0], [50])


def test_an_exabgp_without_the_internals_runs_unchanged() -> None:
    class Other:
        pass

    assert not run_queued_work_at_once(Other)
    assert not hasattr(Other, "_wait_for_io")


def test_the_pinned_exabgp_has_what_the_changes_rely_on_and_reads_the_sleep() -> None:
    code = ("import os\n"
            "from bgp.exabgp_main import prepare\n"
            "assert prepare(os.environ) == []\n"
            "from exabgp.environment import getenv\n"
            "from exabgp.reactor.loop import Reactor\n"
            "assert Reactor._wait_for_io.__qualname__.startswith('run_queued_work_at_once')\n"
            "from exabgp.reactor.api.response.json import JSON\n"
            "assert JSON._update.__qualname__.startswith('fast_update_text')\n"
            "from exabgp.bgp.message.update.nlri.nlri import NLRI\n"
            "assert NLRI.unpack_nlri.__qualname__.startswith('fast_ipv4_prefixes')\n"
            "assert getenv().reactor.speed == 5.0, getenv().reactor.speed\n")
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("exabgp")}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)


@pytest.mark.parametrize(("env", "changed", "speed"), [
    ({}, True, IDLE_SPEED),
    ({"exabgp_reactor_speed": "1.0"}, True, "1.0"),
    ({"exabgp.reactor.speed": "2.0"}, True, None),
    ({}, False, None),  # the loop is unchanged: keep ExaBGP's 10 ms sleep
])
def test_the_idle_sleep_grows_only_with_the_loop_change_and_never_over_the_users(
        env: dict[str, str], changed: bool, speed: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bgp.exabgp_main.quiet_debug", lambda: None)
    monkeypatch.setattr("bgp.exabgp_main.fast_update_text", lambda: True)
    monkeypatch.setattr("bgp.exabgp_main.fast_ipv4_prefixes", lambda: True)
    notes = prepare(env, loop_change=lambda: changed)
    assert env.get("exabgp_reactor_speed") == speed
    assert bool(notes) is not changed


# -- the update encoder -----------------------------------------------------------------------
def _encoders(compact: bool) -> tuple[Any, Any, list[object]]:
    """ExaBGP's encoder as shipped; one with `fast_update_text` applied over a shipped one that
    notes each update it is handed (subclasses: the class ExaBGP uses stays as it is in this
    process); and those notes."""
    from exabgp.reactor.api.response.json import JSON

    handed: list[object] = []

    class Shipped(JSON):  # type: ignore[misc]
        def _update(self, update: Any) -> Any:
            handed.append(update)
            return super()._update(update)

    class Fast(Shipped):
        """What `fast_update_text` patches, so that `Shipped` stays as shipped."""

    assert fast_update_text(Fast)
    shipped, fast = JSON("5.0"), Fast("5.0")
    shipped.compact = fast.compact = compact
    return shipped, fast, handed


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text")


def _update(routes: Sequence[tuple[str, str, str | None]], *, attributes: bool = True,
            path_id: int | None = None) -> Any:
    """An Update of (action, prefix, next hop) routes, as ExaBGP's parser builds them."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update import Update
    from exabgp.bgp.message.update.attribute.attributes import Attributes
    from exabgp.bgp.message.update.attribute.origin import Origin
    from exabgp.bgp.message.update.nlri.cidr import CIDR
    from exabgp.bgp.message.update.nlri.inet import INET
    from exabgp.bgp.message.update.nlri.qualifier.path import PathInfo
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.protocol.ip import IP

    nlris = []
    for action, prefix, hop in routes:
        net = ipaddress.ip_network(prefix)
        nlri = INET(AFI.ipv4 if net.version == 4 else AFI.ipv6, SAFI.unicast,
                    Action.ANNOUNCE if action == "announce" else Action.WITHDRAW)
        nlri.cidr = CIDR(net.network_address.packed, net.prefixlen)
        if hop == "unprintable":
            nlri.nexthop = _Unprintable()
        elif hop is not None:
            nlri.nexthop = IP.create(hop)
        if path_id is not None:
            nlri.path_info = PathInfo(path_id.to_bytes(4, "big"))
        nlris.append(nlri)
    attrs = Attributes()
    if attributes:
        attrs.add(Origin(Origin.IGP))
    return Update(nlris, attrs)


_Route = tuple[str, str, str | None]  # action, prefix, next hop
_V4: list[_Route] = [("announce", f"10.128.{i}.0/26", "10.0.1.1") for i in range(5)]
_CASES: dict[str, Sequence[_Route]] = {
    "one next hop": _V4,
    "two next hops, interleaved": [
        ("announce", f"10.129.{i}.64/26", "10.0.1.1" if i % 2 else "10.0.1.2") for i in range(6)],
    "announced and withdrawn": [*_V4, ("withdraw", "10.130.0.0/24", None)],
    "withdrawn only": [("withdraw", "10.130.0.0/24", None), ("withdraw", "10.130.1.0/24", None)],
    "two families": [("announce", "fd00:1::/122", "fd00::1"), *_V4,
                     ("announce", "fd00:2::/122", "fd00::1"),
                     ("withdraw", "fd00:3::/122", None), ("withdraw", "10.131.0.0/26", None)],
    "a next hop without text": [("announce", "10.128.0.0/26", "unprintable")],
    "/0 and /32": [("announce", "0.0.0.0/0", "10.0.1.1"), ("announce", "10.0.0.7/32", "10.0.1.1")],
}


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("attributes", [True, False])
@pytest.mark.parametrize("case", sorted(_CASES))
def test_received_updates_encode_to_exabgps_own_text(case: str, attributes: bool,
                                                     compact: bool) -> None:
    shipped, fast, handed = _encoders(compact)
    update = _update(_CASES[case], attributes=attributes)
    assert fast._update(update)["message"] == shipped._update(update)["message"]
    assert handed == []  # the text came from the fast encoder


@pytest.mark.parametrize("update", ["add-path", "end-of-rib", "empty"])
def test_routes_the_encoder_does_not_know_go_through_exabgps_own(update: str) -> None:
    from exabgp.bgp.message.update import EOR

    shipped, fast, handed = _encoders(compact=False)
    made = {"add-path": lambda: _update(_V4, path_id=7),
            "end-of-rib": lambda: EOR(1, 1),
            "empty": lambda: _update([])}[update]()
    assert fast._update(made)["message"] == shipped._update(made)["message"]
    assert handed == [made]


# -- the prefix reader --------------------------------------------------------------------------
@pytest.fixture
def _no_exabgp_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    """ExaBGP's reader logs every prefix at debug level; its logger is not set up here."""
    from exabgp.logger import log

    monkeypatch.setattr(log, "debug", classmethod(lambda *args, **kwargs: None))


def _readers() -> tuple[Any, Any]:
    """ExaBGP's NLRI reader as shipped, and one with `fast_ipv4_prefixes` applied (a subclass
    with its own copy: the class ExaBGP uses stays as it is in this process)."""
    from exabgp.bgp.message.update.nlri.nlri import NLRI

    class Fast(NLRI):  # type: ignore[misc]
        unpack_nlri = NLRI.__dict__["unpack_nlri"]

    assert fast_ipv4_prefixes(Fast)
    return NLRI, Fast


def _read_all(reader: Any, data: bytes, *, afi: str = "ipv4", addpath: bool = False,
              withdraw: bool = False) -> list[tuple[Any, ...]]:
    from exabgp.bgp.message import Action
    from exabgp.protocol.family import AFI, SAFI

    family = AFI.ipv4 if afi == "ipv4" else AFI.ipv6
    action = Action.WITHDRAW if withdraw else Action.ANNOUNCE
    out = []
    while data:
        nlri, data = reader.unpack_nlri(family, SAFI.unicast, data, action, addpath)
        out.append((type(nlri), nlri.afi, nlri.safi, nlri.action, nlri.path_info, nlri.nexthop,
                    nlri.cidr.ton(), nlri.cidr.mask, nlri.index(), nlri.json(), data))
    return out


def _wire(*prefixes: tuple[int, bytes]) -> bytes:
    return b"".join(bytes([mask]) + body for mask, body in prefixes)


_PREFIXES = {
    "/26s": _wire(*((26, bytes([10, 128, i, 64])) for i in range(40))),
    "every length": _wire(*((m, bytes([10, 1, 2, 3, 4])[:(m + 7) // 8]) for m in range(33))),
    "host bits as sent": _wire((24, bytes([10, 1, 2])), (20, bytes([10, 1, 0xff]))),
    "/0 then /32": _wire((0, b""), (32, bytes([192, 0, 2, 1]))),
}


@pytest.mark.usefixtures("_no_exabgp_logger")
@pytest.mark.parametrize("withdraw", [False, True])
@pytest.mark.parametrize("case", sorted(_PREFIXES))
def test_ipv4_prefixes_read_into_what_exabgps_reader_makes(case: str, withdraw: bool) -> None:
    shipped, fast = _readers()
    data = _PREFIXES[case]
    read = _read_all(fast, data, withdraw=withdraw)
    assert read == _read_all(shipped, data, withdraw=withdraw)
    assert read


@pytest.mark.usefixtures("_no_exabgp_logger")
@pytest.mark.parametrize("data", [
    bytes([33, 10, 1, 2, 3, 4]),  # longer than IPv4 allows
    bytes([26, 10, 1, 2]),  # fewer bytes than the length says
    bytes([8]),  # a length and nothing after it
])
def test_a_prefix_the_fast_reader_cannot_take_gets_exabgps_own_refusal(data: bytes) -> None:
    from exabgp.bgp.message.notification import Notify

    shipped, fast = _readers()
    with pytest.raises(Notify) as theirs:
        _read_all(shipped, data)
    with pytest.raises(Notify) as ours:
        _read_all(fast, data)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.usefixtures("_no_exabgp_logger")
def test_add_path_and_ipv6_prefixes_are_read_by_exabgp_as_shipped() -> None:
    shipped, fast = _readers()
    with_path_id = b"\x00\x00\x00\x07" + _wire((26, bytes([10, 128, 0, 64])))
    assert _read_all(fast, with_path_id, addpath=True) == \
        _read_all(shipped, with_path_id, addpath=True)
    v6 = _wire((64, bytes([0xfd, 0, 0, 1, 0, 0, 0, 2])), (122, bytes(16)))
    assert _read_all(fast, v6, afi="ipv6") == _read_all(shipped, v6, afi="ipv6")
