"""The `wren-ipam` CNI IPAM plugin: addresses from Wren's block IPAM for any main plugin.

ADD returns the addresses (/32, /128) under handle `<network>.<containerID>`; a retried ADD
returns the addresses the handle already holds. DEL releases the handle (idempotent). CHECK
confirms the handle still holds the addresses of prevResult. The `wren` plugin calls the same
library in-process; this executable is for other main plugins (bridge, ptp, ...) and for the
CNI_PATH delegation every runtime understands.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from wren.cni.runtime import node_name, open_backend, owner_attributes, run
from wren.cni.spec import (
    ERR_INVALID_CONFIG,
    CniEnv,
    CniError,
    CniIP,
    CniResult,
    NetConf,
    handle_id,
)
from wren.ipam.allocator import Ipam

__all__ = ["ERR_CHECK_FAILED", "main"]

ERR_CHECK_FAILED = 102


def _dispatch(cni: CniEnv, conf: NetConf, env: Mapping[str, str]) -> dict[str, Any] | None:
    node = node_name(conf, env)
    handle = handle_id(conf.name, cni.container_id)
    backend = open_backend(conf, env)
    try:
        ipam = Ipam(backend)
        if cni.command == "ADD":
            ips = ipam.ips_by_handle(handle) or ipam.auto_assign(
                handle_id=handle, node=node,
                num4=int(conf.ipam.assign_ipv4), num6=int(conf.ipam.assign_ipv6),
                attrs=owner_attributes(cni, node),
                ipv4_pools=conf.ipam.ipv4_pools, ipv6_pools=conf.ipam.ipv6_pools)
            result = CniResult(
                ips=tuple(CniIP(address=ipaddress.ip_interface(f"{ip}/{ip.max_prefixlen}"))
                          for ip in ips),
                routes=tuple(("0.0.0.0/0" if v == 4 else "::/0", "")
                             for v in sorted({ip.version for ip in ips})),
            )
            return result.to_json(conf.cni_version)
        if cni.command == "DEL":
            ipam.release_by_handle(handle)
            return None
        if conf.prev_result is None:
            raise CniError(ERR_INVALID_CONFIG, "CHECK needs prevResult in the network config")
        held = set(ipam.ips_by_handle(handle))
        missing = [str(ip.address.ip) for ip in CniResult.from_json(conf.prev_result).ips
                   if ip.address.ip not in held]
        if missing:
            raise CniError(ERR_CHECK_FAILED, "addresses not allocated to this container",
                           f"handle {handle} does not hold {', '.join(missing)}")
        return None
    finally:
        backend.close()


def main() -> None:
    raise SystemExit(run(_dispatch))
