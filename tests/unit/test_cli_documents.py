"""The pure parts of wrenctl: reading resource files, merge patches, labels, tables."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from wren.cli.documents import DocumentError, read_documents, validate_documents
from wren.cli.edits import (
    EditError,
    apply_label_changes,
    merge_patch,
    parse_label_args,
    patch_body,
)
from wren.cli.output import render, render_table, to_document
from wren.kinds import kind_by_name
from wren.model import parse

POOL_A = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
          "metadata": {"name": "a"}, "spec": {"cidr": "10.1.0.0/16"}}
POOL_B = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
          "metadata": {"name": "b"}, "spec": {"cidr": "10.2.0.0/16", "ipipMode": "Always"}}


# -- reading files ---------------------------------------------------------------------------
def test_yaml_stream_gives_one_document_per_resource_and_skips_empty_ones() -> None:
    text = "---\n" + yaml.safe_dump(POOL_A) + "---\n---\n" + yaml.safe_dump(POOL_B)
    docs = read_documents(text, source="pools.yaml")
    assert [d.body["metadata"]["name"] for d in docs] == ["a", "b"]
    assert [d.where for d in docs] == ["pools.yaml document 1", "pools.yaml document 3"]


def test_json_object_and_json_array_are_read() -> None:
    assert len(read_documents(json.dumps(POOL_A), source="p.json")) == 1
    docs = read_documents(json.dumps([POOL_A, POOL_B]), source="p.json")
    assert [d.where for d in docs] == ["p.json document 1 item 1", "p.json document 1 item 2"]


def test_calicoctl_list_output_is_flattened_and_items_inherit_kind_and_api_version() -> None:
    listing = {"apiVersion": "projectcalico.org/v3", "kind": "IPPoolList",
               "items": [{"metadata": {"name": "a"}, "spec": {"cidr": "10.1.0.0/16"}}, POOL_B]}
    [a, b] = read_documents(yaml.safe_dump(listing), source="out.yaml")
    assert (a.body["kind"], a.body["apiVersion"]) == ("IPPool", "projectcalico.org/v3")
    assert b.where == "out.yaml document 1 item 2"


def test_kubectl_generic_list_is_flattened() -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [POOL_A, POOL_B]}
    assert len(read_documents(yaml.safe_dump(listing), source="l.yaml")) == 2


def test_unparseable_file_names_the_file() -> None:
    with pytest.raises(DocumentError, match=r"^bad\.yaml: not valid YAML or JSON"):
        read_documents("kind: IPPool\n  metadata: [", source="bad.yaml")


def test_file_without_resources_is_an_error() -> None:
    with pytest.raises(DocumentError, match="no resources found"):
        read_documents("---\n# nothing\n", source="empty.yaml")


# -- validating a batch ------------------------------------------------------------------------
def test_every_invalid_document_is_reported_with_file_document_kind_name_and_field() -> None:
    bad_size = {**POOL_A, "spec": {"cidr": "10.1.0.0/16", "blockSize": 40}}
    bad_mode = {**POOL_B, "spec": {"cidr": "10.2.0.0/16", "ipipMode": "Sometimes"}}
    docs = read_documents(yaml.safe_dump_all([bad_size, POOL_A | {"metadata": {"name": "c"}},
                                              bad_mode]), source="p.yaml")
    with pytest.raises(DocumentError) as err:
        validate_documents(docs)
    first, second = err.value.problems
    assert first.startswith("p.yaml document 1: IPPool 'a': field spec.blockSize:")
    assert "40" in first
    assert second.startswith("p.yaml document 3: IPPool 'b': field spec.ipipMode:")


def test_same_resource_twice_in_one_batch_is_refused() -> None:
    docs = read_documents(yaml.safe_dump_all([POOL_A, POOL_A]), source="p.yaml")
    with pytest.raises(DocumentError, match=r"also defined in p\.yaml document 1"):
        validate_documents(docs)


def test_non_mapping_document_is_refused() -> None:
    with pytest.raises(DocumentError, match="must be a mapping"):
        validate_documents(read_documents("just a string\n", source="s.yaml"))


WEP = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
       "metadata": {"name": "n1-k8s-pod1-eth0"},
       "spec": {"node": "n1", "orchestrator": "k8s", "pod": "pod1", "endpoint": "eth0",
                "interfaceName": "cali0123456789a", "ipNetworks": ["10.244.0.5/32"]}}


def test_namespace_option_fills_in_namespaced_resources_only() -> None:
    docs = read_documents(yaml.safe_dump_all([WEP, POOL_A]), source="w.yaml")
    [(_, wep), (_, pool)] = validate_documents(docs, namespace="ns1")
    assert wep.metadata.namespace == "ns1"
    assert pool.metadata.namespace is None


def test_namespace_option_that_contradicts_the_file_is_refused() -> None:
    body = {**WEP, "metadata": {**WEP["metadata"], "namespace": "other"}}
    docs = read_documents(yaml.safe_dump(body), source="w.yaml")
    with pytest.raises(DocumentError, match="namespace 'other' but --namespace 'ns1'"):
        validate_documents(docs, namespace="ns1")


# -- merge patch and labels --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": {"b": "c", "d": 1}}, {"a": {"d": None, "e": 2}}, {"a": {"b": "c", "e": 2}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": "b"}, {"a": {"c": None}}, {"a": {}}),
        ({}, {"a": {"b": {"c": None}}}, {"a": {"b": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_leaves_the_target_unchanged() -> None:
    target = {"spec": {"a": 1}}
    merge_patch(target, {"spec": {"a": 2}})
    assert target == {"spec": {"a": 1}}


@pytest.mark.parametrize(
    "patch",
    [{"metadata": {"name": "other"}}, {"kind": "BGPPeer"}, {"metadata": {"namespace": "x"}}],
)
def test_patch_cannot_turn_a_resource_into_another_one(patch: dict[str, Any]) -> None:
    with pytest.raises(EditError, match="cannot change"):
        patch_body(POOL_A, patch)


def test_patch_must_be_an_object() -> None:
    with pytest.raises(EditError, match="JSON object"):
        patch_body(POOL_A, [1])


def test_label_arguments_are_key_value_pairs_with_kubernetes_syntax() -> None:
    assert parse_label_args(["a=b", "example.com/rack=r-1", "empty="], remove=False) == [
        ("a", "b"), ("example.com/rack", "r-1"), ("empty", "")]
    assert parse_label_args(["a", "b=ignored"], remove=True) == [("a", None), ("b", None)]


@pytest.mark.parametrize(
    ("arg", "message"),
    [("novalue", "give key=value"), ("-bad=x", "label key '-bad'"),
     ("Bad_Prefix/x=y", "DNS subdomain"), ("a=" + "v" * 64, "at most 63"), ("a=x y", "a value")],
)
def test_malformed_labels_are_refused_saying_why(arg: str, message: str) -> None:
    with pytest.raises(EditError, match=message):
        parse_label_args([arg], remove=False)


def test_label_changes_need_overwrite_to_change_a_value_and_remove_needs_the_key() -> None:
    assert apply_label_changes({"a": "1"}, [("a", "1"), ("b", "2")], overwrite=False) == {
        "a": "1", "b": "2"}
    with pytest.raises(EditError, match="--overwrite"):
        apply_label_changes({"a": "1"}, [("a", "2")], overwrite=False)
    assert apply_label_changes({"a": "1"}, [("a", "2")], overwrite=True) == {"a": "2"}
    assert apply_label_changes({"a": "1"}, [("a", None)], overwrite=False) == {}
    with pytest.raises(EditError, match="not set"):
        apply_label_changes({}, [("a", None)], overwrite=False)


# -- output ------------------------------------------------------------------------------------
def test_pool_table_has_calicoctl_columns_aligned_with_defaults_filled_in() -> None:
    pools = [parse(POOL_A), parse(POOL_B)]
    assert render_table(kind_by_name("IPPool"), pools) == (
        "NAME   CIDR          SELECTOR\n"
        "a      10.1.0.0/16   all()\n"
        "b      10.2.0.0/16   all()\n"
    )


def test_wide_pool_table_adds_nat_modes_and_disabled() -> None:
    out = render_table(kind_by_name("IPPool"), [parse(POOL_B)], wide=True)
    header, row = out.splitlines()
    assert header.split() == ["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED",
                              "DISABLEBGPEXPORT", "SELECTOR"]
    assert row.split() == ["b", "10.2.0.0/16", "false", "Always", "Never", "false", "false",
                           "all()"]


def test_table_with_namespaces_starts_with_a_namespace_column() -> None:
    wep = parse({**WEP, "metadata": {**WEP["metadata"], "namespace": "ns1"}})
    header, row = render_table(kind_by_name("wep"), [wep], namespaces=True).splitlines()
    assert header.split() == ["NAMESPACE", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE"]
    assert row.split() == ["ns1", "pod1", "n1", "10.244.0.5/32", "cali0123456789a"]


@pytest.mark.parametrize("kind", ["BGPPeer", "BGPConfiguration", "Node", "IPAMBlock",
                                  "BlockAffinity", "IPAMHandle", "FelixConfiguration"])
def test_empty_listing_prints_the_header_of_every_kind(kind: str) -> None:
    out = render(kind_by_name(kind), [], output="wide", as_list=True)
    assert out.startswith("NAME")
    assert out.count("\n") == 1


def test_one_resource_prints_as_itself_several_as_a_kind_list() -> None:
    kind = kind_by_name("IPPool")
    assert to_document(kind, [parse(POOL_A)], as_list=False)["kind"] == "IPPool"
    listing = to_document(kind, [parse(POOL_A)], as_list=True)
    assert listing["kind"] == "IPPoolList"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["a"]
    assert json.loads(render(kind, [parse(POOL_A)], output="json", as_list=False))["spec"][
        "cidr"] == "10.1.0.0/16"
