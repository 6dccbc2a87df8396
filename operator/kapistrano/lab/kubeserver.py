"""A real Kubernetes API server on loopback, for the e2e tests and `kapistrano demo --operator`.

The server is tests/kube of this repository: k8s.io/kubernetes's kube-apiserver and an embedded etcd
in one Go binary, built from pinned modules (go.mod + go.sum) with the Go toolchain, never downloaded
prebuilt. The binary is cached machine-wide under a hash of its sources, so a second checkout of the
same sources (CI's fresh clone) finds it built:

    python -m kapistrano.lab.kubeserver build       # builds once (minutes), prints the binary's path
    with KubeServer(workdir) as server:             # TLS, token auth, RBAC, default admission
        server.kubeconfig                            # admin (group system:masters)
        server.operator_kubeconfig                   # the operator's identity (manifests/ binds it)

Stopping it (SIGTERM) closes etcd too; kill() is a crash (SIGKILL) and start() again serves the
same data on the same ports.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml

REPO = Path(__file__).resolve().parents[3]
#: The Go module of the test server, in a checkout of the repository.
SOURCE_DIR = REPO / "tests" / "kube"
#: What install() applies: the CRD and the operator's namespace and RBAC, as manifests/ ships them (not
#: the operator's Deployment: tests and the demo run the operator themselves).
INSTALLED = (
    "crds/release.yaml",
    "manifests/namespace.yaml",
    "manifests/serviceaccount.yaml",
    "manifests/clusterrole.yaml",
    "manifests/clusterrolebinding.yaml",
)
#: Where built binaries are kept, one per source hash (override with KAPISTRANO_KUBE_CACHE).
CACHE_DIR = Path(os.environ.get("KAPISTRANO_KUBE_CACHE", "/var/cache/kapistrano"))
#: A prebuilt binary to use instead (e.g. one built elsewhere from the same sources).
BINARY_ENV = "KAPISTRANO_KUBE_TEST_BINARY"
#: The identity the operator runs as: the ServiceAccount that manifests/clusterrolebinding.yaml binds.
OPERATOR_USER = "system:serviceaccount:kapistrano-system:kapistrano"
OPERATOR_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:kapistrano-system")
#: Binaries of other sources kept besides the current one (other checkouts may still use them).
KEEP_OTHER_BINARIES = 2
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


class KubeServerError(RuntimeError):
    """The test API server could not be built or started; the message says why."""


def source_files(source: Path = SOURCE_DIR) -> list[Path]:
    """The files the binary is built from: go.mod, go.sum and the Go sources (reads the directory)."""
    if not (source / "go.mod").exists():
        raise KubeServerError(f"no Go module at {source} (the test API server is built from a checkout)")
    return sorted([source / "go.mod", source / "go.sum", *source.glob("*.go")])


def source_hash(source: Path = SOURCE_DIR) -> str:
    """A short hash of the sources' names and contents (reads the files)."""
    digest = hashlib.sha256()
    for path in source_files(source):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def binary_path(source: Path = SOURCE_DIR) -> Path:
    """Where the binary for these sources is (or will be) cached (reads the sources)."""
    override = os.environ.get(BINARY_ENV)
    if override:
        return Path(override)
    return CACHE_DIR / f"kube-test-{source_hash(source)}"


def build(source: Path = SOURCE_DIR, log: bool = True) -> Path:
    """The cached binary for these sources, built first if absent (runs `go build`, minutes cold; logs to stderr)."""
    target = binary_path(source)
    if target.exists():
        return target
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise KubeServerError("the Go toolchain (go) is needed to build the test API server")
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another checkout may be building the same binary
        if target.exists():
            return target
        if log:
            print(f"building the test API server {target.name} from {source} (minutes if cold)", file=sys.stderr)
        started = time.monotonic()
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        done = subprocess.run([go, "build", "-trimpath", "-o", str(partial), "."], cwd=source, check=False)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise KubeServerError(f"go build of {source} failed ({done.returncode})")
        partial.replace(target)
        if log:
            print(f"built {target} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        for old in stale_binaries(target):
            old.unlink(missing_ok=True)  # a running server keeps its open image; only the name goes
    return target


def stale_binaries(current: Path, keep: int = KEEP_OTHER_BINARIES) -> list[Path]:
    """Cached binaries of other sources beyond the `keep` most recently built (reads the directory).

    Each tests/kube change builds a new ~180 MB binary; without this the cache only grows.
    """
    others = [p for p in current.parent.glob("kube-test-*") if p != current and p.is_file()]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return others[keep:]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (binds and closes a socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kubeconfig_document(server: str, ca_file: Path, user: str, token: str, namespace: str) -> dict[str, object]:
    """A kubeconfig with one cluster, one token user and one context (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kapistrano", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "kapistrano", "user": user, "namespace": namespace}}],
        "current-context": user,
    }


class KubeServer:
    """One kube-apiserver + etcd process on loopback ports, its data and kubeconfigs in `workdir`."""

    def __init__(
        self, workdir: Path, binary: Path | None = None, namespace: str = "default", audit: bool = False
    ) -> None:
        self.workdir = workdir
        self.binary = binary or build()
        self.namespace = namespace
        #: With audit, every request's metadata (user, verb, resource, time) goes to audit_log, one JSON a line.
        self.audit = audit
        self.port, self.etcd_port, self.peer_port = free_port(), free_port(), free_port()
        self.admin_token = secrets.token_hex(16)
        self.operator_token = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "kube-apiserver.log"

    @property
    def url(self) -> str:
        """The server's https URL (pure)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The serving certificate the server made itself; the file also holds its CA (pure)."""
        return self.workdir / "certs" / "apiserver.crt"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (pure)."""
        return self.workdir / "kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """The kubeconfig of the operator's identity, OPERATOR_USER (pure)."""
        return self.workdir / "operator.kubeconfig"

    @property
    def audit_log(self) -> Path:
        """Where the audit events are written when `audit` is on (pure)."""
        return self.workdir / "audit.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (pure)."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def command(self) -> list[str]:
        """The server's command line (pure)."""
        return [
            str(self.binary),
            "apiserver",
            f"--data-dir={self.workdir / 'data'}",
            f"--etcd-port={self.etcd_port}",
            f"--etcd-peer-port={self.peer_port}",
            "--",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'certs'}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.96.0.0/24",
            # The kubernetes Service endpoint cannot name a loopback address; nothing here needs it.
            "--endpoint-reconciler-type=none",
        ] + (
            [f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}", f"--audit-log-path={self.audit_log}"]
            if self.audit
            else []
        )

    def _write_files(self) -> None:
        """Write the token file and both kubeconfigs (writes files)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        groups = ",".join(OPERATOR_GROUPS)
        tokens = f'{self.admin_token},kapistrano-admin,admin,"system:masters"\n'
        tokens += f'{self.operator_token},{OPERATOR_USER},operator,"{groups}"\n'
        (self.workdir / "tokens.csv").write_text(tokens)
        for path, user, token in (
            (self.kubeconfig, "kapistrano-admin", self.admin_token),
            (self.operator_kubeconfig, OPERATOR_USER, self.operator_token),
        ):
            document = kubeconfig_document(self.url, self.ca_file, user, token, self.namespace)
            path.write_text(yaml.safe_dump(document, sort_keys=False))
        policy: dict[str, object] = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy"}
        policy |= {"omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(policy))

    def start(self) -> KubeServer:
        """Start the server (again, on the same data and ports) and wait until /readyz says ok (starts a process)."""
        if self.process is not None and self.process.poll() is None:
            raise KubeServerError("the API server is already running")
        self._write_files()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point, prctl only
            )
        self.wait_ready()
        return self

    def get(self, path: str, timeout: float = 30) -> tuple[int, bytes]:
        """GET a path of the server as the admin; its HTTP status and body (network I/O)."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        request = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310 - https only
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:  # noqa: S310 - https only
            return int(answer.status), bytes(answer.read())

    def ready(self) -> bool:
        """Whether /readyz answers ok right now (network I/O)."""
        if not self.ca_file.exists():
            return False
        try:
            status, body = self.get("/readyz", timeout=5)
        except (OSError, ssl.SSLError, urllib.error.URLError):
            return False
        return status == 200 and body.strip() == b"ok"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll /readyz until ok; raises with the log's tail if the server exits or the deadline passes (waits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise KubeServerError(f"the API server exited:\n{self.tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise KubeServerError(f"the API server was not ready after {timeout:.0f} s:\n{self.tail()}")

    def metrics(self) -> str:
        """The server's Prometheus metrics text (network I/O)."""
        return self.get("/metrics")[1].decode()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; the data stays for start() (stops a process)."""
        if self.pid is not None:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM the server (which closes etcd), SIGKILL it after a deadline (stops a process; idempotent)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (reads the log)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> KubeServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def install(kubectl: str, kubeconfig: Path) -> None:
    """Apply INSTALLED with kubectl and wait until the CRD is served (runs kubectl)."""
    files = [arg for name in INSTALLED for arg in ("-f", str(REPO / name))]
    steps = [
        ["apply", "--server-side", "--force-conflicts", *files],
        ["wait", "--for=condition=Established", "crd/releases.kapistrano.dev", "--timeout=60s"],
    ]
    for step in steps:
        command = [kubectl, "--kubeconfig", str(kubeconfig), *step]
        deadline = time.monotonic() + 60
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        # A CRD just created may have no status.conditions yet: that kubectl wait fails at once.
        while done.returncode != 0 and "accessor error" in done.stderr and time.monotonic() < deadline:
            time.sleep(0.1)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KubeServerError(f"kubectl {step[0]} failed: {done.stderr}{done.stdout}")


def main(argv: list[str] | None = None) -> int:
    """`python -m kapistrano.lab.kubeserver build|path`: build the cached binary or print where it goes."""
    parser = argparse.ArgumentParser(prog="python -m kapistrano.lab.kubeserver")
    parser.add_argument("action", choices=["build", "path"])
    args = parser.parse_args(argv)
    try:
        path = build() if args.action == "build" else binary_path()
    except KubeServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())


#: prctl(2) option: the signal a process gets when the thread that started it dies.
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the server's child process: get SIGTERM when the process that started it dies (side effect: prctl).

    A test run or a demo killed with SIGKILL then leaves no API server (and its ports) behind.
    """
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
