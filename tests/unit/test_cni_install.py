"""wren-install-cni in a temporary root: the conflist rendered from the ConfigMap's template and
accepted by the plugin's own parser, the kubeconfig from a token directory, atomic writes, and the
bundled Python runtime really running the plugin through the wrapper script a runtime would run,
loading no shared library from outside the bundle."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wren.cni.install import (
    PLUGINS,
    InstallError,
    InstallSettings,
    atomic_write,
    install,
    main,
    render_conflist,
)
from wren.cni.spec import parse_netconf

ROOT = Path(__file__).resolve().parents[2]
CONFIGMAP = yaml.safe_load((ROOT / "deploy" / "configmap.yaml").read_text())
TEMPLATE: str = CONFIGMAP["data"]["cni_network_config"]
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    d = tmp_path / "token"
    d.mkdir()
    (d / "token").write_text("tok-123\n")
    (d / "ca.crt").write_bytes(CA_PEM)
    return d


def _settings(root: Path, token_dir: Path, **kw: Any) -> InstallSettings:
    base: dict[str, Any] = {"root": root, "network_config": TEMPLATE, "node_name": "node-1",
                            "k8s_host": "10.96.0.1", "k8s_port": "443", "token_dir": token_dir}
    base.update(kw)
    return InstallSettings(**base)


def _values(**kw: str) -> dict[str, str]:
    values = {"KUBERNETES_NODE_NAME": "node-1", "CNI_MTU": "0",
              "KUBECONFIG_FILEPATH": "/etc/cni/net.d/wren-kubeconfig",
              "DATASTORE_TYPE": "kubernetes", "ETCD_ENDPOINTS": "", "LOG_LEVEL": "info",
              "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    values.update(kw)
    return values


# -- the conflist -------------------------------------------------------------------------------
def test_configmap_template_renders_to_a_conflist_the_plugin_accepts() -> None:
    conf = json.loads(render_conflist(TEMPLATE, _values(CNI_MTU="1440")))
    [plugin] = conf["plugins"]
    assert plugin["type"] == "wren" and plugin["ipam"]["type"] == "wren-ipam"
    # What the runtime hands the plugin: one entry plus the list's name and version.
    netconf = parse_netconf(json.dumps({**plugin, "name": conf["name"],
                                        "cniVersion": conf["cniVersion"]}))
    assert netconf.nodename == "node-1"
    assert netconf.mtu == 1440
    assert netconf.datastore_type == "kubernetes"
    assert netconf.kubeconfig == "/etc/cni/net.d/wren-kubeconfig"
    assert set(PLUGINS) == {plugin["type"], plugin["ipam"]["type"]}


def test_mtu_zero_leaves_the_mtu_to_the_agents_file() -> None:
    [plugin] = json.loads(render_conflist(TEMPLATE, _values()))["plugins"]
    assert plugin["mtu"] == 0


@pytest.mark.parametrize(
    ("template", "values", "message"),
    [
        (TEMPLATE.replace("__LOG_LEVEL__", "__LOGLEVEL__"), _values(), "__LOGLEVEL__"),
        (TEMPLATE, _values(CNI_MTU="fast"), "not JSON"),
        (TEMPLATE, _values(CNI_MTU='"1440"'), "mtu must be an integer"),
        ('{"name": "x", "cniVersion": "1.0.0", "plugins": [{}]}', _values(), "each with a type"),
        ('{"cniVersion": "1.0.0", "plugins": [{"type": "wren"}]}', _values(), "name"),
    ],
)
def test_a_bad_template_is_refused_with_the_reason(
    template: str, values: dict[str, str], message: str
) -> None:
    with pytest.raises(InstallError, match=message):
        render_conflist(template, values)


# -- configuration files in a temporary root ---------------------------------------------------
def test_install_writes_kubeconfig_and_conflist_under_the_root(
    tmp_path: Path, token_dir: Path
) -> None:
    root = tmp_path / "host"
    written = install(_settings(root, token_dir), bundle=False)
    conflist = root / "etc/cni/net.d/10-wren.conflist"
    kubeconfig = root / "etc/cni/net.d/wren-kubeconfig"
    assert written == [kubeconfig, conflist]  # the conflist last: the node is ready after it
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert stat.S_IMODE(conflist.stat().st_mode) == 0o644
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.96.0.1:443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == CA_PEM
    assert config["users"][0]["user"]["token"] == "tok-123"
    plugin = json.loads(conflist.read_text())["plugins"][0]
    assert plugin["kubernetes"]["kubeconfig"] == "/etc/cni/net.d/wren-kubeconfig"
    assert sorted(p.name for p in conflist.parent.iterdir()) == ["10-wren.conflist",
                                                                  "wren-kubeconfig"]


def test_ipv6_api_server_is_bracketed(tmp_path: Path, token_dir: Path) -> None:
    install(_settings(tmp_path, token_dir, k8s_host="fd00::1", k8s_port="6443"), bundle=False)
    config = yaml.safe_load((tmp_path / "etc/cni/net.d/wren-kubeconfig").read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://[fd00::1]:6443"


def test_etcd_datastore_writes_no_kubeconfig(tmp_path: Path, token_dir: Path) -> None:
    install(_settings(tmp_path, token_dir, datastore_type="etcdv3"), bundle=False)
    assert not (tmp_path / "etc/cni/net.d/wren-kubeconfig").exists()
    plugin = json.loads((tmp_path / "etc/cni/net.d/10-wren.conflist").read_text())["plugins"][0]
    assert plugin["datastore_type"] == "etcdv3"


def test_a_bad_template_writes_nothing(tmp_path: Path, token_dir: Path) -> None:
    with pytest.raises(InstallError):
        install(_settings(tmp_path, token_dir, network_config="{"), bundle=False)
    assert not (tmp_path / "etc").exists()


def test_missing_token_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="WREN_CNI_TOKEN_DIR"):
        install(_settings(tmp_path / "h", tmp_path / "nowhere"), bundle=False)


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f"
    atomic_write(target, b"old", mode=0o600)
    atomic_write(target, b"new", mode=0o755)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes", mode=0o644)  # type: ignore[arg-type]
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["f"]


def test_settings_from_env_use_calicos_names(tmp_path: Path) -> None:
    settings = InstallSettings.from_env({
        "CNI_NETWORK_CONFIG": TEMPLATE, "KUBERNETES_NODE_NAME": "n7", "CNI_MTU": "1400",
        "CNI_NET_DIR": "/etc/kubernetes/cni/net.d", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "KUBERNETES_SERVICE_PORT": "6443", "WREN_INSTALL_ROOT": str(tmp_path)})
    assert (settings.node_name, settings.mtu, settings.root) == ("n7", "1400", tmp_path)
    assert settings.kubeconfig_path == "/etc/kubernetes/cni/net.d/wren-kubeconfig"
    assert settings.on_node("/opt/cni/bin") == tmp_path / "opt/cni/bin"


def test_main_without_a_template_fails_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("CNI_NETWORK_CONFIG", raising=False)
    monkeypatch.delenv("CNI_NETWORK_CONFIG_FILE", raising=False)
    assert main(["--root", str(tmp_path), "--config-only"]) == 1
    assert "CNI_NETWORK_CONFIG" in capsys.readouterr().err


# -- the plugins on the node: bundle and wrappers ----------------------------------------------
@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full install with the host paths themselves inside a temporary directory (root "/"),
    so the wrapper scripts' absolute paths are real and can be run."""
    base = tmp_path_factory.mktemp("node")
    tokens = base / "token"
    tokens.mkdir()
    (tokens / "token").write_text("t")
    (tokens / "ca.crt").write_bytes(CA_PEM)
    # A bundle left by an older install, and the one before it.
    bundles = base / "opt-wren"
    (bundles / "0.0.1-previous").mkdir(parents=True)
    (bundles / "0.0.0-older").mkdir()
    (bundles / "current").symlink_to("0.0.1-previous")
    settings = _settings(Path("/"), tokens, bin_dir=str(base / "cni-bin"),
                         net_dir=str(base / "net.d"), bundle_dir=str(bundles))
    install(settings)
    install(settings)  # a restart: same bundle, nothing copied again
    return base


def test_wrappers_are_executable_scripts_on_the_cni_path(installed: Path) -> None:
    for name, module in PLUGINS.items():
        wrapper = installed / "cni-bin" / name
        assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755
        text = wrapper.read_text()
        assert text.startswith("#!/bin/sh\n") and f"from {module} import main" in text
        assert f"{installed}/opt-wren/current" in text


def test_bundle_switch_keeps_the_previous_bundle_and_prunes_older(installed: Path) -> None:
    bundles = installed / "opt-wren"
    current = (bundles / "current").resolve()
    assert current.parent == bundles and current.name.startswith("0.1")
    assert sorted(p.name for p in bundles.iterdir()) == sorted(
        ["current", current.name, "0.0.1-previous"])


def test_the_wrapper_runs_the_plugin_with_an_empty_environment(installed: Path) -> None:
    # A runtime runs plugins with little more than CNI_* set, from any directory.
    for name in PLUGINS:
        proc = subprocess.run([str(installed / "cni-bin" / name)], input="", text=True,
                              env={"CNI_COMMAND": "VERSION"}, cwd="/", capture_output=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "1.0.0" in json.loads(proc.stdout)["supportedVersions"]


def test_the_wrapper_reports_cni_errors_as_json(installed: Path) -> None:
    conf = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "wren",
            "datastore_type": "kubernetes", "nodename": "n1", "ipam": {"type": "wren-ipam"}}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/nonexistent/netns",
           "CNI_IFNAME": "eth0", "CNI_PATH": str(installed / "cni-bin")}
    proc = subprocess.run([str(installed / "cni-bin" / "wren")], input=json.dumps(conf),
                          text=True, env=env, cwd="/", capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == 3  # the netns does not exist


def test_the_bundle_loads_nothing_from_outside_itself(installed: Path) -> None:
    bundle = (installed / "opt-wren" / "current").resolve()
    loader = (bundle / "LOADER").read_text().strip()
    probe = (
        "import sys, json\n"
        "import wren.cni.plugin, wren.cni.ipam_plugin, wren.datastore.kubernetes\n"
        "import wren.datastore.etcd, kubernetes.config, pyroute2, ssl, ctypes, yaml\n"
        "maps = {l.split()[-1] for l in open('/proc/self/maps') if '/' in l.split()[-1]}\n"
        "mods = {getattr(m, '__file__', None) or '' for m in list(sys.modules.values())}\n"
        "print(json.dumps({'maps': sorted(maps), 'path': sys.path,\n"
        "                  'mods': sorted(m for m in mods if m)}))\n"
    )
    env = {"PYTHONHOME": str(bundle), "PYTHONPATH": str(bundle / "site-packages")}
    proc = subprocess.run(
        [str(bundle / "native" / loader), "--library-path", str(bundle / "native"),
         str(bundle / "bin" / "python3"), "-S", "-P", "-c", probe],
        env=env, cwd="/", capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    inside = str(bundle) + os.sep
    assert [m for m in seen["maps"] if not m.startswith(inside) and ".so" in m] == []
    assert [m for m in seen["mods"] if not m.startswith(inside)] == []
    assert all(p.startswith(inside) for p in seen["path"])
