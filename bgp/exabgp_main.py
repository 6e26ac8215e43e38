"""ExaBGP as wren-bgp starts it: ExaBGP's own entry point, with debug logging off at INFO.

ExaBGP calls `log.debug(...)` about three times for every prefix it receives (decoding the
NLRI, the UPDATE loop, the adj-RIB-in cache), and each call goes through two more Python
calls to learn that DEBUG is off before it drops the message. Learning 10,000 prefixes, that
was a quarter of ExaBGP's CPU (0.11 s → 0.08 s measured without it), on the machine's
busiest path. Below DEBUG those calls can never print anything, so `log.debug` is replaced
with a no-op before ExaBGP starts, as ExaBGP's own `log.silence()` does for every level.
With `exabgp_log_level=DEBUG` in the environment nothing is replaced.

`WREN_EXABGP` (an ExaBGP executable) bypasses this module entirely.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = ["debug_wanted", "main", "quiet_debug"]


def debug_wanted(env: Mapping[str, str]) -> bool:
    """ExaBGP reads its settings from the environment in either spelling."""
    level = env.get("exabgp_log_level") or env.get("exabgp.log.level") or ""
    return level.strip().upper() == "DEBUG"


def _drop(cls: object, message: object, source: str = "", level: str = "") -> None:
    return None


def quiet_debug() -> None:
    from exabgp.logger import log

    log.debug = classmethod(_drop)


def main() -> int:
    if not debug_wanted(os.environ):
        quiet_debug()
    from exabgp.application.main import main as exabgp_main

    code = exabgp_main()
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
