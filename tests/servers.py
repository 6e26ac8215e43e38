"""Real servers for tests, on loopback only: etcd (Debian's /usr/bin/etcd) and kube-apiserver.

Both are context managers that start on free ports in a temporary directory and stop by PID.
Everyone's integration tests import these through the fixtures in tests/conftest.py
(`etcd_server`, `shared_etcd_server`, `kube_apiserver`).

The kube-apiserver binary is built once per machine by tools/build-kube-apiserver.sh and cached at
~/.cache/wren/kube-apiserver-v1.20.2/kube-apiserver (`make kube-apiserver`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml

__all__ = [
    "KUBE_APISERVER_BINARY",
    "EtcdServer",
    "KubeAPIServer",
    "ServerStartError",
    "free_port",
]

ETCD_BINARY = "/usr/bin/etcd"
KUBE_APISERVER_BINARY = (
    Path(os.environ.get("WREN_CACHE", Path.home() / ".cache" / "wren"))
    / "kube-apiserver-v1.20.2"
    / "kube-apiserver"
)
REPO = Path(__file__).resolve().parent.parent


class ServerStartError(RuntimeError):
    """A test server did not come up; carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _spawn(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a server that gets SIGTERM if the test process dies, even by SIGKILL (no orphans):
    util-linux `setpriv --pdeathsig` sets that and execs the server."""
    if shutil.which("setpriv"):
        cmd = ["setpriv", "--pdeathsig", "TERM", "--", *cmd]
    with log_path.open("ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _stop_pid(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Stop one process we started: SIGTERM, then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class EtcdServer:
    """A single-member etcd on 127.0.0.1, its data in a temporary directory.

    `stop()` then `start()` restarts it on the same ports and data ("server restarted mid-watch").
    With `tls=True` it serves https and requires a client certificate: `ca_cert`, `client_cert`
    and `client_key` are the files a client needs (ETCD_CA_CERT_FILE, ETCD_CERT_FILE,
    ETCD_KEY_FILE).
    """

    def __init__(self, *, data_dir: Path | None = None, tls: bool = False) -> None:
        self._own_dir = data_dir is None
        self.dir = Path(data_dir or tempfile.mkdtemp(prefix="wren-etcd-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.ca_cert = self.dir / "tls" / "ca.crt"
        self.client_cert = self.dir / "tls" / "client.crt"
        self.client_key = self.dir / "tls" / "client.key"
        self._pick_ports()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "etcd.log"
        self._started = False

    def _pick_ports(self) -> None:
        self.client_port = free_port()
        self.peer_port = free_port()
        scheme = "https" if self.tls else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.client_port}"

    def _http(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        if self.tls:
            s.verify = str(self.ca_cert)
            s.cert = (str(self.client_cert), str(self.client_key))
        return s

    def _make_certs(self) -> None:
        d = self.ca_cert.parent
        if self.ca_cert.exists():
            return
        d.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=wren-etcd-ca", cwd=d)
        (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n")
        for who in ("server", "client"):
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key",
                     "-out", f"{who}.csr", "-subj", f"/CN=wren-etcd-{who}", cwd=d)
            _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                     "-CAcreateserial", "-days", "2", "-out", f"{who}.crt",
                     "-extfile", "san.cnf", cwd=d)

    def _command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            ETCD_BINARY,
            "--name", "wren-test",
            "--data-dir", str(self.dir / "data"),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"wren-test={peer}",
            "--initial-cluster-state", "new",
            "--log-level", "warn",
            "--logger", "zap",
        ]
        if self.tls:
            tls = self.ca_cert.parent
            cmd += ["--cert-file", str(tls / "server.crt"), "--key-file", str(tls / "server.key"),
                    "--trusted-ca-file", str(self.ca_cert), "--client-cert-auth"]
        return cmd

    def start(self, timeout: float = 30.0) -> EtcdServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self.tls:
            self._make_certs()
        # A free port can be taken between picking and binding (other test runs share the
        # machine): on the first start only, pick new ports and try again.
        for attempt in range(3):
            try:
                self._spawn(timeout)
                self._started = True
                return self
            except ServerStartError as exc:
                if self._started or attempt == 2 or "address already in use" not in str(exc):
                    raise
                self._pick_ports()
        return self

    def _spawn(self, timeout: float) -> None:
        self.proc = _spawn(self._command(), self.log_path)
        deadline = time.monotonic() + timeout
        http = self._http()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise ServerStartError(f"etcd exited:\n{_tail(self.log_path)}")
            with contextlib.suppress(requests.RequestException):
                if http.get(f"{self.endpoint}/health", timeout=1).ok:
                    return
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(f"etcd not healthy after {timeout}s:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        _stop_pid(self.proc)
        self.proc = None

    def revision(self) -> int:
        resp = self._http().post(f"{self.endpoint}/v3/kv/range", json={"key": "AA=="}, timeout=5)
        resp.raise_for_status()
        return int(resp.json()["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Compact history up to `revision` (default: now), as `etcdctl compact` does."""
        rev = revision or self.revision()
        resp = self._http().post(f"{self.endpoint}/v3/kv/compaction",
                                 json={"revision": rev, "physical": True}, timeout=10)
        resp.raise_for_status()
        return rev

    def wipe(self) -> None:
        """Delete every key (between tests sharing one server)."""
        resp = self._http().post(
            f"{self.endpoint}/v3/kv/deleterange", json={"key": "AA==", "range_end": "AA=="},
            timeout=10,
        )
        resp.raise_for_status()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class KubeAPIServer:
    """kube-apiserver v1.20.2 on 127.0.0.1 with its own etcd, a static admin token and RBAC.

    `kubeconfig_path` is a kubeconfig for the admin token (system:masters); `etcd` is the
    `EtcdServer` underneath (tests compact it to provoke `410 Gone`). Every CRD YAML under crds/
    is installed and established before `start()` returns; kinds without a CRD file yet get a
    permissive structural CRD so the datastore tests can run.

    The watch cache is off (`--watch-cache=false`) so that watches read etcd directly: a watch
    from a compacted revision then gets a real 410 from the server, deterministically.
    """

    SERVICE_ACCOUNTS = ("wren-system:wren-node", "wren-system:wren-cni-plugin")

    def __init__(self, *, binary: Path = KUBE_APISERVER_BINARY, crd_dir: Path = REPO / "crds"):
        self.binary = binary
        self.crd_dir = crd_dir
        self.dir = Path(tempfile.mkdtemp(prefix="wren-kube-"))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        # Static tokens for the deploy manifests' service accounts, so tests can act as them
        # under the real RBAC rules (deploy/rbac.yaml) instead of as the admin.
        self._account_tokens = {a: secrets.token_hex(16) for a in self.SERVICE_ACCOUNTS}
        self.kubeconfig_path = self.dir / "kubeconfig"
        self.ca_path = self.dir / "ca.crt"
        self.log_path = self.dir / "kube-apiserver.log"
        self.etcd = EtcdServer(data_dir=self.dir / "etcd")
        self.proc: subprocess.Popen[bytes] | None = None
        self.generated_crds: list[str] = []
        self._started = False

    # -- setup ------------------------------------------------------------------------------
    def _certs(self) -> None:
        d = self.dir
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=wren-test-ca", cwd=d)
        (d / "san.cnf").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default\n"
        )
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
                 "-out", "server.csr", "-subj", "/CN=kube-apiserver", cwd=d)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "san.cnf",
                 cwd=d)
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
        lines = [f'{self.token},admin,admin-uid,"system:masters"']
        for account, token in self._account_tokens.items():
            namespace = account.split(":")[0]
            lines.append(f'{token},system:serviceaccount:{account},{account},'
                         f'"system:serviceaccounts,system:serviceaccounts:{namespace}"')
        (d / "tokens.csv").write_text("\n".join(lines) + "\n")
        self._write_kubeconfig()

    def _write_kubeconfig(self) -> None:
        self.kubeconfig_path.write_text(self._kubeconfig("admin", self.token))

    def _kubeconfig(self, user: str, token: str) -> str:
        return yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "wren-test", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca_path)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "wren-test", "context": {"cluster": "wren-test",
                                                           "user": user}}],
            "current-context": "wren-test",
        })

    def kubeconfig_as(self, account: str) -> Path:
        """A kubeconfig that authenticates as service account `namespace:name` (one of
        SERVICE_ACCOUNTS): it gets what RBAC bindings to that account grant, nothing more."""
        path = self.dir / f"kubeconfig-{account.replace(':', '-')}"
        path.write_text(self._kubeconfig(account, self._account_tokens[account]))
        return path

    def start(self, timeout: float = 120.0) -> KubeAPIServer:
        if not self.binary.exists():
            raise ServerStartError(
                f"{self.binary} missing: run `make kube-apiserver` "
                "(tools/build-kube-apiserver.sh) once on this machine"
            )
        if not self.kubeconfig_path.exists():
            self._certs()
        self.etcd.start()
        deadline = time.monotonic() + timeout
        # The port can be taken between picking and binding (other test runs share the
        # machine): on the first start only, pick another and try again.
        for attempt in range(3):
            try:
                self._spawn(deadline)
                break
            except ServerStartError as exc:
                if self._started or attempt == 2 or "address already in use" not in str(exc):
                    raise
                self.port = free_port()
                self.url = f"https://127.0.0.1:{self.port}"
                self._write_kubeconfig()
        self._started = True
        self.install_crds(timeout=max(10.0, deadline - time.monotonic()))
        return self

    def _spawn(self, deadline: float) -> None:
        d = self.dir
        cmd = [
            str(self.binary),
            f"--etcd-servers={self.etcd.endpoint}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            "--insecure-port=0",
            f"--cert-dir={d}",
            f"--tls-cert-file={d / 'server.crt'}",
            f"--tls-private-key-file={d / 'server.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.254.0.0/24",
            # No controller-manager creates default service accounts here.
            "--disable-admission-plugins=ServiceAccount",
            "--watch-cache=false",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ]
        self.proc = _spawn(cmd, self.log_path)
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                raise ServerStartError(f"kube-apiserver exited:\n{_tail(self.log_path)}")
            with contextlib.suppress(requests.RequestException):
                resp = requests.get(f"{self.url}/readyz", headers=headers,
                                    verify=str(self.ca_path), timeout=2)
                if resp.ok:
                    break
            if time.monotonic() > deadline:
                _stop_pid(self.proc)
                self.proc = None
                raise ServerStartError(f"kube-apiserver not ready:\n{_tail(self.log_path)}")
            time.sleep(0.5)

    def crd_documents(self) -> list[dict[str, Any]]:
        """Every CRD under crds/, plus a permissive one for each kind without a file yet."""
        from wren.kinds import GROUP_CRD, KINDS

        docs: list[dict[str, Any]] = []
        if self.crd_dir.is_dir():
            for path in sorted(self.crd_dir.rglob("*.y*ml")):
                for doc in yaml.safe_load_all(path.read_text()):
                    if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                        docs.append(doc)
        have = {d["spec"]["names"]["plural"] for d in docs}
        for kind in KINDS:
            if kind.k8s_source != "crd" or kind.plural in have:
                continue
            self.generated_crds.append(kind.plural)
            docs.append({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{kind.plural}.{GROUP_CRD}"},
                "spec": {
                    "group": GROUP_CRD,
                    "names": {"kind": kind.name, "plural": kind.plural,
                              "singular": kind.name.lower(), "listKind": f"{kind.name}List"},
                    "scope": "Namespaced" if kind.namespaced else "Cluster",
                    "versions": [{
                        "name": "v1", "served": True, "storage": True,
                        "schema": {"openAPIV3Schema": {
                            "type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }],
                },
            })
        return docs

    def install_crds(self, timeout: float = 60.0) -> None:
        session = self.session()
        base = f"{self.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        names = []
        for doc in self.crd_documents():
            resp = session.post(base, json=doc, timeout=10)
            if resp.status_code not in (201, 409):
                raise ServerStartError(f"CRD {doc['metadata']['name']}: HTTP {resp.status_code} "
                                   f"{resp.text[:500]}")
            names.append(doc["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                body = session.get(f"{base}/{name}", timeout=10).json()
                conds = {c["type"]: c["status"] for c in body.get("status", {})
                         .get("conditions", [])}
                if conds.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise ServerStartError(f"CRD {name} not established: {conds}")
                time.sleep(0.2)

    def session(self) -> requests.Session:
        """A requests session authenticated as the admin, for test setup."""
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override `verify`
        s.headers["Authorization"] = f"Bearer {self.token}"
        s.verify = str(self.ca_path)
        return s

    def stop(self) -> None:
        _stop_pid(self.proc)
        self.proc = None
        self.etcd.stop()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> KubeAPIServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
