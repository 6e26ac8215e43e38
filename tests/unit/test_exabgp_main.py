"""bgp.exabgp_main: ExaBGP started through it, with queued work run at once, a longer idle
sleep and no debug calls below DEBUG."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bgp.exabgp_main import (
    IDLE_SPEED,
    debug_wanted,
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


def test_the_pinned_exabgp_has_what_the_loop_change_relies_on_and_reads_the_sleep() -> None:
    code = ("import os\n"
            "from bgp.exabgp_main import prepare\n"
            "assert prepare(os.environ) == []\n"
            "from exabgp.environment import getenv\n"
            "from exabgp.reactor.loop import Reactor\n"
            "assert Reactor._wait_for_io.__qualname__.startswith('run_queued_work_at_once')\n"
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
    notes = prepare(env, loop_change=lambda: changed)
    assert env.get("exabgp_reactor_speed") == speed
    assert bool(notes) is not changed
