"""What both plugins share: reading one invocation, opening the datastore, answering the runtime.

`run(handler)` is the whole process contract: parse `CNI_*` and stdin, call the handler, print
its result, and turn every failure into the spec's error object with a code a runtime can act on
(11 "try again later" when the datastore is unreachable, 100 when no address is free). Logs go
to stderr only: stdout belongs to the result.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from wren.cni.spec import (
    ERR_INVALID_CONFIG,
    ERR_IO,
    ERR_NO_ADDRESSES,
    ERR_TRY_AGAIN,
    CniEnv,
    CniError,
    NetConf,
    parse_cni_env,
    parse_netconf,
    version_result,
)
from wren.datastore.backend import Backend
from wren.errors import TemporaryError, WrenError
from wren.log import configure_logging, get_logger

__all__ = ["ERR_INTERNAL", "Handler", "node_name", "open_backend", "owner_attributes", "run"]

ERR_INTERNAL = 101
log = get_logger(__name__)

Handler = Callable[[CniEnv, NetConf, Mapping[str, str]], Mapping[str, Any] | None]


def node_name(conf: NetConf, env: Mapping[str, str]) -> str:
    """`nodename` in the config, else `NODENAME`, else the host name (Calico's order)."""
    return conf.nodename or env.get("NODENAME") or socket.gethostname()


def open_backend(conf: NetConf, env: Mapping[str, str]) -> Backend:
    """The datastore named by the config (`datastore_type`, `etcd_endpoints`,
    `kubernetes.kubeconfig`), falling back to the process environment (Calico's variable
    names) for anything the config leaves unset."""
    from wren.datastore.connect import backend_from_env

    merged = dict(env)
    if conf.datastore_type:
        merged["DATASTORE_TYPE"] = conf.datastore_type
    if conf.etcd_endpoints:
        merged["ETCD_ENDPOINTS"] = conf.etcd_endpoints
    if conf.kubeconfig:
        merged["KUBECONFIG"] = conf.kubeconfig
    try:
        return backend_from_env(merged)
    except ValueError as exc:
        raise CniError(ERR_INVALID_CONFIG, "invalid datastore configuration", str(exc)) from None


def owner_attributes(cni: CniEnv, node: str) -> dict[str, str]:
    """What an allocation records about its owner, as Calico's `secondary` attributes do."""
    attrs = {"node": node, "containerID": cni.container_id,
             "timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if cni.pod_name:
        attrs["namespace"] = cni.pod_namespace
        attrs["pod"] = cni.pod_name
    return attrs


def run(
    handler: Handler,
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run one CNI invocation; returns the exit code."""
    env = os.environ if env is None else env
    out = stdout or sys.stdout
    version = "1.0.0"
    try:
        cni = parse_cni_env(env)
        data = (stdin or sys.stdin).read()
        if cni.command == "VERSION":
            with contextlib.suppress(ValueError, AttributeError):
                version = str(json.loads(data).get("cniVersion") or version) if data else version
            json.dump(version_result(version), out)
            return 0
        conf = parse_netconf(data)
        version = conf.cni_version
        configure_logging(env.get("LOG_LEVEL") or conf.log_level, json=True)
        result = handler(cni, conf, env)
        if result is not None:
            json.dump(result, out)
        return 0
    except CniError as exc:
        err = exc
    except TemporaryError as exc:
        err = CniError(ERR_TRY_AGAIN, "try again later", f"{type(exc).__name__}: {exc}")
    except WrenError as exc:
        from wren.ipam.allocator import NoFreeAddressesError

        code = ERR_NO_ADDRESSES if isinstance(exc, NoFreeAddressesError) else ERR_INTERNAL
        msg = "no free IP address" if code == ERR_NO_ADDRESSES else type(exc).__name__
        err = CniError(code, msg, str(exc))
    except OSError as exc:
        err = CniError(ERR_IO, "I/O failure", str(exc))
    log.error("CNI command failed", code=err.code, msg=err.msg, details=err.details)
    json.dump(err.to_json(version), out)
    return 1
