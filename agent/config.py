"""The agent's settings from its environment, read once at start, the way calico-node reads its
own: `NODENAME`, `IP`, `IP_AUTODETECTION_METHOD`, `IP6`, `IP6_AUTODETECTION_METHOD`, `FELIX_*`
overrides, datastore variables."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wren.constants import HEALTH_PORT
from wren.paths import node_run_dir, node_state_dir

__all__ = ["AgentConfig", "ConfigError"]


class ConfigError(ValueError):
    """A setting in the environment is malformed; names the variable."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r}: must not be negative")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be an integer") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes", "on"):
        return True
    if raw.lower() in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: must be true or false")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    node_name: str
    ip: str  # "autodetect" | "none" | "ADDR/PREFIX"
    ip_autodetection_method: str
    run_dir: Path
    state_dir: Path
    ip6: str | None = None  # as `ip`; None (IP6 unset): the Node's IPv6 address is left alone
    ip6_autodetection_method: str = "first-found"
    health_host: str = "127.0.0.1"
    health_port: int = HEALTH_PORT
    metrics_port: int = 9091
    route_refresh_interval: float = 90.0
    iptables_refresh_interval: float = 90.0
    autodetect_interval: float = 60.0
    iptables_backend: str = "auto"
    mtu: int = 0  # 0: detect
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentConfig:
        env = dict(os.environ if env is None else env)
        node = env.get("NODENAME") or env.get("FELIX_FELIXHOSTNAME") or socket.gethostname()
        ip = env.get("IP", "autodetect") or "autodetect"
        backend = env.get("FELIX_IPTABLESBACKEND", "auto").lower()
        if backend not in ("auto", "nft", "legacy"):
            raise ConfigError(f"FELIX_IPTABLESBACKEND={backend!r}: must be Auto, NFT or Legacy")
        return cls(
            node_name=node,
            ip=ip,
            ip_autodetection_method=env.get("IP_AUTODETECTION_METHOD", "first-found")
            or "first-found",
            ip6=env.get("IP6") or None,
            ip6_autodetection_method=env.get("IP6_AUTODETECTION_METHOD", "first-found")
            or "first-found",
            run_dir=node_run_dir(node, env),
            state_dir=node_state_dir(node, env),
            health_host=env.get("FELIX_HEALTHHOST", "127.0.0.1"),
            health_port=_int(env, "FELIX_HEALTHPORT", HEALTH_PORT),
            metrics_port=_int(env, "FELIX_PROMETHEUSMETRICSPORT", 9091),
            route_refresh_interval=_float(env, "FELIX_ROUTEREFRESHINTERVAL", 90.0),
            iptables_refresh_interval=_float(env, "FELIX_IPTABLESREFRESHINTERVAL", 90.0),
            autodetect_interval=_float(env, "AUTODETECT_POLL_INTERVAL", 60.0),
            iptables_backend=backend,
            mtu=_int(env, "FELIX_VETHMTU", 0),
            env=env,
        )

    @property
    def metrics_enabled(self) -> bool:
        return _bool(self.env, "FELIX_PROMETHEUSMETRICSENABLED", True)
