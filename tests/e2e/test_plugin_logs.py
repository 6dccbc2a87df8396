"""`kubectl kapistrano logs` and `retry` against an API server: the Release and its Secret come from the cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kapistrano.lab import HostLab
from kapistrano.lab.sample_app import lab_release

from .test_kubectl_plugin import release

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
SECRET = "deploy-ssh"


def plugin(kube: Any, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `kubectl kapistrano ARGS -n NAMESPACE` as a user does (kubectl finds the plugin on PATH)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "KUBECONFIG": str(kube.kubeconfig)}
    command = [str(BIN / "kubectl"), "kapistrano", *args, "-n", namespace]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_logs_reads_the_release_and_its_secret_and_tails_every_host(kube: Any, lab_factory: Any) -> None:
    lab: HostLab = lab_factory(2)
    namespace = kube.namespace()
    for host in lab.hosts:
        log = host.path("/var/www/app/shared/log/worker.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"first on {host.name}\nlast on {host.name}\n")
    secret = {"ssh-privatekey": lab.client_key.read_bytes(), "known_hosts": lab.known_hosts.read_bytes()}
    kube.create_secret(namespace, SECRET, secret)
    document = lab_release(lab, "app", services=[], application="app", version="v1", source={"path": "/opt/app"})
    document["spec"]["ssh"] = {"user": "root", "secretRef": {"name": SECRET}}
    kube.apply(document, namespace)

    result = plugin(kube, namespace, "logs", "app", "worker", "--tail", "1")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [f"{h.name} | last on {h.name}" for h in lab.hosts]

    kube.delete_secret(namespace, SECRET)
    missing = plugin(kube, namespace, "logs", "app", "worker")
    assert missing.returncode == 1
    assert f"Secret {namespace}/{SECRET}" in missing.stderr


def test_retry_stamps_the_retry_annotation(kube: Any) -> None:
    namespace = kube.namespace()
    kube.apply(release("app"), namespace)
    result = plugin(kube, namespace, "retry", "app")
    assert result.returncode == 0, result.stderr
    assert "no failed or aborted version" in result.stderr
    annotations = kube.get_release(namespace, "app")["metadata"]["annotations"]
    assert annotations["kapistrano.dev/retry"].endswith("Z")
