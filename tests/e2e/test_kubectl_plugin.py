"""`kubectl kapistrano` run by the real kubectl (as a plugin found on PATH) against an API server, no operator.

The tests play the operator's part by writing the status through the API, then check the object the plugin left.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kapistrano.api.release import GROUP, PLURAL, VERSION
from kapistrano.k8s.requests import manager_of
from kubernetes import client, config

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
Run = Callable[..., subprocess.CompletedProcess[str]]


def release(name: str, **spec: Any) -> dict[str, Any]:
    """A Release manifest."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Release",
        "metadata": {"name": name},
        "spec": {
            "application": "billing",
            "version": "v3",
            "source": {"git": {"url": "https://git.example.com/billing.git"}},
            "hosts": [{"name": "worker-1", "address": "10.0.0.11"}, {"name": "worker-2", "address": "10.0.0.12"}],
            "ssh": {"secretRef": {"name": "deploy-ssh"}},
            "strategy": {"maxUnavailable": 1},
            **spec,
        },
    }


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    """A metav1.Condition."""
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-28T02:01:09Z",
    }


def host(name: str, version: str, ready: bool, phase: str = "Ready", message: str = "") -> dict[str, Any]:
    """One host's status."""
    return {"name": name, "phase": phase, "version": version, "ready": ready, "message": message}


def history(*versions: str) -> list[dict[str, str]]:
    """History entries, newest first."""
    return [{"version": v, "completedAt": f"2026-11-{27 - i:02d}T10:00:00Z"} for i, v in enumerate(versions)]


ROLLING = {
    "phase": "Progressing",
    "version": "v3",
    "currentVersion": "v2",
    "hostsTotal": 2,
    "hostsUpdated": 1,
    "hostsReady": 1,
    "hostsAvailable": 1,
    "ready": "1/2",
    "message": "restarting worker-2: sneakers stopping (pid 4242)",
    "hosts": [
        host("worker-1", "v3", True),
        host("worker-2", "v2", False, "Restarting", "sneakers stopping (pid 4242)"),
    ],
    "conditions": [
        condition("Ready", "False", "RollingOut", "1/2 hosts updated"),
        condition("Reconciling", "True", "RollingOut"),
        condition("Stalled", "False", "AsExpected"),
    ],
    "history": history("v2", "v1"),
}
READY = {
    "phase": "Ready",
    "version": "v3",
    "currentVersion": "v3",
    "hostsTotal": 2,
    "hostsUpdated": 2,
    "hostsReady": 2,
    "hostsAvailable": 2,
    "ready": "2/2",
    "message": "v3 is ready on every host",
    "hosts": [host("worker-1", "v3", True), host("worker-2", "v3", True)],
    "conditions": [
        condition("Ready", "True", "Ready", "2/2 hosts ready on v3"),
        condition("Reconciling", "False", "Ready"),
        condition("Stalled", "False", "AsExpected"),
    ],
    "history": history("v3", "v2", "v1"),
}
STALLED = {
    **ROLLING,
    "phase": "Failed",
    "message": "worker-2 failed; rolled back to v2",
    "conditions": [
        condition("Ready", "False", "HostFailed", "worker-2 failed"),
        condition("Reconciling", "False", "HostFailed"),
        condition("Stalled", "True", "HostFailed", "worker-2: sneakers not ready after 30 probes; rolled back to v2"),
    ],
}


@pytest.fixture
def namespace(kube: Any) -> str:
    """A fresh namespace for the test."""
    name: str = kube.namespace()
    return name


@pytest.fixture
def api(kube: Any) -> Any:
    """CustomObjectsApi of the API server."""
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(kube.kubeconfig)))  # type: ignore[no-untyped-call]


@pytest.fixture
def plugin(kube: Any, namespace: str) -> Run:
    """Run `kubectl kapistrano ARGS -n NAMESPACE` the way a user does: kubectl finds kubectl-kapistrano on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "KUBECONFIG": str(kube.kubeconfig)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(BIN / "kubectl"), "kapistrano", *args, "-n", namespace]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    return run


@pytest.fixture
def make(api: Any, namespace: str) -> Callable[..., dict[str, Any]]:
    """Create a Release and optionally write its status as the operator would; returns the stored object."""

    def create(name: str, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
        obj = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, release(name, **spec))
        if status is not None:
            obj = write_status(api, namespace, name, status)
        return dict(obj)

    return create


def write_status(api: Any, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Write a status observed at the object's current generation, through the status subresource."""
    current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    generation = current["metadata"].get("generation", 1)
    conditions = [{**c, "observedGeneration": generation} for c in status.get("conditions", [])]
    body = {"status": {**status, "observedGeneration": generation, "conditions": conditions}}
    return dict(
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json"
        )
    )


def stored(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    """The Release as the API server keeps it."""
    return dict(kube.get_release(namespace, name))


def test_kubectl_finds_the_plugin(plugin: Run) -> None:
    result = plugin("--help")
    assert result.returncode == 0, result.stderr
    assert "Rollout commands for kapistrano.dev Releases" in result.stdout


def test_pause_and_resume_are_requests_that_a_gitops_sync_keeps(
    kube: Any, plugin: Run, make: Callable[..., Any], api: Any, namespace: str
) -> None:
    make("canary", {**ROLLING, "phase": "Paused"}, strategy={"maxUnavailable": 1, "pauseAfterHosts": 1})
    manifest = release("canary", strategy={"maxUnavailable": 1, "pauseAfterHosts": 1})

    result = plugin("pause", "canary", "--reason", "incident 42")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("release.kapistrano.dev/canary paused (kapistrano.dev/pause=")
    gitops_sync(kube, namespace, manifest)
    after = stored(kube, namespace, "canary")
    assert after["metadata"]["annotations"]["kapistrano.dev/reason"] == "incident 42"
    assert "kapistrano.dev/pause" in after["metadata"]["annotations"], "a sync of the Git manifest keeps the request"
    assert after["metadata"]["generation"] == 1, "no spec edit"
    live = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "canary")  # with managedFields
    assert manager_of(live["metadata"], "kapistrano.dev/pause") == "kubectl-kapistrano"

    result = plugin("resume", "release/canary")
    assert result.returncode == 0, result.stderr
    gitops_sync(kube, namespace, manifest)
    after = stored(kube, namespace, "canary")
    assert "kapistrano.dev/pause" not in after["metadata"]["annotations"]
    assert "kapistrano.dev/promote" in after["metadata"]["annotations"], "resume at a canary stop promotes"
    assert after["spec"]["strategy"]["pauseAfterHosts"] == 1, "the Git-owned stop stays"


def gitops_sync(kube: Any, namespace: str, manifest: dict[str, Any]) -> None:
    """Server-side apply of the unchanged Git manifest as Argo CD's controller does it (runs kubectl)."""
    kube.kubectl(
        "apply", "--server-side", "--field-manager=argocd-controller", "--force-conflicts", "-n", namespace,
        "-f", "-", input=json.dumps(manifest),
    )  # fmt: skip


def test_undo_mid_rollout_returns_to_the_current_version(
    kube: Any, plugin: Run, make: Callable[..., Any], namespace: str
) -> None:
    make("midway", ROLLING)
    result = plugin("undo", "midway", "--reason", "errors up")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("release.kapistrano.dev/midway aborted (kapistrano.dev/abort=")
    after = stored(kube, namespace, "midway")
    assert after["spec"]["version"] == "v3", "an undo mid-rollout is an abort request, not a spec edit"
    assert after["metadata"]["annotations"]["kapistrano.dev/reason"] == "errors up"


def test_undo_after_a_rollout_takes_the_previous_history_entry(
    kube: Any, plugin: Run, make: Callable[..., Any], namespace: str
) -> None:
    make("done", READY, source={"git": {"url": "https://git.example.com/billing.git", "ref": "v3"}})
    result = plugin("undo", "done")
    assert result.returncode == 0, result.stderr
    spec = stored(kube, namespace, "done")["spec"]
    assert spec["version"] == "v2"
    assert spec["source"] == {"git": {"url": "https://git.example.com/billing.git", "ref": "v2"}}


def test_undo_to_a_chosen_version(kube: Any, plugin: Run, make: Callable[..., Any], namespace: str) -> None:
    make("chosen", READY)
    result = plugin("undo", "chosen", "--to-version", "v1")
    assert result.returncode == 0, result.stderr
    assert stored(kube, namespace, "chosen")["spec"]["version"] == "v1"

    result = plugin("undo", "chosen", "--to-version", "v9")
    assert result.returncode == 1
    assert "v9 was never rolled out by this Release (known versions: v3, v2, v1)" in result.stderr
    assert stored(kube, namespace, "chosen")["spec"]["version"] == "v1"


def test_nothing_to_undo(kube: Any, plugin: Run, make: Callable[..., Any], namespace: str) -> None:
    make("first", {**READY, "history": history("v3")})
    before = stored(kube, namespace, "first")
    result = plugin("undo", "first")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: nothing to undo: no version was rolled out before v3"
    assert stored(kube, namespace, "first")["spec"] == before["spec"]


def test_restart_stamps_the_annotation(
    kube: Any, plugin: Run, make: Callable[..., Any], api: Any, namespace: str
) -> None:
    make("again", READY)
    api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "again",
        {"metadata": {"annotations": {"team": "billing"}}},
        _content_type="application/merge-patch+json",
    )
    result = plugin("restart", "again")
    assert result.returncode == 0, result.stderr
    obj = stored(kube, namespace, "again")
    annotations = obj["metadata"]["annotations"]
    assert annotations["team"] == "billing"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", annotations["kapistrano.dev/restartedAt"])
    assert obj["spec"]["version"] == "v3"


def test_status_while_rolling_and_when_ready(plugin: Run, make: Callable[..., Any], api: Any, namespace: str) -> None:
    make("shown", ROLLING)
    result = plugin("status", "shown")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"Release {namespace}/shown: version v3 (current v2), phase Progressing, ready 1/2"
    assert lines[1] == "restarting worker-2: sneakers stopping (pid 4242)"
    assert "worker-2   Restarting   v2        no      sneakers stopping (pid 4242)" in lines
    assert "Ready         False    RollingOut   1/2 hosts updated" in lines

    write_status(api, namespace, "shown", READY)
    result = plugin("status", "shown")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "worker-2   Ready   v3        yes" in result.stdout.splitlines()

    assert plugin("pause", "shown").returncode == 0  # a request, not a spec change
    result = plugin("status", "shown")
    assert "spec is at generation" not in result.stdout
    assert "paused by request (kapistrano.dev/pause=" in result.stdout


def test_status_of_a_missing_release(plugin: Run, namespace: str) -> None:
    result = plugin("status", "nowhere")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: Release 'nowhere' not found in namespace {namespace!r}"


def test_wait(plugin: Run, make: Callable[..., Any], api: Any, namespace: str) -> None:
    make("waited", ROLLING)
    result = plugin("wait", "waited", "--timeout", "1s")
    assert result.returncode == 1
    assert "timed out after 1s: restarting worker-2: sneakers stopping (pid 4242)" in result.stderr

    write_status(api, namespace, "waited", READY)
    result = plugin("wait", "waited", "--for", "complete", "--timeout", "10s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "release.kapistrano.dev/waited: v3 is ready on 2/2 hosts"

    write_status(api, namespace, "waited", STALLED)
    result = plugin("wait", "waited", "--timeout", "10s")
    assert result.returncode == 1
    assert "stalled: HostFailed: worker-2: sneakers not ready after 30 probes; rolled back to v2" in result.stderr


def test_wait_returns_at_once_on_a_pause_with_the_reason(plugin: Run, make: Callable[..., Any]) -> None:
    make("held", {**ROLLING, "phase": "Paused", "message": "paused after 1 hosts (pauseAfterHosts)"})
    result = plugin("wait", "held", "--timeout", "1h")
    assert result.returncode == 3, result.stderr
    assert "paused: paused after 1 hosts (pauseAfterHosts)" in result.stderr


def test_global_flags_before_the_command_and_output_formats(
    kube: Any, make: Callable[..., Any], namespace: str
) -> None:
    make("shown", ROLLING)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KUBECONFIG", None)
    flags = ["--kubeconfig", str(kube.kubeconfig), "-n", namespace, "--request-timeout", "20s"]
    command = [str(BIN / "kubectl"), "kapistrano", *flags, "get", "shown", "-o", "json"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"]["currentVersion"] == "v2"
    command = [str(BIN / "kubectl"), "kapistrano", "get", "-A", "--kubeconfig", str(kube.kubeconfig)]
    listed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^{namespace}\s+shown\s+v3\s+v2\s+1/2\s+Progressing$", listed.stdout, re.MULTILINE)
    command = [str(BIN / "kubectl"), "kapistrano", "--context", "nowhere", "--kubeconfig", str(kube.kubeconfig),
               "get", "shown", "-n", namespace]  # fmt: skip
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    assert "nowhere" in refused.stderr
    command = [str(BIN / "kubectl"), "kapistrano", "--as", "nobody", "get", "shown", "-n", namespace,
               "--kubeconfig", str(kube.kubeconfig)]  # fmt: skip
    impersonated = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert impersonated.returncode == 1
    assert 'User "nobody" cannot get resource "releases"' in impersonated.stderr


def test_get_watch_prints_each_host_transition_once(
    kube: Any, make: Callable[..., Any], api: Any, namespace: str
) -> None:
    make("watched", ROLLING)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "KUBECONFIG": str(kube.kubeconfig)}
    command = [str(BIN / "kubectl"), "kapistrano", "get", "watched", "-w", "-n", namespace]
    watcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        lines = iter(watcher.stdout.readline, "")
        assert next(line for line in lines if line.startswith("NAME")), "the tree comes first"
        next(line for line in lines if line.startswith("└── worker-2"))
        same_hosts = {**ROLLING, "message": "a new message, no host transition"}
        write_status(api, namespace, "watched", same_hosts)
        write_status(api, namespace, "watched", READY)
        write_status(api, namespace, "watched", READY)
        done = {**READY, "message": "marker"}
        write_status(api, namespace, "watched", {**done, "phase": "Degraded"})
        seen = []
        for line in lines:
            seen.append(line.rstrip("\n"))
            if "Degraded" in line:
                break
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)
    where = f"{namespace}/watched"
    assert seen == [
        f"{where}  Ready: v3 is ready on every host",
        f"{where}  worker-2  Ready  v3  ready=yes",
        f"{where}  Degraded: marker",
    ]


def test_kubectl_completes_commands_and_release_names(kube: Any, make: Callable[..., Any], namespace: str) -> None:
    make("billing-workers")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "KUBECONFIG": str(kube.kubeconfig)}

    def complete(*words: str) -> list[str]:
        command = [str(BIN / "kubectl"), "__complete", "kapistrano", *words]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
        return [line for line in done.stdout.splitlines() if not line.startswith(":")]

    assert complete("pro") == ["promote"]
    assert complete("-n", namespace, "abort", "bil") == ["billing-workers"]
