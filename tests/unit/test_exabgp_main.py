"""bgp.exabgp_main: ExaBGP started through it works as ExaBGP, minus debug calls below DEBUG."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bgp.exabgp_main import debug_wanted
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

