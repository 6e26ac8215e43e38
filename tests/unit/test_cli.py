"""wrenctl commands end to end through click, on the in-memory backend.

Each test gets a fresh MemoryBackend injected through the click context object, so what a
command wrote (or, for the error paths, did not write) is read back from the store directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from wren.cli.context import CliContext
from wren.cli.main import build_cli, cli
from wren.datastore.backend import Body, Listing
from wren.datastore.memory import MemoryBackend
from wren.errors import DatastoreUnavailable
from wren.kinds import Kind, kind_by_name

ROOT = Path(__file__).resolve().parents[2]
POOL_KIND = kind_by_name("IPPool")


def pool(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}


def as_yaml(*bodies: Mapping[str, Any]) -> str:
    return yaml.safe_dump_all([dict(b) for b in bodies])


@pytest.fixture
def store() -> MemoryBackend:
    return MemoryBackend()


Run = Callable[..., Result]


@pytest.fixture
def run(store: MemoryBackend) -> Run:
    def invoke(*args: str, input: str | None = None, env: Mapping[str, str] | None = None,
               backend: Any = None) -> Result:
        chosen = store if backend is None else backend
        ctx = CliContext(backend_factory=lambda: chosen, env=env or {})
        return CliRunner().invoke(cli, list(args), obj=ctx, input=input)

    return invoke


def names(store: MemoryBackend, kind: str = "IPPool") -> list[str]:
    return [b["metadata"]["name"] for b in store.list(kind_by_name(kind)).items]


def stored(store: MemoryBackend, name: str, kind: str = "IPPool") -> Body:
    return store.get(kind_by_name(kind), name)


# -- create / apply / replace from files ----------------------------------------------------
def test_apply_of_the_example_pools_stores_them_all(run: Run, store: MemoryBackend) -> None:
    result = run("apply", "-f", str(ROOT / "examples" / "ippools.yaml"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Successfully applied 4 'IPPool' resource(s)\n"
    assert names(store) == ["default-ipv4-ippool", "default-ipv6-ippool", "old-pool",
                            "rack-b-vxlan"]


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_file_applies(run: Run, example: Path) -> None:
    result = run("apply", "-f", str(example))
    assert result.exit_code == 0, result.output


def test_apply_reads_stdin_and_json(run: Run, store: MemoryBackend) -> None:
    result = run("apply", "-f", "-", input=json.dumps(pool("p1", "10.1.0.0/16")))
    assert result.exit_code == 0, result.output
    assert names(store) == ["p1"]


def test_one_invalid_document_means_nothing_is_written_and_the_error_names_it(
    run: Run, store: MemoryBackend
) -> None:
    text = as_yaml(pool("good", "10.1.0.0/16"), pool("p1", "10.2.0.0/16", blockSize=40))
    result = run("apply", "-f", "-", input=text)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert ("<stdin> document 2: IPPool 'p1': field spec.blockSize:" in result.stderr)
    assert "40" in result.stderr
    assert "nothing was applied" in result.stderr
    assert names(store) == []


def test_conflict_with_stored_state_is_found_before_any_write(
    run: Run, store: MemoryBackend
) -> None:
    assert run("apply", "-f", "-", input=as_yaml(pool("old", "10.0.0.0/8"))).exit_code == 0
    text = as_yaml(pool("fine", "192.168.0.0/16"), pool("clash", "10.1.0.0/16"))
    result = run("apply", "-f", "-", input=text)
    assert result.exit_code == 1
    assert "<stdin> document 2: " in result.stderr
    assert "overlaps IPPool 'old'" in result.stderr
    assert names(store) == ["old"]  # 'fine' was not written either


def test_pools_in_one_file_that_overlap_each_other_are_refused(
    run: Run, store: MemoryBackend
) -> None:
    text = as_yaml(pool("a", "10.0.0.0/16"), pool("b", "10.0.128.0/17"))
    result = run("create", "-f", "-", input=text)
    assert result.exit_code == 1
    assert "document 2: IPPool 'b': field spec.cidr" in result.stderr
    assert names(store) == []


def test_create_refuses_an_existing_name_unless_skip_exists(
    run: Run, store: MemoryBackend
) -> None:
    run("create", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    text = as_yaml(pool("p2", "10.2.0.0/16"), pool("p1", "10.1.0.0/16"))
    result = run("create", "-f", "-", input=text)
    assert result.exit_code == 1
    assert "document 2: IPPool 'p1' already exists" in result.stderr
    assert names(store) == ["p1"]
    result = run("create", "--skip-exists", "-f", "-", input=text)
    assert result.exit_code == 0, result.output
    assert "Successfully created 1 'IPPool' resource(s) (1 skipped: already existed)" in (
        result.stdout)
    assert names(store) == ["p1", "p2"]


def test_replace_needs_the_resource_to_exist(run: Run, store: MemoryBackend) -> None:
    result = run("replace", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    assert result.exit_code == 1
    assert "IPPool 'p1' not found" in result.stderr
    assert names(store) == []


def test_replace_overwrites_and_honours_a_stale_resource_version(
    run: Run, store: MemoryBackend
) -> None:
    run("create", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    read = run("get", "ippool", "p1", "-o", "yaml").stdout
    assert run("replace", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16",
                                                        natOutgoing=True))).exit_code == 0
    assert stored(store, "p1")["spec"]["natOutgoing"] is True
    result = run("replace", "-f", "-", input=read)  # read before the replace above
    assert result.exit_code == 1
    assert "changed by someone else" in result.stderr
    assert stored(store, "p1")["spec"]["natOutgoing"] is True


def test_apply_refuses_changing_a_pools_cidr(run: Run, store: MemoryBackend) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    result = run("apply", "-f", "-", input=as_yaml(pool("p1", "10.2.0.0/16")))
    assert result.exit_code == 1
    assert "field spec.cidr: the CIDR of a pool cannot be changed" in result.stderr
    assert stored(store, "p1")["spec"]["cidr"] == "10.1.0.0/16"


def test_a_write_that_fails_midway_reports_partial_success(
    run: Run, store: MemoryBackend
) -> None:
    calls = []

    def fail_second(op: str, body: Body) -> None:
        calls.append(body["metadata"]["name"])
        if len(calls) == 2:
            raise DatastoreUnavailable("etcd put: no endpoint answered (http://127.0.0.1:9: "
                                       "connection refused)")

    store.fault = fail_second
    text = as_yaml(pool("a", "10.1.0.0/16"), pool("b", "10.2.0.0/16"), pool("c", "10.3.0.0/16"))
    result = run("apply", "-f", "-", input=text,
                 env={"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://127.0.0.1:9"})
    assert result.exit_code == 1
    assert "cannot reach the datastore (etcdv3 at ETCD_ENDPOINTS='http://127.0.0.1:9')" in (
        result.stderr)
    assert "<stdin> document 2" in result.stderr
    assert "Partial success: applied the first 1 of 3 resources" in result.stderr
    assert names(store) == ["a"]


def test_unreadable_file_is_an_error_naming_it(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: IPPool\n  metadata: [\n")
    result = run("apply", "-f", str(bad))
    assert result.exit_code == 1
    assert f"{bad}: not valid YAML or JSON" in result.stderr


def test_missing_file_is_an_error_naming_it(run: Run, tmp_path: Path) -> None:
    result = run("apply", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert "nope.yaml" in result.stderr


# -- delete -----------------------------------------------------------------------------------
def test_delete_by_kind_and_names_in_any_spelling(run: Run, store: MemoryBackend) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("a", "10.1.0.0/16"), pool("b", "10.2.0.0/16")))
    result = run("delete", "pools", "a", "b")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Successfully deleted 2 'IPPool' resource(s)\n"
    assert names(store) == []


def test_delete_of_a_missing_resource_fails_unless_skip_not_exists(run: Run) -> None:
    result = run("delete", "ippool", "ghost")
    assert result.exit_code == 1
    assert "IPPool 'ghost' not found" in result.stderr
    assert run("delete", "ippool", "ghost", "--skip-not-exists").exit_code == 0


def test_delete_from_a_file_checks_every_resource_exists_first(
    run: Run, store: MemoryBackend
) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("a", "10.1.0.0/16")))
    text = as_yaml(pool("a", "10.1.0.0/16"), pool("b", "10.2.0.0/16"))
    result = run("delete", "-f", "-", input=text)
    assert result.exit_code == 1
    assert "document 2: IPPool 'b' not found" in result.stderr
    assert names(store) == ["a"]
    result = run("delete", "--skip-not-exists", "-f", "-", input=text)
    assert result.exit_code == 0, result.output
    assert names(store) == []


@pytest.mark.parametrize("args", [(), ("ippool",), ("ippool", "a", "-f", "x.yaml")])
def test_delete_needs_kind_and_name_or_a_file_alone(
    run: Run, args: tuple[str, ...], tmp_path: Path
) -> None:
    if "-f" in args:
        (tmp_path / "x.yaml").write_text(as_yaml(pool("a", "10.1.0.0/16")))
        args = (*args[:-1], str(tmp_path / "x.yaml"))
    result = run("delete", *args)
    assert result.exit_code == 1


# -- get --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["ippool", "ippools", "ipPool", "IPPools", "pool", "ipp"])
def test_get_accepts_every_calicoctl_spelling_of_a_kind(run: Run, spelling: str) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    result = run("get", spelling)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["NAME   CIDR          SELECTOR",
                                          "p1     10.1.0.0/16   all()"]


def test_get_unknown_kind_lists_the_known_ones(run: Run) -> None:
    result = run("get", "ippoool")
    assert result.exit_code == 1
    assert "unknown resource kind 'ippoool'" in result.stderr
    assert "IPPool" in result.stderr


def test_get_wide_adds_calicoctl_wide_columns(run: Run) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16", vxlanMode="CrossSubnet",
                                               natOutgoing=True)))
    header, row = run("get", "ippools", "-o", "wide").stdout.splitlines()
    assert header.split() == ["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED",
                              "DISABLEBGPEXPORT", "SELECTOR"]
    assert row.split() == ["p1", "10.1.0.0/16", "true", "Never", "CrossSubnet", "false",
                           "false", "all()"]


def test_get_yaml_output_applies_back_unchanged(run: Run, store: MemoryBackend) -> None:
    run("apply", "-f", str(ROOT / "examples" / "ippools.yaml"))
    run("apply", "-f", str(ROOT / "examples" / "route-reflectors.yaml"))
    out = run("get", "ippools", "-o", "yaml").stdout
    listing = yaml.safe_load(out)
    assert listing["kind"] == "IPPoolList"
    fresh = MemoryBackend()
    result = run("apply", "-f", "-", input=out, backend=fresh)
    assert result.exit_code == 0, result.output

    def specs(backend: MemoryBackend, kind: Kind) -> list[Any]:
        return [(b["metadata"]["name"], b["spec"]) for b in backend.list(kind).items]

    assert specs(fresh, POOL_KIND) == specs(store, POOL_KIND)
    assert run("get", "ippools", "-o", "yaml", backend=fresh).stdout.replace(
        "resourceVersion: '", "rv: '").count("rv:") == 4


def test_get_one_name_prints_the_resource_itself(run: Run) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    body = json.loads(run("get", "ippool", "p1", "-o", "json").stdout)
    assert (body["kind"], body["metadata"]["name"]) == ("IPPool", "p1")
    assert body["spec"]["blockSize"] == 26  # Calico's default, filled in


def test_get_of_a_missing_name_prints_the_found_ones_and_fails(run: Run) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    result = run("get", "ippool", "p1", "ghost")
    assert result.exit_code == 1
    assert "p1" in result.stdout
    assert "IPPool 'ghost' not found" in result.stderr


def test_get_skips_a_stored_object_that_does_not_validate_with_a_warning(
    run: Run, store: MemoryBackend
) -> None:
    store.create(pool("ok", "10.1.0.0/16"))
    store.create(pool("broken", "10.2.0.0/16", ipipMode="Sometimes"))
    result = run("get", "ippools")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["NAME", "ok"]
    assert "skipped stored IPPool 'broken'" in result.stderr
    assert "spec.ipipMode" in result.stderr


WEP = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
       "metadata": {"name": "n1-k8s-pod1-eth0"},
       "spec": {"node": "n1", "orchestrator": "k8s", "pod": "pod1", "endpoint": "eth0",
                "interfaceName": "cali0123456789a", "ipNetworks": ["10.244.0.5/32"]}}


def test_namespaced_kinds_use_namespace_default_and_all_namespaces(
    run: Run, store: MemoryBackend
) -> None:
    assert run("apply", "-n", "ns1", "-f", "-", input=as_yaml(WEP)).exit_code == 0
    assert run("apply", "-f", "-", input=as_yaml(WEP)).exit_code == 0  # lands in "default"
    assert [b["metadata"]["namespace"] for b in store.list(kind_by_name("wep")).items] == [
        "default", "ns1"]
    assert len(run("get", "weps", "-n", "ns1").stdout.splitlines()) == 2
    header, *rows = run("get", "weps", "-A").stdout.splitlines()
    assert header.split()[0] == "NAMESPACE"
    assert [r.split()[0] for r in rows] == ["default", "ns1"]
    assert run("delete", "wep", "n1-k8s-pod1-eth0", "-n", "ns1").exit_code == 0
    assert run("get", "wep", "n1-k8s-pod1-eth0", "-n", "ns1").exit_code == 1


# -- patch and label ---------------------------------------------------------------------------
def test_patch_merges_and_revalidates(run: Run, store: MemoryBackend) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16", natOutgoing=True)))
    result = run("patch", "ippool", "p1", "-p", '{"spec": {"disabled": true, "natOutgoing": null}}')
    assert result.exit_code == 0, result.output
    spec = stored(store, "p1")["spec"]
    assert spec["disabled"] is True
    assert spec["natOutgoing"] is False


def test_patch_that_breaks_a_rule_changes_nothing_and_names_the_field(
    run: Run, store: MemoryBackend
) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    before = stored(store, "p1")
    result = run("patch", "ippool", "p1", "-p", '{"spec": {"vxlanMode": "Always", '
                                                 '"ipipMode": "Always"}}')
    assert result.exit_code == 1
    assert "IPPool 'p1'" in result.stderr
    assert "spec." in result.stderr
    assert stored(store, "p1") == before


@pytest.mark.parametrize(
    ("patch", "message"),
    [("{not json", "--patch is not valid JSON"),
     ('{"metadata": {"name": "p2"}}', "cannot change metadata.name"),
     ('"just a string"', "must be a JSON object")],
)
def test_patch_refuses_malformed_patches(run: Run, patch: str, message: str) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    result = run("patch", "ippool", "p1", "-p", patch)
    assert result.exit_code == 1
    assert message in result.stderr


def test_patch_of_a_missing_resource_says_not_found(run: Run) -> None:
    result = run("patch", "bgppeer", "ghost", "-p", "{}")
    assert result.exit_code == 1
    assert "BGPPeer 'ghost' not found" in result.stderr


def test_label_sets_overwrites_and_removes(run: Run, store: MemoryBackend) -> None:
    run("apply", "-f", str(ROOT / "examples" / "route-reflectors.yaml"))
    assert run("label", "node", "rr1", "rack=a").exit_code == 0
    assert stored(store, "rr1", "Node")["metadata"]["labels"] == {"route-reflector": "true",
                                                                  "rack": "a"}
    result = run("label", "node", "rr1", "rack=b")
    assert result.exit_code == 1
    assert "--overwrite" in result.stderr
    assert run("label", "node", "rr1", "rack=b", "--overwrite").exit_code == 0
    assert run("label", "node", "rr1", "rack", "--remove").exit_code == 0
    assert stored(store, "rr1", "Node")["metadata"]["labels"] == {"route-reflector": "true"}
    result = run("label", "node", "rr1", "rack", "--remove")
    assert result.exit_code == 1
    assert "not set" in result.stderr


def test_label_with_a_bad_key_is_refused(run: Run) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    result = run("label", "ippool", "p1", "bad key=x")
    assert result.exit_code == 1
    assert "label key 'bad key'" in result.stderr


# -- datastore, version, help, registration ----------------------------------------------------
class _Unreachable(MemoryBackend):
    def list(self, kind: Kind, namespace: str | None = None) -> Listing:
        raise DatastoreUnavailable("etcd range: no endpoint answered (http://127.0.0.1:9: "
                                   "connection refused)")


def test_unreachable_datastore_names_the_endpoint(run: Run) -> None:
    result = run("get", "ippools", backend=_Unreachable(),
                 env={"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://127.0.0.1:9"})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot reach the datastore (etcdv3 at "
                                    "ETCD_ENDPOINTS='http://127.0.0.1:9')")


@pytest.mark.parametrize(
    ("env", "message"),
    [({"DATASTORE_TYPE": "mongo"}, "DATASTORE_TYPE='mongo' is not one of"),
     ({"DATASTORE_TYPE": "etcdv3"}, "ETCD_ENDPOINTS is required")],
)
def test_bad_datastore_environment_names_the_variable(
    env: dict[str, str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["get", "ippools"], obj=CliContext(env=env))
    assert result.exit_code == 1
    assert "datastore configuration" in result.stderr
    assert message in result.stderr


def test_version_prints_client_version_and_datastore_without_connecting() -> None:
    def refuse() -> MemoryBackend:
        raise AssertionError("version must not connect")

    ctx = CliContext(backend_factory=refuse,
                     env={"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://127.0.0.1:2379"})
    result = CliRunner().invoke(cli, ["version"], obj=ctx)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Client Version:    v")
    assert "etcdv3 at ETCD_ENDPOINTS='http://127.0.0.1:2379'" in result.stdout


@pytest.mark.parametrize("command", ["", *sorted(cli.commands)])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [*([command] if command else []), "--help"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")


def test_a_module_with_commands_is_registered_by_naming_it() -> None:
    group = build_cli(("wren.cli.version",))
    assert sorted(group.commands) == ["version"]
    assert isinstance(group, click.Group)


def test_patch_rereads_when_another_writer_got_in_first_and_keeps_their_change(
    run: Run, store: MemoryBackend
) -> None:
    run("apply", "-f", "-", input=as_yaml(pool("p1", "10.1.0.0/16")))
    raced: list[str] = []

    def other_writer(op: str, body: Body) -> None:
        if op == "update" and not raced:
            raced.append("once")
            current = store.get(POOL_KIND, "p1")
            current["metadata"]["labels"] = {"by": "other"}
            store.update(current)

    store.fault = other_writer
    result = run("patch", "ippool", "p1", "-p", '{"spec": {"disabled": true}}')
    assert result.exit_code == 0, result.output
    body = stored(store, "p1")
    assert body["spec"]["disabled"] is True
    assert body["metadata"]["labels"] == {"by": "other"}


@pytest.mark.parametrize("args", [["get"], ["--bogus"], ["get", "ippools", "-o", "xml"]])
def test_command_line_mistakes_exit_1_like_calicoctl(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args, obj=CliContext(backend_factory=MemoryBackend))
    assert result.exit_code == 1
    assert "Usage: " in result.stderr
    assert "Error: " in result.stderr


def test_a_directory_is_applied_as_one_batch(
    run: Run, store: MemoryBackend, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(as_yaml(pool("a", "10.1.0.0/16")))
    (tmp_path / "b.json").write_text(json.dumps(pool("b", "10.2.0.0/16")))
    (tmp_path / "notes.txt").write_text("not a resource")
    result = run("apply", "-f", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert names(store) == ["a", "b"]


def test_one_bad_file_in_a_directory_means_nothing_is_written(
    run: Run, store: MemoryBackend, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(as_yaml(pool("a", "10.1.0.0/16")))
    (tmp_path / "b.yaml").write_text(as_yaml(pool("b", "10.2.0.0/16", vxlanMode="Maybe")))
    result = run("apply", "-f", str(tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path / 'b.yaml'} document 1: IPPool 'b': field spec.vxlanMode" in result.stderr
    assert names(store) == []
