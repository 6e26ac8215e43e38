"""`wren-agent`: read the environment, build the agent, run its loop until SIGTERM.

On SIGTERM the agent stops and leaves the dataplane exactly as it is: pods keep their routes
while a new agent starts (a restart causes no route churn; see the route table's first resync).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

from agent.agent import Agent
from agent.bgp_link import BGPChannelLink, make_bgp_link
from agent.config import AgentConfig, ConfigError
from agent.wiring import build_agent, start_background
from wren.datastore.connect import backend_from_env
from wren.gc_tuning import tune_for_bursts
from wren.log import configure_logging, get_logger

__all__ = ["main"]


def main() -> int:
    configure_logging()
    tune_for_bursts()
    log = get_logger("wren-agent")
    try:
        cfg = AgentConfig.from_env()
        backend = backend_from_env(cfg.env)
    except (ConfigError, ValueError) as err:
        log.error("bad configuration", error=str(err))
        return 2
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    # Calico's CALICO_NETWORKING_BACKEND: "bird" (here: wren-bgp) by default; "vxlan" and
    # "none" run no BGP, so the agent does not wait for a sidecar.
    networking = cfg.env.get("CALICO_NETWORKING_BACKEND", "bird").lower()
    bgp_factory = None
    if networking not in ("vxlan", "none"):
        def bgp_factory(cfg: AgentConfig, agent: Agent) -> BGPChannelLink:
            return make_bgp_link(cfg, agent, backend.read_secret)
    wired = build_agent(cfg, backend, bgp_factory=bgp_factory)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received; stopping", signal=signal.Signals(signum).name)
        stop.set()
        wired.agent.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("starting", node=cfg.node_name, health=f"{cfg.health_host}:{cfg.health_port}")
    started = time.monotonic()
    try:
        start_background(wired, stop)
        wired.agent.run(stop)
    finally:
        wired.close()
    log.info("stopped", node=cfg.node_name, uptime=round(time.monotonic() - started, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
