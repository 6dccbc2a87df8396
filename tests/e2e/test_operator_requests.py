"""Promote and abort requests acted on by the operator, kept by a GitOps sync of the unchanged manifest."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .test_operator import Scene, current_version, scene, stalled_reason, wait_until
from .test_operator_pause import gitops_sync, plugin

__all__ = ["scene"]

pytestmark = pytest.mark.e2e
CANARY = {"maxUnavailable": 1, "pauseAfterHosts": 1}


def at_canary(scene: Scene) -> dict[str, Any]:
    """Roll v1 out, then v2 with a stop after one host; returns the Release held there (runs kubectl)."""
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": "100%"})
    scene.wait_ready()
    scene.apply("v2", strategy=CANARY)
    return wait_until(
        lambda: (r := scene.get()) and r.get("status", {}).get("phase") == "Paused" and r, "the canary stop", 60
    )


def request_entry(release: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The newest history entry of a request kind, if any."""
    return next((h for h in release["status"].get("history", []) if h.get("request") == kind), None)


def events(scene: Scene, reason: str) -> list[dict[str, Any]]:
    """Events with `reason` in the scene's namespace (runs kubectl)."""
    out = scene.kube.kubectl("get", "events", "-n", scene.ns, "--field-selector", f"reason={reason}", "-o", "json")
    found: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return found


def test_promote_goes_past_the_canary_stop_and_a_sync_of_git_keeps_it(scene: Scene) -> None:
    held = at_canary(scene)
    assert [h["version"] for h in held["status"]["hosts"]] == ["v2", "v1", "v1"]
    manifest = scene.manifest("v2", strategy=CANARY)
    gitops_sync(scene, manifest)
    promoted = plugin(scene, "promote", "app", "--reason", "canary looks fine")
    assert promoted.returncode == 0, promoted.stderr
    gitops_sync(scene, manifest)
    done = scene.wait_ready()
    assert [current_version(h) for h in scene.lab.hosts] == ["v2", "v2", "v2"]
    assert done["spec"]["strategy"]["pauseAfterHosts"] == 1, "the Git-owned stop is left as Git has it"
    entry = request_entry(done, "Promote")
    assert entry is not None
    assert (entry["requestedBy"], entry["reason"], entry["version"]) == (
        "kubectl-kapistrano",
        "canary looks fine",
        "v2",
    )
    said = wait_until(lambda: events(scene, "PromoteRequested"), "a PromoteRequested Event")
    assert "asked by kubectl-kapistrano (canary looks fine)" in said[0]["message"]


def test_abort_rolls_the_updated_hosts_back_and_a_sync_of_git_does_not_undo_it(scene: Scene) -> None:
    at_canary(scene)
    aborted = plugin(scene, "abort", "app", "--reason", "errors up")
    assert aborted.returncode == 0, aborted.stderr
    stopped = scene.wait_stalled("Aborted")
    assert [current_version(h) for h in scene.lab.hosts] == ["v1", "v1", "v1"]
    assert stopped["status"]["phase"] == "Degraded"
    assert stopped["spec"]["version"] == "v2", "an abort is a request, not a spec edit"
    entry = request_entry(stopped, "Abort")
    assert entry is not None
    assert (entry["requestedBy"], entry["reason"]) == ("kubectl-kapistrano", "errors up")
    for host in scene.lab.hosts:
        log = host.path("/var/www/app/revisions.log").read_text()
        assert "kubectl-kapistrano requested Abort of v2 (errors up): version v2 aborted" in log, host.name
    gitops_sync(scene, scene.manifest("v2", strategy=CANARY))
    after = scene.get()
    assert after["metadata"]["generation"] == stopped["metadata"]["generation"]
    assert "kapistrano.dev/abort" in after["metadata"]["annotations"]
    assert stalled_reason(after) == "Aborted"
    assert [current_version(h) for h in scene.lab.hosts] == ["v1", "v1", "v1"]


def test_after_an_abort_a_retry_rolls_the_version_out_again(scene: Scene) -> None:
    at_canary(scene)
    assert plugin(scene, "abort", "app").returncode == 0
    scene.wait_stalled("Aborted")
    retried = plugin(scene, "retry", "app")
    assert retried.returncode == 0, retried.stderr
    assert "warning" not in retried.stderr
    token = scene.get()["metadata"]["annotations"]["kapistrano.dev/retry"]
    wait_until(lambda: scene.get()["status"].get("retriedFor") == token, "the retry acted on")
    waited = plugin(scene, "wait", "app", "--timeout", "60s")
    assert waited.returncode == 3, waited.stderr  # at the canary stop again: wait says so at once
    assert "paused" in waited.stderr
    assert plugin(scene, "promote", "app").returncode == 0
    scene.wait_ready()
    assert [current_version(h) for h in scene.lab.hosts] == ["v2", "v2", "v2"]
