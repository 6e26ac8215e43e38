"""The default IP pool from calico-node's environment variables, created only if none exists.

    CALICO_IPV4POOL_CIDR            the pool (no default pool without it)
    CALICO_IPV4POOL_BLOCK_SIZE      26
    CALICO_IPV4POOL_IPIP            Never | Always | CrossSubnet   (Never)
    CALICO_IPV4POOL_VXLAN           Never | Always | CrossSubnet   (Never)
    CALICO_IPV4POOL_NAT_OUTGOING    true
    CALICO_IPV4POOL_NODE_SELECTOR   all()
    CALICO_IPV4POOL_DISABLE_BGP_EXPORT  false
    NO_DEFAULT_POOLS                true: never create one
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_POOL_NAME", "default_pool_body"]

DEFAULT_POOL_NAME = "default-ipv4-ippool"

_MODES = {"never": "Never", "always": "Always", "crosssubnet": "CrossSubnet", "off": "Never"}


def _mode(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "Never") or "Never"
    try:
        return _MODES[raw.lower()]
    except KeyError:
        raise ValueError(f"{name}={raw!r}: must be Never, Always or CrossSubnet") from None


def default_pool_body(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The IPPool body the environment asks for, or None. Validation happens in wren.model."""
    if (env.get("NO_DEFAULT_POOLS") or "").lower() == "true":
        return None
    cidr = env.get("CALICO_IPV4POOL_CIDR")
    if not cidr:
        return None
    spec: dict[str, Any] = {
        "cidr": cidr,
        "ipipMode": _mode(env, "CALICO_IPV4POOL_IPIP"),
        "vxlanMode": _mode(env, "CALICO_IPV4POOL_VXLAN"),
        "natOutgoing": (env.get("CALICO_IPV4POOL_NAT_OUTGOING", "true") or "true").lower()
        == "true",
        "nodeSelector": env.get("CALICO_IPV4POOL_NODE_SELECTOR", "all()") or "all()",
    }
    block = env.get("CALICO_IPV4POOL_BLOCK_SIZE")
    if block:
        try:
            spec["blockSize"] = int(block)
        except ValueError:
            raise ValueError(f"CALICO_IPV4POOL_BLOCK_SIZE={block!r}: must be an integer") from None
    if (env.get("CALICO_IPV4POOL_DISABLE_BGP_EXPORT") or "").lower() == "true":
        spec["disableBGPExport"] = True
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": DEFAULT_POOL_NAME},
        "spec": spec,
    }
