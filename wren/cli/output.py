"""How `wrenctl get` prints resources: calicoctl's tables, or YAML/JSON that `apply` takes back.

Tables read the typed resources, so defaults show (a pool without nodeSelector prints `all()`),
and columns follow calicoctl's (`NAME CIDR SELECTOR` for pools; `-o wide` adds the modes). YAML
and JSON print the stored `projectcalico.org/v3` bodies: one resource as itself, several as a
`<Kind>List`, which `wrenctl apply -f` reads again unchanged. Pure: strings in, strings out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from wren.kinds import API_V3, Kind
from wren.model import Resource

__all__ = ["OUTPUT_FORMATS", "Column", "render", "render_table", "to_document"]

OUTPUT_FORMATS = ("table", "wide", "yaml", "json")


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    value: Callable[[Resource], Any]
    wide_only: bool = False


def _text(value: Any) -> str:
    """Go's formatting of the values calicoctl prints: true/false, blank for unset."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def _name(r: Resource) -> str:
    return r.metadata.name


def _node_asn(r: Resource) -> Any:
    return r.spec.bgp.as_number if r.spec.bgp else None


def _node_ip(version: int) -> Callable[[Resource], Any]:
    def value(r: Resource) -> Any:
        if r.spec.bgp is None:
            return None
        return r.spec.bgp.ipv4_address if version == 4 else r.spec.bgp.ipv6_address

    return value


def _in_use(r: Resource) -> str:
    used = sum(1 for a in r.spec.allocations if a is not None)
    return f"{used}/{len(r.spec.allocations)}"


# calicoctl's columns where it has them; the IPAM kinds get the fields an operator looks for.
_COLUMNS: dict[str, tuple[Column, ...]] = {
    "IPPool": (
        Column("NAME", _name),
        Column("CIDR", lambda r: r.spec.cidr),
        Column("NAT", lambda r: r.spec.nat_outgoing, wide_only=True),
        Column("IPIPMODE", lambda r: r.spec.ipip_mode, wide_only=True),
        Column("VXLANMODE", lambda r: r.spec.vxlan_mode, wide_only=True),
        Column("DISABLED", lambda r: r.spec.disabled, wide_only=True),
        Column("DISABLEBGPEXPORT", lambda r: r.spec.disable_bgp_export, wide_only=True),
        Column("SELECTOR", lambda r: r.spec.node_selector),
    ),
    "IPReservation": (
        Column("NAME", _name),
        Column("CIDRS", lambda r: r.spec.reserved_cidrs),
    ),
    "BGPPeer": (
        Column("NAME", _name),
        Column("PEERIP", lambda r: r.spec.peer_ip or r.spec.peer_selector),
        Column("NODE", lambda r: r.spec.node or r.spec.node_selector or "(global)"),
        Column("ASN", lambda r: r.spec.as_number),
        Column("FILTERS", lambda r: r.spec.filters, wide_only=True),
    ),
    "BGPConfiguration": (
        Column("NAME", _name),
        Column("LOGSEVERITY", lambda r: r.spec.log_severity_screen),
        Column("MESHENABLED", lambda r: r.spec.node_to_node_mesh_enabled),
        Column("ASNUMBER", lambda r: r.spec.as_number),
        Column("LISTENPORT", lambda r: r.spec.listen_port, wide_only=True),
    ),
    "BGPFilter": (Column("NAME", _name),),
    "Node": (
        Column("NAME", _name),
        Column("ASN", _node_asn, wide_only=True),
        Column("IPV4", _node_ip(4), wide_only=True),
        Column("IPV6", _node_ip(6), wide_only=True),
    ),
    "FelixConfiguration": (Column("NAME", _name),),
    "IPAMConfiguration": (
        Column("NAME", _name),
        Column("STRICTAFFINITY", lambda r: r.spec.strict_affinity),
        Column("MAXBLOCKSPERHOST", lambda r: r.spec.max_blocks_per_host, wide_only=True),
    ),
    "IPAMBlock": (
        Column("NAME", _name),
        Column("CIDR", lambda r: r.spec.cidr),
        Column("AFFINITY", lambda r: r.spec.affinity),
        Column("IN-USE", _in_use, wide_only=True),
    ),
    "BlockAffinity": (
        Column("NAME", _name),
        Column("NODE", lambda r: r.spec.node),
        Column("CIDR", lambda r: r.spec.cidr),
        Column("STATE", lambda r: r.spec.state),
    ),
    "IPAMHandle": (
        Column("NAME", _name),
        Column("HANDLEID", lambda r: r.spec.handle_id, wide_only=True),
        Column("BLOCKS", lambda r: sorted(r.spec.block), wide_only=True),
    ),
    "WorkloadEndpoint": (
        Column("NAME", _name, wide_only=True),
        Column("WORKLOAD", lambda r: r.spec.workload or r.spec.pod),
        Column("NODE", lambda r: r.spec.node),
        Column("NETWORKS", lambda r: r.spec.ip_networks),
        Column("INTERFACE", lambda r: r.spec.interface_name),
        Column("PROFILES", lambda r: r.spec.profiles, wide_only=True),
        Column("NATS", lambda r: [f"{n.internal_ip}->{n.external_ip}" for n in r.spec.ip_nats],
               wide_only=True),
    ),
}


def render_table(
    kind: Kind, resources: Sequence[Resource], *, wide: bool = False, namespaces: bool = False
) -> str:
    """Columns separated by three spaces, like calicoctl's tabwriter output."""
    columns = [c for c in _COLUMNS.get(kind.name, (Column("NAME", _name),))
               if wide or not c.wide_only]
    if namespaces:
        columns.insert(0, Column("NAMESPACE", lambda r: r.metadata.namespace))
    rows = [[c.header for c in columns]]
    rows += [[_text(c.value(r)) for c in columns] for r in resources]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("   ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def to_document(kind: Kind, resources: Sequence[Resource], *, as_list: bool) -> dict[str, Any]:
    """One resource's body, or a `<Kind>List` of them (what calicoctl prints for a listing)."""
    if not as_list and len(resources) == 1:
        return resources[0].to_body()
    return {
        "apiVersion": API_V3,
        "kind": f"{kind.name}List",
        "items": [r.to_body() for r in resources],
    }


def render(
    kind: Kind,
    resources: Sequence[Resource],
    *,
    output: str,
    as_list: bool,
    namespaces: bool = False,
) -> str:
    """Resources in one of OUTPUT_FORMATS."""
    if output in ("table", "wide"):
        return render_table(kind, resources, wide=output == "wide", namespaces=namespaces)
    doc = to_document(kind, resources, as_list=as_list)
    if output == "json":
        return json.dumps(doc, indent=2) + "\n"
    if output == "yaml":
        return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    raise ValueError(f"unknown output format {output!r} (one of {', '.join(OUTPUT_FORMATS)})")
