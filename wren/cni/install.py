"""`wren-install-cni`: put the CNI plugins and their configuration on the node (Calico's
install-cni), run as the init container of the `wren-node` DaemonSet.

The container runtime runs CNI plugins on the node, outside every container, so the plugins must
work with nothing the node may lack. Calico ships static Go binaries; Wren's plugins are Python,
so the installer copies a *bundle* of the image's own Python runtime to the node:

    /opt/wren/<id>/bin/python3                   the interpreter
    /opt/wren/<id>/lib/python3.X/                the standard library (with lib-dynload)
    /opt/wren/<id>/site-packages/                wren and its runtime dependencies only
    /opt/wren/<id>/native/                       every shared library they load, with the
                                                 dynamic loader (ld-linux-*.so.*) itself
    /opt/wren/current -> <id>                    switched atomically (a symlink replaced)
    /opt/cni/bin/wren, /opt/cni/bin/wren-ipam    small sh scripts that exec the bundled loader
                                                 on the bundled interpreter

Running the bundled loader with `--library-path` makes the plugin independent of the node's libc
and Python (only `/bin/sh` and the kernel are the node's), while the plugin still sees the node's
filesystem and network namespaces, which a chroot would hide. `docs/install.md` explains why.

Every file lands atomically (a temporary file in the same directory, fsync, `os.replace`), so a
runtime that runs a plugin or reads the network configuration during an upgrade sees the old file
or the new one, never half of one. The conflist is written last: the kubelet reports the node's
network ready as soon as a network configuration exists, and by then the plugins are in place.
The previous bundle is kept (a plugin started just before the switch may still import from it);
older ones are removed.

The conflist is rendered from a template (`CNI_NETWORK_CONFIG`, from the ConfigMap) with Calico's
placeholders: __KUBERNETES_NODE_NAME__, __CNI_MTU__, __KUBECONFIG_FILEPATH__, __DATASTORE_TYPE__,
__ETCD_ENDPOINTS__, __LOG_LEVEL__, __KUBERNETES_SERVICE_HOST__, __KUBERNETES_SERVICE_PORT__.
With the kubernetes datastore it also writes the plugins' kubeconfig (the API server from
`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA from `WREN_CNI_TOKEN_DIR`).

Environment (host paths are paths on the node; they are written below `--root`):

    WREN_INSTALL_ROOT      where the node's / is mounted in this container (/host)
    CNI_BIN_DIR            /opt/cni/bin              CNI_NET_DIR    /etc/cni/net.d
    CNI_CONF_NAME          10-wren.conflist          WREN_BUNDLE_DIR /opt/wren
    CNI_NETWORK_CONFIG     the conflist template (or CNI_NETWORK_CONFIG_FILE, a path)
    CNI_MTU                0 (the plugin then reads the MTU the agent computed)
    KUBERNETES_NODE_NAME   this node (else NODENAME, else the host name)
    DATASTORE_TYPE         kubernetes | etcdv3       ETCD_ENDPOINTS, LOG_LEVEL
    KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT  the API server (set by the kubelet)
    WREN_CNI_TOKEN_DIR     token + ca.crt for the plugins' kubeconfig
                           (/var/run/secrets/kubernetes.io/serviceaccount)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = [
    "PLUGINS",
    "InstallError",
    "InstallSettings",
    "atomic_write",
    "build_bundle",
    "install",
    "kubeconfig_text",
    "main",
    "plugin_wrapper",
    "render_conflist",
]

# The executables a runtime finds on its CNI path, and the module whose main() each one runs.
PLUGINS: Mapping[str, str] = {"wren": "wren.cni.plugin", "wren-ipam": "wren.cni.ipam_plugin"}
KUBECONFIG_NAME = "wren-kubeconfig"
DEFAULT_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# Parts of the standard library a CNI plugin never imports (and that slim images drop anyway).
_STDLIB_SKIP = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib",
                          "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"})
# Installed, but never imported by a CNI plugin: the BGP speaker, the Kubernetes client's asyncio
# twin (68 MB), tkinter's and curses' native modules (which would pull in X11 and ncurses).
_BUNDLE_SKIP_DISTS = frozenset({"exabgp"})
_BUNDLE_SKIP_PREFIXES = ("kubernetes/aio/",)
_DYNLOAD_SKIP = re.compile(r"^(_tkinter|_curses|_curses_panel|readline|_dbm|_gdbm|nis)\.")
_PLACEHOLDER = re.compile(r"__[A-Z][A-Z0-9_]*__")
_LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(\S+)\s+\(0x[0-9a-f]+\)\s*$")


class InstallError(Exception):
    """Something the operator must fix; the message says what and where."""


@dataclass(frozen=True, slots=True)
class InstallSettings:
    root: Path
    network_config: str
    node_name: str
    bin_dir: str = "/opt/cni/bin"
    net_dir: str = "/etc/cni/net.d"
    conf_name: str = "10-wren.conflist"
    bundle_dir: str = "/opt/wren"
    mtu: str = "0"
    datastore_type: str = "kubernetes"
    etcd_endpoints: str = ""
    log_level: str = "info"
    k8s_host: str = ""
    k8s_port: str = "443"
    token_dir: Path = Path(DEFAULT_TOKEN_DIR)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, root: str | None = None) -> InstallSettings:
        template = env.get("CNI_NETWORK_CONFIG") or ""
        template_file = env.get("CNI_NETWORK_CONFIG_FILE") or ""
        if not template and template_file:
            try:
                template = Path(template_file).read_text()
            except OSError as exc:
                raise InstallError(f"CNI_NETWORK_CONFIG_FILE={template_file!r}: {exc}") from None
        if not template.strip():
            raise InstallError("CNI_NETWORK_CONFIG (or CNI_NETWORK_CONFIG_FILE) is required: "
                               "the conflist template, from the wren-config ConfigMap")
        return cls(
            root=Path(root or env.get("WREN_INSTALL_ROOT") or "/host"),
            network_config=template,
            node_name=(env.get("KUBERNETES_NODE_NAME") or env.get("NODENAME")
                       or socket.gethostname()),
            bin_dir=env.get("CNI_BIN_DIR") or "/opt/cni/bin",
            net_dir=env.get("CNI_NET_DIR") or "/etc/cni/net.d",
            conf_name=env.get("CNI_CONF_NAME") or "10-wren.conflist",
            bundle_dir=env.get("WREN_BUNDLE_DIR") or "/opt/wren",
            mtu=env.get("CNI_MTU") or "0",
            datastore_type=(env.get("DATASTORE_TYPE") or "kubernetes").strip().lower(),
            etcd_endpoints=env.get("ETCD_ENDPOINTS") or "",
            log_level=env.get("LOG_LEVEL") or "info",
            k8s_host=env.get("KUBERNETES_SERVICE_HOST") or "",
            k8s_port=env.get("KUBERNETES_SERVICE_PORT") or "443",
            token_dir=Path(env.get("WREN_CNI_TOKEN_DIR") or DEFAULT_TOKEN_DIR),
        )

    def on_node(self, host_path: str) -> Path:
        """Where a path of the node is, seen from this container."""
        return self.root / host_path.lstrip("/")

    @property
    def kubeconfig_path(self) -> str:
        return f"{self.net_dir.rstrip('/')}/{KUBECONFIG_NAME}"


# -- files ------------------------------------------------------------------------------------
def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `path` so that a reader sees the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _atomic_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


# -- the conflist and the kubeconfig ----------------------------------------------------------
def render_conflist(template: str, values: Mapping[str, str]) -> str:
    """The template with every `__NAME__` replaced; a JSON conflist or an InstallError."""
    text = template
    for name, value in values.items():
        text = text.replace(f"__{name}__", value)
    left = sorted(set(_PLACEHOLDER.findall(text)))
    if left:
        raise InstallError(f"CNI_NETWORK_CONFIG: unknown placeholder(s) {', '.join(left)}; "
                           f"known: {', '.join(f'__{n}__' for n in sorted(values))}")
    try:
        conf = json.loads(text)
    except ValueError as exc:
        raise InstallError(f"CNI_NETWORK_CONFIG is not JSON after substitution: {exc}") from None
    if not isinstance(conf, dict) or not conf.get("name") or not conf.get("cniVersion"):
        raise InstallError("CNI_NETWORK_CONFIG: a conflist needs name and cniVersion")
    plugins = conf.get("plugins")
    if not isinstance(plugins, list) or not plugins or not all(
            isinstance(p, dict) and p.get("type") for p in plugins):
        raise InstallError("CNI_NETWORK_CONFIG: a conflist needs plugins, each with a type")
    for plugin in plugins:
        mtu = plugin.get("mtu", 0)
        if not isinstance(mtu, int) or isinstance(mtu, bool):
            raise InstallError(f"CNI_NETWORK_CONFIG: plugin {plugin['type']!r}: mtu must be an "
                               f"integer (CNI_MTU), got {mtu!r}")
    return json.dumps(conf, indent=2) + "\n"


def kubeconfig_text(*, server: str, ca_pem: bytes, token: str) -> str:
    """A kubeconfig for the plugins: one cluster, one token user, one context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode(),
        }}],
        "users": [{"name": "wren-cni-plugin", "user": {"token": token}}],
        "contexts": [{"name": "wren", "context": {"cluster": "local", "user": "wren-cni-plugin"}}],
        "current-context": "wren",
    }
    return "# Written by wren-install-cni for the wren CNI plugins; rewritten on every start.\n" \
        + yaml.safe_dump(config, sort_keys=False)


def _api_server(host: str, port: str) -> str:
    if not host:
        raise InstallError("KUBERNETES_SERVICE_HOST is not set: cannot write the plugins' "
                           "kubeconfig (set it to an API server address the node can reach)")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _kubeconfig(settings: InstallSettings) -> str:
    try:
        token = (settings.token_dir / "token").read_text().strip()
        ca_pem = (settings.token_dir / "ca.crt").read_bytes()
    except OSError as exc:
        raise InstallError(f"WREN_CNI_TOKEN_DIR={str(settings.token_dir)!r}: {exc}") from None
    return kubeconfig_text(server=_api_server(settings.k8s_host, settings.k8s_port),
                           ca_pem=ca_pem, token=token)


def _substitutions(settings: InstallSettings) -> dict[str, str]:
    if not settings.mtu.strip().isdigit():
        raise InstallError(f"CNI_MTU={settings.mtu!r}: must be a number (0: the agent's MTU)")
    return {
        "KUBERNETES_NODE_NAME": settings.node_name,
        "CNI_MTU": settings.mtu.strip(),
        "KUBECONFIG_FILEPATH": settings.kubeconfig_path,
        "DATASTORE_TYPE": settings.datastore_type,
        "ETCD_ENDPOINTS": settings.etcd_endpoints,
        "LOG_LEVEL": settings.log_level,
        "KUBERNETES_SERVICE_HOST": settings.k8s_host,
        "KUBERNETES_SERVICE_PORT": settings.k8s_port,
    }


# -- the Python bundle ------------------------------------------------------------------------
def _requirement_names(dist: importlib.metadata.Distribution) -> Iterator[str]:
    for req in dist.requires or []:
        if "extra ==" in req.replace('"', "'").replace("extra==", "extra =="):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        if match:
            yield match.group(0)


def _dependency_closure(
    top: str, *, skip: frozenset[str] = frozenset()
) -> list[importlib.metadata.Distribution]:
    """The installed distributions `top` needs at run time (extras and absent ones left out:
    a requirement whose marker excluded it was not installed), except `skip` and theirs."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(_requirement_names(importlib.metadata.distribution(top)))
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen or name in skip:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        todo.extend(_requirement_names(dist))
    return [seen[n] for n in sorted(seen)]


def _bundle_sources(packages: Sequence[str]) -> list[tuple[Path, str]]:
    """(file to copy, path inside the bundle) for the interpreter, stdlib and packages."""
    out: list[tuple[Path, str]] = []
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    out.append((Path(sys.executable).resolve(), "bin/python3"))
    stdlib = Path(sysconfig.get_path("stdlib"))
    for path in sorted(stdlib.rglob("*")):
        rel = path.relative_to(stdlib)
        if rel.parts[0] in _STDLIB_SKIP or rel.parts[0].startswith("config-"):
            continue
        if path.is_file() and not (rel.parts[0] == "lib-dynload" and _DYNLOAD_SKIP.match(
                path.name)):
            out.append((path, f"lib/{version}/{rel}"))
    spec = importlib.util.find_spec("_json")
    dynload = Path(spec.origin).parent if spec and spec.origin else stdlib / "lib-dynload"
    if not dynload.is_relative_to(stdlib):
        out.extend((p, f"lib/{version}/lib-dynload/{p.name}")
                   for p in sorted(dynload.iterdir())
                   if p.is_file() and not _DYNLOAD_SKIP.match(p.name))
    top = packages[0]
    for dist in _dependency_closure(top, skip=_BUNDLE_SKIP_DISTS):
        for record in dist.files or []:
            posix = record.as_posix()
            if posix.startswith(("../", *_BUNDLE_SKIP_PREFIXES)) or {"test", "tests"} & set(
                    record.parts[:-1]):
                continue  # scripts outside site-packages, unused code, test suites
            path = Path(str(dist.locate_file(record)))
            if path.is_file():
                out.append((path, f"site-packages/{posix}"))
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise InstallError(f"package {package!r} is not importable here")
        pkg_dir = Path(next(iter(spec.submodule_search_locations)))
        out.extend((p, f"site-packages/{package}/{p.relative_to(pkg_dir)}")
                   for p in sorted(pkg_dir.rglob("*"))
                   if p.is_file() and "__pycache__" not in p.parts)
    return out


def _bundle_id(sources: Iterable[tuple[Path, str]]) -> str:
    digest = hashlib.sha256()
    for path, rel in sorted(sources, key=lambda s: s[1]):
        st = path.stat()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    try:
        version = importlib.metadata.version("wren")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"{version}-{digest.hexdigest()[:12]}"


def _ldd(files: Iterable[Path]) -> tuple[Path, dict[str, Path]]:
    """(the dynamic loader, {soname: library}) for everything `files` load, as ldd resolves it."""
    loader: Path | None = None
    libs: dict[str, Path] = {}
    for file in files:
        try:
            proc = subprocess.run(["ldd", str(file)], capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise InstallError("ldd is missing (package libc-bin): cannot bundle the shared "
                               "libraries the plugins need") from None
        for line in proc.stdout.splitlines():
            if "not found" in line:
                raise InstallError(f"{file}: {line.strip()}")
            match = _LDD_LINE.match(line)
            if not match or not match.group(2).startswith("/"):
                continue  # linux-vdso.so.1, "statically linked", "not a dynamic executable"
            soname, resolved = match.group(1), Path(match.group(2))
            if soname is None:
                loader = resolved
            else:
                libs[soname] = resolved
    if loader is None:
        raise InstallError(f"ldd found no dynamic loader for {sys.executable}")
    libs.pop(loader.name, None)
    return loader, libs


def build_bundle(dest_parent: Path, *, packages: Sequence[str] = ("wren",)) -> Path:
    """Copy this process's Python runtime, `packages` and their native libraries into a new
    directory under `dest_parent` (named by content, reused when it already exists)."""
    sources = _bundle_sources(packages)
    bundle = dest_parent / _bundle_id(sources)
    if (bundle / "bin" / "python3").exists():
        return bundle
    tmp = dest_parent / f".{bundle.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for src, rel in sources:
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    elves = [tmp / "bin" / "python3",
             *(p for p in tmp.rglob("*.so*") if p.is_file() and ".so" in p.name)]
    loader, libs = _ldd(elves)
    native = tmp / "native"
    native.mkdir()
    shutil.copy2(loader, native / loader.name)
    for soname, lib in sorted(libs.items()):
        shutil.copy2(lib, native / soname)
    (tmp / "LOADER").write_text(loader.name + "\n")
    os.replace(tmp, bundle)
    return bundle


def plugin_wrapper(bundle: str, module: str, loader: str) -> str:
    """The script a runtime runs as the plugin: the bundled loader on the bundled interpreter."""
    return f"""#!/bin/sh
# Wren CNI plugin, written by wren-install-cni (rewritten on every start of wren-node).
# Runs {module} with the Python runtime and libraries bundled in {bundle}, so the node
# needs no Python of its own and its libc does not matter. See docs/install.md.
B={bundle}
PYTHONHOME="$B"
PYTHONPATH="$B/site-packages"
export PYTHONHOME PYTHONPATH
exec "$B/native/{loader}" --library-path "$B/native" "$B/bin/python3" -S -P \\
  -c 'import sys; from {module} import main; sys.exit(main())' "$@"
"""


def _install_bundle(settings: InstallSettings) -> tuple[str, str]:
    """Put the bundle on the node; returns (its stable host path, the loader's file name)."""
    parent = settings.on_node(settings.bundle_dir)
    parent.mkdir(parents=True, exist_ok=True)
    bundle = build_bundle(parent)
    loader = (bundle / "LOADER").read_text().strip()
    current = parent / "current"
    previous = current.resolve().name if current.is_symlink() else ""
    if previous == bundle.name:
        return f"{settings.bundle_dir.rstrip('/')}/current", loader  # a restart: nothing new
    _atomic_symlink(current, bundle.name)
    for old in parent.iterdir():
        if old.is_dir() and not old.is_symlink() and old.name not in (bundle.name, previous):
            shutil.rmtree(old, ignore_errors=True)
    return f"{settings.bundle_dir.rstrip('/')}/current", loader


# -- the whole installation -------------------------------------------------------------------
def install(settings: InstallSettings, *, bundle: bool = True) -> list[Path]:
    """Install plugins, kubeconfig and conflist on the node; returns what was written.

    `bundle=False` writes only the configuration (the plugins are already on the node)."""
    written: list[Path] = []
    values = _substitutions(settings)
    conflist = render_conflist(settings.network_config, values)  # fail before writing anything
    if bundle:
        bundle_path, loader = _install_bundle(settings)
        for name, module in PLUGINS.items():
            path = settings.on_node(settings.bin_dir) / name
            atomic_write(path, plugin_wrapper(bundle_path, module, loader).encode(), mode=0o755)
            written.append(path)
    if settings.datastore_type == "kubernetes":
        path = settings.on_node(settings.kubeconfig_path)
        atomic_write(path, _kubeconfig(settings).encode(), mode=0o600)
        written.append(path)
    path = settings.on_node(settings.net_dir) / settings.conf_name
    atomic_write(path, conflist.encode(), mode=0o644)
    written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wren-install-cni",
        description="Install the wren CNI plugins, their kubeconfig and the conflist on this "
                    "node (settings from the environment; see docs/install.md).")
    parser.add_argument("--root", help="where the node's / is mounted "
                                       "(default $WREN_INSTALL_ROOT or /host)")
    parser.add_argument("--config-only", action="store_true",
                        help="write only the kubeconfig and conflist, not the plugins")
    args = parser.parse_args(argv)
    try:
        settings = InstallSettings.from_env(os.environ, root=args.root)
        written = install(settings, bundle=not args.config_only)
    except (InstallError, OSError) as exc:
        print(f"wren-install-cni: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wren-install-cni: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
