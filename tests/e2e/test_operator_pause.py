"""`kubectl kapistrano pause` in the middle of a rollout run by the operator, then `resume`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .test_operator import Scene, scene, wait_until

__all__ = ["scene"]

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def plugin(scene: Scene, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl kapistrano ARGS -n NS` as a user runs it: kubectl finds the plugin on PATH."""
    env = {**scene.kube.env(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [scene.kube.binary, "kapistrano", *args, "-n", scene.ns]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def gitops_sync(scene: Scene, manifest: dict[str, Any]) -> None:
    """Server-side apply of the unchanged Git manifest, as Argo CD's controller does it (runs kubectl)."""
    scene.kube.kubectl(
        "apply", "--server-side", "--field-manager=argocd-controller", "--force-conflicts", "-n", scene.ns,
        "-f", "-", input=json.dumps(manifest),
    )  # fmt: skip


def v2_starts(scene: Scene) -> list[dict[str, Any]]:
    """Worker starts of v2, in order."""
    return [e for e in scene.app.read_events() if e["event"] == "start" and e["version"] == "v2"]


def test_pause_mid_rollout_stops_after_the_current_host_and_resume_finishes(scene: Scene) -> None:
    scene.app.drain = 1.5  # each host takes a while, so the pause lands in the middle
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": "100%"})
    scene.wait_ready()
    scene.patch({"version": "v2", "source": {"path": scene.app.version("v2")}, "strategy": {"maxUnavailable": 1}})
    wait_until(lambda: any(e["event"] == "draining" for e in scene.app.read_events()), "the first host draining")
    paused = plugin(scene, "pause", "app")
    assert paused.returncode == 0, paused.stderr
    status = wait_until(
        lambda: (r := scene.get()) and r.get("status", {}).get("phase") == "Paused" and r, "phase Paused", timeout=60
    )
    hosts = {h["name"]: h["version"] for h in status["status"]["hosts"]}
    assert list(hosts.values()).count("v2") == 1, f"the host in progress finishes, no other starts: {hosts}"
    assert len(v2_starts(scene)) == 1
    gitops_sync(scene, scene.manifest("v2", strategy={"maxUnavailable": 1}))
    synced = wait_until(lambda: (r := scene.get()) and seen_and_paused(r) and r, "the sync observed, still paused")
    assert "kapistrano.dev/pause" in synced["metadata"]["annotations"]
    assert len(v2_starts(scene)) == 1, "a sync of the Git manifest does not undo the pause"
    resumed = plugin(scene, "resume", "app", "--reason", "incident over")
    assert resumed.returncode == 0, resumed.stderr
    done = scene.wait_ready()
    assert [h["version"] for h in done["status"]["hosts"]] == ["v2", "v2", "v2"]
    assert [e["host"] for e in v2_starts(scene)] == [h.name for h in scene.lab.hosts]
    asked = [(h["request"], h["requestedBy"], h.get("reason")) for h in done["status"]["history"] if h.get("request")]
    assert asked == [("Resume", "kubectl-kapistrano", "incident over"), ("Pause", "kubectl-kapistrano", None)]


def seen_and_paused(release: dict[str, Any]) -> bool:
    """The operator observed the Release's generation and holds it paused."""
    status = release.get("status", {})
    return status.get("observedGeneration") == release["metadata"]["generation"] and status.get("phase") == "Paused"
