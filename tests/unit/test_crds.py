"""The CRDs in crds/: valid Kubernetes objects, structural, one per kind, in step with the model,
and every example resource in the repository passes its CRD's schema.

The schema checks run offline: `kubernetes-validate` holds the Kubernetes OpenAPI schemas, and
`jsonschema` checks resources against each CRD's openAPIV3Schema after a small conversion of the
OpenAPI dialect (nullable, int-or-string, preserve-unknown-fields, pruning of unknown fields
turned into an error so a typo in an example fails here rather than vanishing on the server).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from wren.kinds import GROUP_CRD, KINDS, Kind, kind_by_name
from wren.model import parse, resource_class

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
K8S_VERSION = "1.28"
CALICO_APIS = {"projectcalico.org/v3", "crd.projectcalico.org/v1"}


def _load_crds() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path.name}: one CRD per file"
        out[path.name] = docs[0]
    return out


CRDS = _load_crds()
CRD_BY_KIND = {crd["spec"]["names"]["kind"]: crd for crd in CRDS.values()}


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRD_BY_KIND[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# -- OpenAPI v3 (Kubernetes dialect) -> JSON Schema ------------------------------------------
def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema that accepts what the API server accepts, and rejects fields it would prune."""
    node = copy.deepcopy(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format", "description"):
            continue
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"],
                                                                                 "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def schema_errors(kind: str, body: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(to_json_schema(_schema(kind)))
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(body)
    ]


# -- structural schema rules (what apiextensions.k8s.io/v1 insists on) -----------------------
def structural_problems(node: dict[str, Any], path: str = "") -> Iterator[str]:
    """The parts of Kubernetes' structural-schema rules a hand-written schema can get wrong."""
    open_ended = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if "type" not in node and not open_ended:
        yield f"{path or '<root>'}: no type"
    if node.get("x-kubernetes-int-or-string") and "type" in node:
        yield f"{path}: int-or-string must not also declare a type"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: properties and additionalProperties are mutually exclusive"
    for banned in ("$ref", "oneOf", "anyOf", "allOf", "not", "definitions", "uniqueItems"):
        if banned in node:
            yield f"{path}: {banned} is not allowed in a structural schema"
    if node.get("type") == "array" and "items" not in node:
        yield f"{path}: array without items"
    if node.get("x-kubernetes-list-type") == "set":
        item_type = node.get("items", {}).get("type")
        if item_type in ("object", "array"):
            yield f"{path}: listType set needs scalar items"
    for key, child in node.get("properties", {}).items():
        yield from structural_problems(child, f"{path}.{key}" if path else key)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from structural_problems(node[key], f"{path}[{key}]")
    pattern = node.get("pattern")
    if pattern is not None:
        re.compile(pattern)  # RE2 and Python agree on the subset used here


# -- the CRD objects --------------------------------------------------------------------------
@pytest.mark.parametrize("filename", sorted(CRDS))
def test_crd_is_a_valid_kubernetes_object(filename: str) -> None:
    # strict: a misspelt key anywhere in the CRD (e.g. "addtionalPrinterColumns") fails.
    assert kubernetes_validate.validate(CRDS[filename], K8S_VERSION, strict=True)


@pytest.mark.parametrize("filename", sorted(CRDS))
def test_crd_schema_is_structural(filename: str) -> None:
    schema = CRDS[filename]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert list(structural_problems(schema)) == []


@pytest.mark.parametrize("filename", sorted(CRDS))
def test_crd_names_group_scope_and_version_follow_the_kinds_table(filename: str) -> None:
    crd = CRDS[filename]
    names = crd["spec"]["names"]
    kind = kind_by_name(names["kind"])
    assert kind.name == names["kind"]
    assert names["plural"] == kind.plural
    assert names["listKind"] == f"{kind.name}List"
    assert crd["metadata"]["name"] == f"{kind.plural}.{GROUP_CRD}"
    assert crd["spec"]["group"] == GROUP_CRD
    assert crd["spec"]["scope"] == ("Namespaced" if kind.namespaced else "Cluster")
    assert filename == f"{kind.plural}.yaml"
    [version] = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)


def test_crd_set_covers_exactly_the_kinds_table() -> None:
    assert sorted(CRD_BY_KIND) == sorted(k.name for k in KINDS)
    assert len(CRD_BY_KIND) == len(CRDS)


# -- the schemas enforce the rules they can ----------------------------------------------------
def _pool(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPPool",
        "metadata": {"name": "p1"},
        "spec": {"cidr": "10.1.0.0/16", **spec},
    }


def test_ippool_schema_accepts_a_calico_pool() -> None:
    pool = _pool(blockSize=26, ipipMode="CrossSubnet", vxlanMode="Never", natOutgoing=True,
                 nodeSelector="all()", allowedUses=["Workload", "Tunnel"])
    assert schema_errors("IPPool", pool) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"blockSize": 19}, "spec.blockSize"),
        ({"blockSize": 129}, "spec.blockSize"),
        ({"ipipMode": "Sometimes"}, "spec.ipipMode"),
        ({"vxlanMode": "always"}, "spec.vxlanMode"),
        ({"cidr": "10.1.0.0"}, "spec.cidr"),
        ({"natOutgoing": "yes"}, "spec.natOutgoing"),
        ({"allowedUses": ["Everything"]}, "spec.allowedUses.0"),
        ({"ipipmode": "Always"}, "spec"),  # misspelt field: the server would drop it
    ],
)
def test_ippool_schema_rejects_bad_values_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    errors = schema_errors("IPPool", _pool(**spec))
    assert errors and errors[0].startswith(f"{field}:")


def test_ippool_schema_requires_a_cidr() -> None:
    body = _pool()
    del body["spec"]["cidr"]
    assert any("'cidr' is a required property" in e for e in schema_errors("IPPool", body))


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        ("BGPPeer", {"peerIP": "192.0.2.1", "asNumber": 4294967296}, "spec.asNumber"),
        ("BGPPeer", {"peerIP": "192.0.2.1", "asNumber": -1}, "spec.asNumber"),
        ("BGPPeer", {"peerIP": "not-an-ip"}, "spec.peerIP"),
        ("BGPPeer", {"peerIP": "192.0.2.1", "sourceAddress": "Any"}, "spec.sourceAddress"),
        ("BGPConfiguration", {"listenPort": 0}, "spec.listenPort"),
        ("BGPConfiguration", {"listenPort": 65536}, "spec.listenPort"),
        ("BGPConfiguration", {"communities": [{"name": "a", "value": "1-2"}]},
         "spec.communities.0.value"),
        ("Node", {"vxlanTunnelMACAddr": "66:cf:23:df:22"}, "spec.vxlanTunnelMACAddr"),
        ("BlockAffinity", {"state": "gone", "node": "n1", "cidr": "10.0.0.0/26"}, "spec.state"),
        ("FelixConfiguration", {"vxlanPort": 70000}, "spec.vxlanPort"),
        ("BGPFilter", {"exportV4": [{"action": "Accept", "cidr": "fd00::/64",
                                     "matchOperator": "In"}]}, "spec.exportV4.0.cidr"),
    ],
)
def test_schemas_reject_out_of_range_and_malformed_values(
    kind: str, spec: dict[str, Any], field: str
) -> None:
    body = {"apiVersion": "crd.projectcalico.org/v1", "kind": kind,
            "metadata": {"name": "x"}, "spec": spec}
    errors = schema_errors(kind, body)
    assert errors and errors[0].startswith(f"{field}:")


def test_ipamblock_schema_takes_null_allocations() -> None:
    body = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
            "metadata": {"name": "10-0-0-0-26"},
            "spec": {"cidr": "10.0.0.0/26", "affinity": "host:n1", "allocations": [0, None],
                     "unallocated": [1], "attributes": [{"handle_id": "h1", "secondary": {}}],
                     "strictAffinity": False, "deleted": False, "sequenceNumber": 0}}
    assert schema_errors("IPAMBlock", body) == []


def test_felixconfiguration_keeps_felix_options_wren_does_not_type() -> None:
    body = {"apiVersion": "crd.projectcalico.org/v1", "kind": "FelixConfiguration",
            "metadata": {"name": "default"},
            "spec": {"bpfEnabled": False, "bpfLogLevel": "Off", "flowLogsFlushInterval": "15s"}}
    assert schema_errors("FelixConfiguration", body) == []


# -- every example in the repository passes its CRD and the model -----------------------------
def _example_documents() -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    paths = sorted((ROOT / "examples").glob("**/*.yaml")) + sorted(
        (ROOT / "deploy").glob("**/*.yaml")
    )
    for path in paths:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and doc.get("apiVersion") in CALICO_APIS:
                out.append((str(path.relative_to(ROOT)), i, doc))
    return out


EXAMPLES = _example_documents()
EXAMPLE_IDS = [f"{p}#{i}:{d['kind']}/{d['metadata']['name']}" for p, i, d in EXAMPLES]


def test_examples_include_pools_bgp_configuration_peers_and_felix_configuration() -> None:
    kinds = {doc["kind"] for _, _, doc in EXAMPLES}
    assert {"IPPool", "BGPConfiguration", "BGPPeer", "FelixConfiguration"} <= kinds


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=EXAMPLE_IDS
)
def test_example_passes_its_crd_schema(example: tuple[str, int, dict[str, Any]]) -> None:
    _, _, doc = example
    assert schema_errors(doc["kind"], doc) == []


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=EXAMPLE_IDS
)
def test_example_passes_the_model_and_its_written_form_passes_the_crd(
    example: tuple[str, int, dict[str, Any]],
) -> None:
    # What Wren stores is the model's to_body(); the CRD must accept that form too.
    _, _, doc = example
    stored = parse(doc).to_body()
    assert schema_errors(doc["kind"], stored) == []


# -- CRD fields and model fields are the same names ------------------------------------------
def _model_vs_crd(cls: type[Any], schema: dict[str, Any], path: str) -> Iterator[str]:
    """Walk a model spec class and a CRD schema side by side, reporting names only one has."""
    from wren.model._fields import JsonField, ListOf, MapOf, Nullable, Obj

    fields: dict[str, JsonField] = {
        f.metadata["wren"].key: f.metadata["wren"]
        for f in cls.__dataclass_fields__.values()
        if "wren" in f.metadata
    }
    crd_props: dict[str, Any] = schema.get("properties", {})
    for key in sorted(set(fields) - set(crd_props)):
        yield f"{path}.{key}: in the model, missing from the CRD"
    if not schema.get("x-kubernetes-preserve-unknown-fields"):
        for key in sorted(set(crd_props) - set(fields)):
            yield f"{path}.{key}: in the CRD, unknown to the model"
    for key, spec in fields.items():
        if key not in crd_props:
            continue
        conv, sub = spec.conv, crd_props[key]
        while True:
            if isinstance(conv, Nullable):
                conv = conv.inner
            elif isinstance(conv, ListOf):
                conv, sub = conv.item, sub.get("items", {})
            elif isinstance(conv, MapOf):
                conv, sub = conv.item, sub.get("additionalProperties", {})
            else:
                break
        if isinstance(conv, Obj):
            yield from _model_vs_crd(conv.cls, sub, f"{path}.{key}")


def _modelled_kinds() -> list[Kind]:
    out = []
    for kind in KINDS:
        try:
            resource_class(kind)
        except KeyError:
            continue
        out.append(kind)
    return out


@pytest.mark.parametrize("kind", _modelled_kinds(), ids=lambda k: k.name)
def test_crd_fields_match_the_model_fields(kind: Kind) -> None:
    cls = resource_class(kind)
    assert list(_model_vs_crd(cls.SPEC, _schema(kind.name)["properties"]["spec"], "spec")) == []


def test_felixconfiguration_crd_types_only_fields_felix_has() -> None:
    from wren.model.felix import FELIX_FIELDS

    typed = set(_schema("FelixConfiguration")["properties"]["spec"]["properties"])
    assert typed - FELIX_FIELDS == set()


# -- what the model accepts and writes, the API server must accept too ----------------------------
def _body(kind: str, spec: dict[str, Any], name: str = "edge") -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name},
            "spec": spec}


MODEL_VALID_EDGES = [
    _body("IPPool", {"cidr": "10.0.0.0/8", "blockSize": 20}),
    _body("IPPool", {"cidr": "10.0.0.0/16", "blockSize": 32, "assignmentMode": "Manual"}),
    _body("IPPool", {"cidr": "fd00::/48", "blockSize": 128, "allowedUses": ["LoadBalancer"]}),
    _body("IPPool", {"cidr": "fd00::/48", "blockSize": 116, "disableBGPExport": True}),
    _body("IPReservation", {"reservedCIDRs": ["10.0.0.1", "10.0.1.0/24", "fd00::1/128"]}),
    _body("BGPPeer", {"peerIP": "[fd00::1]:1179", "asNumber": "1.10", "ttlSecurity": 255}),
    _body("BGPPeer", {"peerIP": "192.0.2.1:1179", "asNumber": 4294967295,
                      "keepaliveTime": "1m30s", "numAllowedLocalASNumbers": 2,
                      "nextHopMode": "Self", "filters": ["f1"], "reachableBy": "192.0.2.254"}),
    _body("BGPPeer", {"peerSelector": "rr == 'true'", "nodeSelector": "all()",
                      "sourceAddress": "None", "localASNumber": 1,
                      "password": {"secretKeyRef": {"name": "s", "key": "k"}}}),
    _body("BGPConfiguration", {"logSeverityScreen": "warning", "asNumber": "65000",
                               "listenPort": 65535, "nodeMeshMaxRestartTime": "2m",
                               "localWorkloadPeeringIPV4": "169.254.0.179",
                               "ignoredInterfaces": ["eth*"], "bindMode": "NodeIP",
                               "communities": [{"name": "big", "value": "4200000000:1:2"}],
                               "prefixAdvertisements": [{"cidr": "fd00::/64",
                                                         "communities": ["big"]}]}),
    _body("BGPFilter", {"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/8",
                                      "matchOperator": "In",
                                      "prefixLength": {"min": 24, "max": 32}}],
                        "importV6": [{"action": "Reject", "cidr": "fd00::/8",
                                      "matchOperator": "NotIn", "interface": "eth*",
                                      "prefixLength": {"max": 128}}]}),
    _body("Node", {"bgp": {"asNumber": 64512, "ipv4Address": "192.0.2.10/24",
                           "ipv6Address": "fd00::10/64", "ipv4IPIPTunnelAddr": "10.244.1.0",
                           "routeReflectorClusterID": "224.0.0.1"},
                   "ipv4VXLANTunnelAddr": "10.244.1.1", "vxlanTunnelMACAddr": "66:cf:23:df:22:07",
                   "addresses": [{"address": "192.0.2.10", "type": "InternalIP"}],
                   "orchRefs": [{"orchestrator": "k8s", "nodeName": "n1"}]}),
    _body("FelixConfiguration", {"logSeverityScreen": "Debug", "vxlanVNI": 16777215,
                                 "vxlanPort": 1, "routeRefreshInterval": "0s",
                                 "routeTableRange": {"min": 1, "max": 250},
                                 "natOutgoingAddress": "fd00::1", "bpfLogLevel": "Off"}),
    _body("IPAMConfiguration", {"strictAffinity": True, "maxBlocksPerHost": 0},
          name="default"),
    _body("IPAMBlock", {"cidr": "10.0.0.0/30", "affinity": "host:n1",
                        "allocations": [0, None, 1, None], "unallocated": [1, 3],
                        "attributes": [{"handle_id": "h1", "secondary": {"node": "n1"}},
                                       {"handle_id": "ipip-tunnel-addr-n1"}],
                        "sequenceNumber": 7, "sequenceNumberForAllocation": {"0": 1}}),
    _body("BlockAffinity", {"state": "pendingDeletion", "node": "n1", "cidr": "fd00::/122",
                            "deleted": "true"}),
    _body("IPAMHandle", {"handleID": "k8s-pod-network.abc", "block": {"10.0.0.0/26": 2}}),
    _body("WorkloadEndpoint", {"node": "n1", "orchestrator": "k8s", "pod": "p", "endpoint": "eth0",
                               "interfaceName": "cali12345678901", "mac": "ee:ee:ee:ee:ee:ee",
                               "ipNetworks": ["10.244.0.5/32", "fd00::5/128"],
                               "ipNATs": [{"internalIP": "10.244.0.5",
                                           "externalIP": "203.0.113.5"}],
                               "ports": [{"name": "dns", "protocol": "UDP", "port": 53},
                                         {"name": "x", "protocol": 132, "port": 9,
                                          "hostPort": 9}]}),
]


@pytest.mark.parametrize("body", MODEL_VALID_EDGES,
                         ids=[f"{b['kind']}-{i}" for i, b in enumerate(MODEL_VALID_EDGES)])
def test_what_the_model_accepts_and_writes_passes_the_crd(body: dict[str, Any]) -> None:
    # If this direction broke, a write wrenctl accepts would be refused by the API server.
    stored = parse(body).to_body()
    assert schema_errors(body["kind"], stored) == []
