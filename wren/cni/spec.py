"""The CNI 1.0.0 contract: what the runtime hands a plugin and what the plugin answers.

A container runtime runs a plugin with `CNI_*` variables in the environment and the network
configuration (one entry of a conflist, `prevResult` added for CHECK) on stdin; the plugin writes
a result or an error object as JSON on stdout and exits non-zero on error. This module only parses
and encodes; it does no I/O, so every rule here is unit-tested.

The network configuration keeps Calico's field names (`datastore_type`, `etcd_endpoints`,
`nodename`, `mtu`, `ipam.assign_ipv4`, `ipam.ipv4_pools`, ...) so a Calico conflist needs only
`type` changed.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ERR_CONTAINER_UNKNOWN",
    "ERR_DECODE",
    "ERR_INCOMPATIBLE_VERSION",
    "ERR_INVALID_CONFIG",
    "ERR_INVALID_ENV",
    "ERR_IO",
    "ERR_NO_ADDRESSES",
    "ERR_TRY_AGAIN",
    "ERR_UNSUPPORTED_FIELD",
    "SUPPORTED_VERSIONS",
    "CniEnv",
    "CniError",
    "CniIP",
    "CniInterface",
    "CniResult",
    "IpamConf",
    "NetConf",
    "handle_id",
    "parse_cni_env",
    "parse_netconf",
    "version_result",
]

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")

# Well-known error codes of the CNI spec (1-99 reserved by the spec; 100+ plugin-specific).
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_CONTAINER_UNKNOWN = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN = 11
# Wren's own: the pools have no free address for this node (not retryable until someone frees one).
ERR_NO_ADDRESSES = 100


class CniError(Exception):
    """An error the plugin reports to the runtime as the spec's error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}: {details}" if details else msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str = "1.0.0") -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True, slots=True)
class CniEnv:
    """The `CNI_*` environment of one invocation."""

    command: str  # ADD | DEL | CHECK | VERSION
    container_id: str
    netns: str
    ifname: str
    path: tuple[str, ...]
    args: Mapping[str, str]

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")


def parse_cni_env(env: Mapping[str, str]) -> CniEnv:
    """Read and check the variables the spec requires for each command (error 4 if missing)."""
    command = env.get("CNI_COMMAND", "").upper()
    if command not in ("ADD", "DEL", "CHECK", "VERSION"):
        raise CniError(ERR_INVALID_ENV, "invalid CNI_COMMAND", f"got {command!r}")
    args: dict[str, str] = {}
    for part in env.get("CNI_ARGS", "").split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise CniError(ERR_INVALID_ENV, "invalid CNI_ARGS", f"{part!r} is not KEY=VALUE")
        args[key] = value
    cni = CniEnv(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        args=args,
    )
    if command == "VERSION":
        return cni
    missing = [n for n, v in (("CNI_CONTAINERID", cni.container_id), ("CNI_IFNAME", cni.ifname))
               if not v]
    if command in ("ADD", "CHECK") and not cni.netns:
        missing.append("CNI_NETNS")
    if missing:
        raise CniError(ERR_INVALID_ENV, "required CNI variables missing", ", ".join(missing))
    if len(cni.ifname) > 15 or "/" in cni.ifname:
        raise CniError(ERR_INVALID_ENV, "invalid CNI_IFNAME",
                       f"{cni.ifname!r}: at most 15 characters, no '/'")
    return cni


@dataclass(frozen=True, slots=True)
class IpamConf:
    type: str
    assign_ipv4: bool = True
    assign_ipv6: bool = False
    ipv4_pools: tuple[str, ...] = ()
    ipv6_pools: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NetConf:
    """One network configuration (a conflist entry) with the fields Wren reads."""

    cni_version: str
    name: str
    type: str
    ipam: IpamConf
    nodename: str = ""
    mtu: int = 0  # 0: read the MTU file the agent writes
    datastore_type: str = ""
    etcd_endpoints: str = ""
    kubeconfig: str = ""
    log_level: str = "info"
    prev_result: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


def _flag(value: Any, *, default: bool, name: str) -> bool:
    """Calico spells `assign_ipv4` as the string "true"/"false"; accept real booleans too."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise CniError(ERR_INVALID_CONFIG, "invalid network configuration",
                   f"field ipam.{name}: expected \"true\" or \"false\", got {value!r}")


def _pools(value: Any, *, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CniError(ERR_INVALID_CONFIG, "invalid network configuration",
                       f"field ipam.{name}: expected a list of pool names or CIDRs")
    return tuple(value)


def parse_netconf(data: bytes | str) -> NetConf:
    """Decode stdin (error 6 if not JSON, 7 if a field is wrong, 1 if the version is unknown)."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(ERR_DECODE, "network configuration on stdin is not JSON", str(exc)) from None
    if not isinstance(raw, dict):
        raise CniError(ERR_DECODE, "network configuration on stdin is not a JSON object")
    version = str(raw.get("cniVersion", ""))
    if version not in SUPPORTED_VERSIONS:
        raise CniError(ERR_INCOMPATIBLE_VERSION, "incompatible CNI version",
                       f"config has cniVersion {version!r}; supported: "
                       + ", ".join(SUPPORTED_VERSIONS))
    for key in ("name", "type"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise CniError(ERR_INVALID_CONFIG, "invalid network configuration",
                           f"field {key}: required string")
    ipam_raw = raw.get("ipam") or {}
    if not isinstance(ipam_raw, dict):
        raise CniError(ERR_INVALID_CONFIG, "invalid network configuration",
                       "field ipam: expected an object")
    ipam = IpamConf(
        type=str(ipam_raw.get("type", "")),
        assign_ipv4=_flag(ipam_raw.get("assign_ipv4"), default=True, name="assign_ipv4"),
        assign_ipv6=_flag(ipam_raw.get("assign_ipv6"), default=False, name="assign_ipv6"),
        ipv4_pools=_pools(ipam_raw.get("ipv4_pools"), name="ipv4_pools"),
        ipv6_pools=_pools(ipam_raw.get("ipv6_pools"), name="ipv6_pools"),
        raw=ipam_raw,
    )
    mtu = raw.get("mtu", 0)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not (mtu == 0 or 68 <= mtu <= 65535):
        raise CniError(ERR_INVALID_CONFIG, "invalid network configuration",
                       f"field mtu: expected an integer 68-65535, got {mtu!r}")
    kube = raw.get("kubernetes") or {}
    prev = raw.get("prevResult")
    return NetConf(
        cni_version=version,
        name=raw["name"],
        type=raw["type"],
        ipam=ipam,
        nodename=str(raw.get("nodename") or ""),
        mtu=mtu,
        datastore_type=str(raw.get("datastore_type") or ""),
        etcd_endpoints=str(raw.get("etcd_endpoints") or ""),
        kubeconfig=str(kube.get("kubeconfig") or "") if isinstance(kube, dict) else "",
        log_level=str(raw.get("log_level") or "info"),
        prev_result=prev if isinstance(prev, dict) else None,
        raw=raw,
    )


def handle_id(network: str, container_id: str) -> str:
    """The IPAM handle of one container on one network: `<network>.<containerID>`, as Calico."""
    return f"{network}.{container_id}"


@dataclass(frozen=True, slots=True)
class CniInterface:
    name: str
    mac: str = ""
    sandbox: str = ""  # set for the container-side interface only


@dataclass(frozen=True, slots=True)
class CniIP:
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    interface: int | None = None  # index into CniResult.interfaces
    gateway: str = ""


@dataclass(frozen=True, slots=True)
class CniResult:
    """A plugin's success result; `to_json` writes it in the version the config asked for."""

    ips: tuple[CniIP, ...]
    interfaces: tuple[CniInterface, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()  # (dst, gw); gw "" for none
    dns: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self, cni_version: str) -> dict[str, Any]:
        old = cni_version in ("0.3.0", "0.3.1", "0.4.0")
        out: dict[str, Any] = {"cniVersion": cni_version}
        if self.interfaces:
            ifaces = []
            for i in self.interfaces:
                entry: dict[str, Any] = {"name": i.name}
                if i.mac:
                    entry["mac"] = i.mac
                if i.sandbox:
                    entry["sandbox"] = i.sandbox
                ifaces.append(entry)
            out["interfaces"] = ifaces
        ips = []
        for ip in self.ips:
            e: dict[str, Any] = {"address": str(ip.address)}
            if old:
                e["version"] = str(ip.address.version)
            if ip.interface is not None:
                e["interface"] = ip.interface
            if ip.gateway:
                e["gateway"] = ip.gateway
            ips.append(e)
        out["ips"] = ips
        if self.routes:
            out["routes"] = [{"dst": d, "gw": g} if g else {"dst": d} for d, g in self.routes]
        out["dns"] = dict(self.dns)
        return out

    @staticmethod
    def from_json(body: Mapping[str, Any]) -> CniResult:
        """Parse a delegated IPAM plugin's result (or a prevResult)."""
        try:
            ips = tuple(
                CniIP(
                    address=ipaddress.ip_interface(e["address"]),
                    interface=e.get("interface"),
                    gateway=str(e.get("gateway") or ""),
                )
                for e in body.get("ips") or []
            )
            ifaces = tuple(
                CniInterface(name=i["name"], mac=i.get("mac", ""), sandbox=i.get("sandbox", ""))
                for i in body.get("interfaces") or []
            )
            routes = tuple((r["dst"], str(r.get("gw") or "")) for r in body.get("routes") or [])
        except (KeyError, TypeError, ValueError) as exc:
            raise CniError(ERR_DECODE, "cannot decode CNI result", repr(exc)) from None
        return CniResult(ips=ips, interfaces=ifaces, routes=routes, dns=body.get("dns") or {})


def version_result(cni_version: str = "1.0.0") -> dict[str, Any]:
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}


