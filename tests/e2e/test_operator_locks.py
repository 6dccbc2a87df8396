"""Host locks and the operator: a deleted Release releases them; `kubectl kapistrano lock/unlock` by hand."""

from __future__ import annotations

import os
import subprocess

import pytest
from kapistrano.lab import HostLab

from .kube import Kube
from .test_kubectl_plugin import BIN
from .test_operator import Scene, condition, running_scene, wait_until

pytestmark = pytest.mark.e2e

LOCK = "/var/www/app/.kapistrano.lock"


def kubectl_kapistrano(scene: Scene, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `kubectl kapistrano ARGS -n NS` as a user does (kubectl finds the plugin on PATH), stdin closed."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(scene.kube.kubeconfig),
    }
    command = [str(BIN / "kubectl"), "kapistrano", *args, "-n", scene.ns]
    return subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
    )


def test_deleting_a_release_mid_rollout_releases_its_host_locks(kube: Kube, lab: HostLab) -> None:
    with running_scene(kube, lab) as scene:
        gate = scene.app.root / "gate"
        wait = f"i=0; while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done; [ -e {gate} ]"
        scene.secret()
        scene.apply("v1", hooks={"afterUpdate": [{"name": "gate", "run": wait}]})
        try:
            wait_until(lambda: all(h.path(LOCK).exists() for h in scene.lab.hosts), "the host locks", 30)
            scene.kube.kubectl("delete", "release", "app", "-n", scene.ns, "--wait=false")
            wait_until(lambda: not any(h.path(LOCK).exists() for h in scene.lab.hosts), "the locks released", 60)
        finally:
            gate.touch()


def test_kubectl_kapistrano_unlock_removes_a_stale_lock_after_confirmation(kube: Kube, lab: HostLab) -> None:
    with running_scene(kube, lab) as scene:
        scene.secret()
        scene.apply("v1", paused=True)
        stale = scene.lab.hosts[0].path(LOCK)
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_text("gone-release\n4102444800\nold-box/77/1\n")
        declined = kubectl_kapistrano(
            scene, "unlock", "app", "--host", "host1"
        )  # no answer on stdin: nothing is removed
        assert declined.returncode == 1, declined.stderr
        assert "host1: locked by gone-release from old-box/77/1" in declined.stdout
        assert stale.exists()
        done = kubectl_kapistrano(scene, "unlock", "app", "--host", "host1", "--yes")
        assert done.returncode == 0, done.stderr
        assert "removed 1 lock(s)" in done.stdout
        assert not stale.exists()


def test_kubectl_kapistrano_lock_keeps_the_operator_off_a_host_with_its_message_until_released(
    kube: Kube, lab: HostLab
) -> None:
    with running_scene(kube, lab) as scene:
        scene.operator.stop()  # the operator would lock the hosts as soon as it reads them: take host2 first
        scene.secret()
        scene.apply("v1")
        taken = kubectl_kapistrano(scene, "lock", "acquire", "app", "--hosts", "host2", "--message", "disk swap")
        assert taken.returncode == 0, taken.stdout + taken.stderr
        status = kubectl_kapistrano(scene, "lock", "status", "app")
        assert status.returncode == 0, status.stderr
        assert "host2: locked by manual:" in status.stdout
        assert "until released, since " in status.stdout
        assert status.stdout.rstrip().splitlines()[1].endswith(": disk swap"), status.stdout
        scene.operator.start()
        stalled = scene.wait_stalled("Conflict", timeout=60)
        assert "disk swap" in (condition(stalled, "Stalled") or {}).get("message", ""), stalled["status"]
        released = kubectl_kapistrano(scene, "lock", "release", "app", "--hosts", "host2", "--yes")
        assert released.returncode == 0, released.stdout + released.stderr
        assert "removed 1 lock(s)" in released.stdout
        assert scene.wait_ready(timeout=120)["status"]["ready"] == "3/3"
