"""Faults around the operator with a real API server: the server crashes and comes back, a Release is
deleted mid-rollout, a GitOps tool keeps applying the spec while the operator writes status.

The crash test has an API server of its own (SIGKILL and a restart on the same data and ports), so
the session's server is never touched.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kapistrano.lab import HostLab

from ..unit.test_release_validation import example
from .kube import Kube, kube_for, local_server
from .test_operator import Scene, current_version, running_scene, scene, wait_until

pytestmark = pytest.mark.e2e

__all__ = ["scene"]

GITOPS_MANAGER = "argocd-controller"


@pytest.fixture
def own_kube() -> Iterator[Kube]:
    """An API server of this test alone, with the CRD and RBAC installed (starts and stops a process)."""
    with local_server() as server, kube_for(server.kubeconfig, server.operator_kubeconfig, server) as kube:
        yield kube


@pytest.fixture
def slow_scene(own_kube: Kube, lab: HostLab) -> Iterator[Scene]:
    """A Scene on the test's own API server, with the operator running."""
    with running_scene(own_kube, lab) as made:
        yield made


def v2_starts(scene: Scene, since: int) -> Counter[str]:
    """How many times each host started v2 since event `since` (reads the app's event log)."""
    events = scene.app.read_events()[since:]
    return Counter(e["host"] for e in events if e["event"] == "start" and e["version"] == "v2")


def api_unreachable_logged(scene: Scene) -> bool:
    """Whether the operator has logged a failed call to the API server (reads its log)."""
    text = scene.operator.output().lower()
    return "connection refused" in text or "cannot connect" in text


def test_an_api_server_crash_mid_rollout_neither_stalls_the_hosts_nor_restarts_one_twice(slow_scene: Scene) -> None:
    scene = slow_scene
    server = scene.kube.server
    assert server is not None
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": "100%"})
    scene.wait_ready()
    before = len(scene.app.read_events())
    scene.apply("v2", strategy={"maxUnavailable": 1})
    wait_until(lambda: v2_starts(scene, before), "the first host starting v2")
    server.kill()
    wait_until(lambda: api_unreachable_logged(scene), "the operator meeting the API server down", timeout=120)
    server.start()
    done = scene.wait_ready(timeout=180)
    assert done["status"]["currentVersion"] == "v2"
    assert [h["version"] for h in done["status"]["hosts"]] == ["v2", "v2", "v2"]
    starts = v2_starts(scene, before)
    assert set(starts) == {h.name for h in scene.lab.hosts}
    assert all(count == 1 for count in starts.values()), f"a host was restarted twice: {starts}"


def test_a_release_deleted_mid_rollout_goes_away_and_its_hosts_are_left_alone(scene: Scene) -> None:
    """Deleted while it waits at a canary stop (pauseAfterHosts): the hosts not reached stay on v1."""
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": "100%"})
    scene.wait_ready()
    scene.apply("v2", strategy={"maxUnavailable": 1, "pauseAfterHosts": 1})
    wait_until(lambda: scene.get()["status"].get("phase") == "Paused", "the canary stop after one host")
    scene.kube.kubectl("delete", "release", "app", "-n", scene.ns, "--wait=true", "--timeout=90s", timeout=120)
    gone = scene.kube.kubectl("get", "release", "app", "-n", scene.ns, check=False)
    assert "NotFound" in gone.stderr, gone.stderr
    # kopf releases its finalizer only once the Release's daemon has exited: nothing acts on it any more.
    assert [current_version(h) for h in scene.lab.hosts] == ["v2", "v1", "v1"]
    assert scene.operator.process is not None
    assert scene.operator.process.poll() is None, "the operator exited"
    assert "Traceback" not in scene.operator.output()


def server_side_apply(scene: Scene, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Apply the Release as a GitOps controller does: server-side, its own field manager (runs kubectl)."""
    return scene.kube.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={GITOPS_MANAGER}",
        "-n",
        scene.ns,
        "-f",
        "-",
        input=yaml.safe_dump(document),
        check=False,
    )


def test_gitops_server_side_apply_and_the_operator_never_fight_over_fields(scene: Scene) -> None:
    scene.secret()
    document = scene.manifest("v1", strategy={"maxUnavailable": 1})
    first = server_side_apply(scene, document)
    assert first.returncode == 0, first.stderr
    applies = 1

    def reapply_and_check_ready() -> dict[str, Any] | None:
        nonlocal applies
        again = server_side_apply(scene, document)
        assert again.returncode == 0, f"apply #{applies + 1} conflicted: {again.stderr}"
        applies += 1
        release = scene.get()
        ready = [c for c in (release.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
        return release if ready and ready[0]["status"] == "True" else None

    wait_until(reapply_and_check_ready, "Ready while the spec is applied again and again", timeout=120)
    assert applies >= 3, "the spec was applied again while the operator rolled"
    shown = scene.kube.kubectl("get", "release", "app", "-n", scene.ns, "-o", "json", "--show-managed-fields")
    managed = json.loads(shown.stdout)["metadata"]["managedFields"]
    spec_writers = {m["manager"] for m in managed if "f:spec" in m.get("fieldsV1", {})}
    assert spec_writers == {GITOPS_MANAGER}, f"someone besides the GitOps manager owns spec fields: {spec_writers}"
    status_writers = {m["manager"] for m in managed if m.get("subresource") == "status"}
    assert status_writers, "the operator's status writes are recorded"
    assert GITOPS_MANAGER not in status_writers


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound right now (binds and closes a socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_a_stopped_api_server_frees_its_ports_and_starts_again_on_its_data(own_kube: Kube) -> None:
    server = own_kube.server
    assert server is not None
    ns = own_kube.namespace()
    own_kube.apply(example() | {"metadata": {"name": "kept"}}, ns)
    ports = {"API": server.port, "etcd": server.etcd_port, "etcd peer": server.peer_port}
    assert not any(port_is_free(port) for port in ports.values())
    server.stop()
    assert server.process is not None
    assert server.process.returncode == 0, server.tail()
    taken = [name for name, port in ports.items() if not port_is_free(port)]
    assert taken == [], f"still taken after SIGTERM: {taken}"
    server.start()
    assert own_kube.get_release(ns, "kept")["spec"]["application"] == "billing"
