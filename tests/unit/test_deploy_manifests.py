"""deploy/: every manifest is a valid Kubernetes object (offline schemas of kubernetes-validate),
the kustomization covers them and the CRDs, the RBAC grants exactly the API calls the datastore
code makes (derived from the code and the Kubernetes client's own endpoint table), and the
DaemonSet sets only environment variables the code reads, with the probes on the agent's health
endpoints."""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client as k8s

from wren.constants import HEALTH_PORT
from wren.kinds import GROUP_CRD, KINDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.28"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _objects() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS if p.name != "kustomization.yaml" for d in _docs(p)]


OBJECTS = _objects()


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    [obj] = [o for o in OBJECTS if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    return obj


DAEMONSET = _one("DaemonSet")
POD = DAEMONSET["spec"]["template"]["spec"]


def _container(name: str) -> dict[str, Any]:
    [c] = [c for c in POD["containers"] + POD["initContainers"] if c["name"] == name]
    return c


# -- every object is valid ----------------------------------------------------------------------
@pytest.mark.parametrize("obj", OBJECTS, ids=[f"{o['kind']}/{o['metadata']['name']}"
                                              for o in OBJECTS])
def test_manifest_is_a_valid_kubernetes_object(obj: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _kustomize_files(directory: Path) -> Iterator[Path]:
    """The files `kubectl apply -k directory` applies (resources only; what this repo uses)."""
    [kfile] = [directory / n for n in KUSTOMIZATION_NAMES if (directory / n).exists()]
    kustomization = yaml.safe_load(kfile.read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "images"}
    for entry in kustomization["resources"]:
        target = (directory / entry).resolve()
        if target.is_dir():
            yield from _kustomize_files(target)
        else:
            assert target.is_relative_to(directory), f"{entry}: outside {directory}"
            assert target.is_file(), f"{kfile}: {entry} does not exist"
            yield target


def test_kustomization_applies_every_manifest_and_every_crd() -> None:
    files = list(_kustomize_files(DEPLOY))
    assert len(files) == len(set(files))
    expected = {p.resolve() for p in MANIFESTS if p.name != "kustomization.yaml"}
    expected |= {p.resolve() for p in (ROOT / "crds").glob("*.yaml")}
    assert set(files) == expected


def test_kustomization_sets_the_image_of_every_container() -> None:
    [image] = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["images"]
    assert {c["image"] for c in POD["containers"] + POD["initContainers"]} == {image["name"]}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_renders_the_same_objects() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    rendered = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out) if d)
    crds = [d for p in sorted((ROOT / "crds").glob("*.yaml")) for d in _docs(p)]
    expected = sorted((d["kind"], d["metadata"]["name"]) for d in OBJECTS + crds)
    assert rendered == expected


def test_examples_are_not_applied_by_default() -> None:
    assert (DEPLOY / "examples").is_dir()
    files = set(_kustomize_files(DEPLOY))
    assert not any("examples" in p.parts for p in files)
    kinds = {d["kind"] for p in (DEPLOY / "examples").glob("*.yaml") for d in _docs(p)}
    assert {"IPPool", "BGPConfiguration", "BGPPeer"} <= kinds


# -- RBAC: exactly what the datastore code calls -------------------------------------------------
DATASTORE_CODE = ROOT / "wren" / "datastore" / "kubernetes.py"
_APIS = {"_core": k8s.CoreV1Api, "_custom": k8s.CustomObjectsApi}
CRD_PLURALS = sorted(k.plural for k in KINDS if k.k8s_source == "crd")


def _endpoint(api: type, method: str) -> tuple[str, str]:
    """(HTTP method, path template) of a client method, from the client's own serializer."""
    source = inspect.getsource(getattr(api, f"_{method}_serialize"))
    http = re.search(r"method='(\w+)'", source)
    path = re.search(r"resource_path='([^']+)'", source)
    assert http and path, f"{api.__name__}.{method}: endpoint not found"
    return http.group(1), path.group(1)


def _verb(http: str, path: str, *, watch: bool) -> str:
    item = path.endswith("{name}")
    if http == "GET":
        return "get" if item else ("watch" if watch else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if item else "deletecollection"}[http]


def _watch_functions(tree: ast.AST) -> set[str]:
    """Functions that build a {"watch": True} keyword dict: their list calls are watches."""
    out = set()
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Dict) and any(
                        isinstance(k, ast.Constant) and k.value == "watch"
                        and isinstance(v, ast.Constant) and v.value is True
                        for k, v in zip(node.keys, node.values, strict=True)):
                    out.add(func.name)
    return out


def api_calls_in_code() -> dict[str, set[tuple[str, str, str]]]:
    """{"cluster" | "namespace": {(apiGroup, resource, verb)}}: every Kubernetes API call in the
    datastore code. Calls in a `namespaced` form on the backend's own namespace (Secrets) need
    only a Role there; the rest are cluster-wide (pods are listed across namespaces)."""
    tree = ast.parse(DATASTORE_CODE.read_text())
    watchers = _watch_functions(tree)
    out: dict[str, set[tuple[str, str, str]]] = {"cluster": set(), "namespace": set()}
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef):
            continue
        for call in ast.walk(func):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and isinstance(call.func.value, ast.Attribute)
                    and call.func.value.attr in _APIS):
                continue
            api, method = _APIS[call.func.value.attr], call.func.attr
            http, path = _endpoint(api, method)
            verb = _verb(http, path, watch=func.name in watchers)
            parts = [p for p in path.split("/") if p]
            if api is k8s.CustomObjectsApi:
                plural = call.args[2] if "namespaces" not in parts else call.args[3]
                assert isinstance(plural, ast.Attribute) and plural.attr == "plural", (
                    f"{method}: plural is not kind.plural")
                out["cluster"] |= {(GROUP_CRD, p, verb) for p in CRD_PLURALS}
                continue
            resource = parts[-2] if parts[-1] == "{name}" else parts[-1]
            own_namespace = any(isinstance(a, ast.Attribute) and a.attr == "_namespace"
                                for a in call.args)
            out["namespace" if own_namespace else "cluster"].add(("", resource, verb))
    return out


def _granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, "no resourceNames/URLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), "no wildcards"
                    out.add((group, resource, verb))
    return out


def test_the_code_derivation_sees_every_kind_of_call() -> None:
    calls = api_calls_in_code()
    verbs = {v for _, _, v in calls["cluster"]}
    assert verbs == {"get", "list", "watch", "create", "update", "patch", "delete"}
    assert ("", "nodes", "watch") in calls["cluster"]
    assert calls["namespace"] == {("", "secrets", "get")}


def test_cluster_role_grants_exactly_the_cluster_wide_calls_of_the_code() -> None:
    role = _one("ClusterRole", "wren-node")
    assert _granted(role["rules"]) == api_calls_in_code()["cluster"]


def test_role_grants_exactly_the_secret_reads_in_the_agents_namespace() -> None:
    role = _one("Role", "wren-node-secrets")
    assert _granted(role["rules"]) == api_calls_in_code()["namespace"]
    assert role["metadata"]["namespace"] == DAEMONSET["metadata"]["namespace"]
    env = {e["name"]: e for e in _container("wren-agent")["env"]}
    assert env["WREN_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


PLUGIN_CODE = [*sorted((ROOT / "wren" / "cni").glob("*.py")),
               *sorted((ROOT / "wren" / "ipam").glob("*.py"))]


def kinds_the_plugins_name() -> set[str]:
    """Every `kind_by_name("...")` in the CNI plugins' and IPAM's code."""
    out = set()
    for path in PLUGIN_CODE:
        for call in ast.walk(ast.parse(path.read_text())):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                    and call.func.id == "kind_by_name"):
                arg = call.args[0]
                assert isinstance(arg, ast.Constant), f"{path}: kind_by_name of a non-literal"
                out.add(arg.value)
    return out


def test_the_plugins_role_is_the_datastore_calls_on_the_kinds_their_code_names() -> None:
    kinds = kinds_the_plugins_name()
    assert {"IPAMBlock", "IPPool", "WorkloadEndpoint"} <= kinds  # the derivation sees them
    resources = {{"pod": "pods", "node": "nodes"}.get(k.k8s_source, k.plural)
                 for k in KINDS if k.name in kinds}
    wanted = {call for call in api_calls_in_code()["cluster"] if call[1] in resources}
    granted = _granted(_one("ClusterRole", "wren-cni-plugin")["rules"])
    assert granted == wanted
    assert not {r for _, r, _ in granted} & {"bgppeers", "bgpconfigurations", "secrets"}


def test_bindings_give_the_roles_to_the_right_accounts() -> None:
    namespace = DAEMONSET["metadata"]["namespace"]
    accounts = {o["metadata"]["name"] for o in OBJECTS if o["kind"] == "ServiceAccount"}
    assert accounts == {"wren-node", "wren-cni-plugin"}
    bindings = {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == "ClusterRoleBinding"}
    assert set(bindings) == {"wren-node", "wren-cni-plugin"}
    for name, crb in bindings.items():
        assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": name}
        assert [(s["name"], s["namespace"]) for s in crb["subjects"]] == [(name, namespace)]
    rb = _one("RoleBinding")
    assert rb["roleRef"]["name"] == "wren-node-secrets"
    assert [s["name"] for s in rb["subjects"]] == ["wren-node"]  # plugins read no Secret
    assert POD["serviceAccountName"] == "wren-node"
    token = _one("Secret", "wren-cni-plugin-token")
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == (
        "wren-cni-plugin")


# -- the DaemonSet sets what the code reads -------------------------------------------------------
_GETTERS = {"get", "getenv", "_int", "_float", "_bool", "_mode", "_existing_file"}
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def env_names_read(paths: list[Path]) -> set[str]:
    """Names passed to env.get(...), _int(env, ...) and the like, or used as env["..."]."""
    out = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in _GETTERS:
                    out |= {a.value for a in node.args if isinstance(a, ast.Constant)
                            and isinstance(a.value, str) and _ENV_NAME.match(a.value)}
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                value = node.slice.value
                if isinstance(value, str) and _ENV_NAME.match(value):
                    out.add(value)
    return out


def _py(*dirs: str) -> list[Path]:
    return [p for d in dirs for p in sorted((ROOT / d).rglob("*.py"))]


SHARED = [p for p in _py("wren") if p.name != "install.py"]
READ_BY = {
    "wren-agent": env_names_read(_py("agent") + SHARED),
    "wren-bgp": env_names_read(_py("bgp") + SHARED),
    "install-cni": env_names_read([ROOT / "wren" / "cni" / "install.py"]),
}


@pytest.mark.parametrize("container", sorted(READ_BY))
def test_every_variable_the_daemonset_sets_is_read_by_the_code(container: str) -> None:
    names = {e["name"] for e in _container(container)["env"]}
    assert names - READ_BY[container] == set()


def test_agent_gets_node_name_datastore_pool_and_autodetection() -> None:
    env = {e["name"]: e for e in _container("wren-agent")["env"]}
    assert env["NODENAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["DATASTORE_TYPE"]["valueFrom"]["configMapKeyRef"]["key"] == "datastore_type"
    assert _one("ConfigMap")["data"]["datastore_type"] == "kubernetes"
    assert env["IP"]["value"] == "autodetect"
    assert "IP_AUTODETECTION_METHOD" in env
    assert {"CALICO_IPV4POOL_CIDR", "CALICO_IPV4POOL_IPIP", "CALICO_IPV4POOL_VXLAN",
            "CALICO_IPV4POOL_NAT_OUTGOING", "CALICO_IPV4POOL_BLOCK_SIZE"} <= set(env)


def test_configmap_keys_are_all_used() -> None:
    used = {e["valueFrom"]["configMapKeyRef"]["key"]
            for c in POD["containers"] + POD["initContainers"] for e in c["env"]
            if "configMapKeyRef" in e.get("valueFrom", {})}
    assert used == set(_one("ConfigMap")["data"])


def test_probes_hit_the_agents_health_endpoints() -> None:
    agent = _container("wren-agent")
    env = {e["name"]: e.get("value") for e in agent["env"]}
    port = int(env.get("FELIX_HEALTHPORT") or HEALTH_PORT)
    host = env.get("FELIX_HEALTHHOST") or "127.0.0.1"
    health_source = (ROOT / "agent" / "health.py").read_text()
    for probe, path in (("livenessProbe", "/liveness"), ("readinessProbe", "/readiness")):
        get = agent[probe]["httpGet"]
        assert (get["path"], get["port"], get["host"]) == (path, port, host)
        assert f'"{path}"' in health_source


def test_sidecar_probes_call_the_flags_wren_bgp_accepts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgp.sidecar import main

    monkeypatch.setenv("WREN_RUN_DIR", str(tmp_path))  # empty: no sidecar runs, probes fail
    sidecar = _container("wren-bgp")
    for probe, flag in (("livenessProbe", "--live"), ("readinessProbe", "--ready")):
        command = sidecar[probe]["exec"]["command"]
        assert command == [sidecar["command"][0], flag]
        assert main(command[1:]) == 1  # an unknown flag would be argparse's SystemExit(2)


def test_daemonset_runs_everywhere_on_the_host_network_one_node_at_a_time() -> None:
    assert POD["hostNetwork"] is True
    assert {"operator": "Exists"} in POD["tolerations"]
    assert DAEMONSET["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}


def test_agent_and_sidecar_share_the_run_directory() -> None:
    volumes = {v["name"]: v for v in POD["volumes"]}
    for name in ("wren-agent", "wren-bgp"):
        container = _container(name)
        env = {e["name"]: e.get("value") for e in container["env"]}
        [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == env["WREN_RUN_DIR"]]
        assert volumes[mount["name"]]["hostPath"]["path"] == "/var/run/wren"


def test_privileges_are_what_each_container_needs() -> None:
    assert _container("wren-agent")["securityContext"]["privileged"] is True
    bgp = _container("wren-bgp")["securityContext"]
    assert bgp["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert bgp["allowPrivilegeEscalation"] is False and not bgp.get("privileged")
    install = _container("install-cni")["securityContext"]
    assert install["capabilities"] == {"drop": ["ALL"]} and not install.get("privileged")


def test_install_cni_writes_the_nodes_cni_directories() -> None:
    container = _container("install-cni")
    env = {e["name"]: e.get("value") for e in container["env"]}
    root = env["WREN_INSTALL_ROOT"]
    volumes = {v["name"]: v for v in POD["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for host_path in ("/opt/cni/bin", "/etc/cni/net.d", "/opt/wren"):
        assert mounted[root + host_path]["hostPath"]["path"] == host_path
    token_dir = env["WREN_CNI_TOKEN_DIR"]
    assert mounted[token_dir]["secret"]["secretName"] == "wren-cni-plugin-token"


def test_every_command_is_a_console_script_of_the_package() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for container in POD["containers"] + POD["initContainers"]:
        [command] = container["command"]
        assert command in scripts
    assert scripts["wren-install-cni"] == "wren.cni.install:main"


# -- the image -----------------------------------------------------------------------------------
def test_dockerfile_pins_its_base_and_installs_the_node_tools() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    for package in ("iproute2", "iptables", "ipset"):
        assert re.search(rf"apt-get install[^&]*\b{package}\b", text)
    assert re.search(r"^USER\s+(?!0\b|root\b)\S+", text, flags=re.M)


def test_uninstall_script_is_valid_shell_and_names_what_the_code_owns() -> None:
    script = DEPLOY / "uninstall-node.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    from agent.dataplane.nat_outgoing import ALL_POOLS_SET
    from agent.kernel.ipset_table import OWNED_SET_PREFIXES
    from agent.kernel.netfilter import OUR_CHAIN_PREFIX
    from wren.constants import IPIP_DEVICE, ROUTE_PROTOCOL, VXLAN_DEVICE, WORKLOAD_IFACE_PREFIX
    assert f"ROUTE_PROTOCOL={ROUTE_PROTOCOL}" in text
    for name in (IPIP_DEVICE, VXLAN_DEVICE, f"^{WORKLOAD_IFACE_PREFIX}", OUR_CHAIN_PREFIX[:-1],
                 *OWNED_SET_PREFIXES, "10-wren.conflist", "/opt/cni/bin/wren-ipam"):
        assert name in text
    assert ALL_POOLS_SET.startswith(OWNED_SET_PREFIXES)


_FAKE_SAVE = """#!/bin/sh
[ "$2" = nat ] || exit 0
cat <<'X'
*nat
:POSTROUTING ACCEPT [0:0]
:cali-POSTROUTING - [0:0]
:cali-nat-outgoing - [0:0]
-A POSTROUTING -m comment --comment "wren:abc" -j cali-POSTROUTING
-A POSTROUTING -j KUBE-POSTROUTING
-A cali-POSTROUTING -m comment --comment "wren:def" -j cali-nat-outgoing
COMMIT
X
"""


def test_uninstall_script_removes_jumps_before_chains_and_sets_last(tmp_path: Path) -> None:
    # Fake node tools: ip finds every link, iptables-nft-save shows the agent's nat chains.
    tools = {"iptables-nft-save": _FAKE_SAVE, "iptables-nft": "#!/bin/sh\nexit 0\n",
             "ip": "#!/bin/sh\nexit 0\n",
             "ipset": "#!/bin/sh\necho cali40all-ipam-pools; echo KUBE-NODE-PORTS\n"}
    for name, text in tools.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    out = subprocess.run(["sh", str(DEPLOY / "uninstall-node.sh"), "--dry-run"],
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True,
                         text=True, check=True, timeout=30).stdout.splitlines()
    assert out.index("rm -f /etc/cni/net.d/10-wren.conflist /etc/cni/net.d/wren-kubeconfig") == 0
    assert "ip -4 route flush proto 80" in out and "ip link del vxlan.calico" in out
    jump = ("iptables-nft -t nat -D POSTROUTING -m comment --comment wren:abc "
            "-j cali-POSTROUTING")
    assert out.index(jump) < out.index("iptables-nft -t nat -F cali-POSTROUTING") < out.index(
        "iptables-nft -t nat -X cali-POSTROUTING")
    assert not any("KUBE-" in line for line in out)  # other chains and sets are left alone
    assert out[-1] == "ipset destroy cali40all-ipam-pools"
