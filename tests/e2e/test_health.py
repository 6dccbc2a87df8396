"""Flux and Argo CD health of live Releases: kstatus (Flux's library, in tests/kube) and the Argo CD Lua
health check give matching verdicts on the same objects, while rolling, when Ready and when Stalled."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from kapistrano.lab.kubeserver import build

from ..unit.test_argocd_lua import HEALTH, run
from .test_operator import Scene, condition, scene, wait_until

__all__ = ["scene"]

pytestmark = pytest.mark.e2e


def kstatus(obj: dict[str, Any]) -> dict[str, str]:
    """kstatus's verdict on an object, from tests/kube's `kstatus` subcommand (runs it)."""
    done = subprocess.run(
        [str(build()), "kstatus"], input=json.dumps(obj), capture_output=True, text=True, timeout=60, check=True
    )
    verdict: dict[str, str] = json.loads(done.stdout)
    return verdict


def verdicts(obj: dict[str, Any]) -> tuple[str, str]:
    """(kstatus status, Argo CD health status) of one live object (runs kstatus and the Lua script)."""
    return kstatus(obj)["status"], run(HEALTH, obj)["status"]


def observed(release: dict[str, Any]) -> bool:
    """Whether the status was written for the object's current generation (pure)."""
    return bool((release.get("status") or {}).get("observedGeneration") == release["metadata"]["generation"])


def rolling(release: dict[str, Any]) -> bool:
    """Reconciling=True for the current generation: the operator is rolling it out (pure)."""
    found = condition(release, "Reconciling")
    return observed(release) and found is not None and found["status"] == "True"


def test_kstatus_and_the_argocd_health_check_agree_while_rolling_when_ready_and_when_stalled(scene: Scene) -> None:
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": 1})
    mid = wait_until(lambda: (r := scene.get()) and rolling(r) and r, "Reconciling=True while v1 rolls")
    assert verdicts(mid) == ("InProgress", "Progressing")

    ready = scene.wait_ready()
    assert verdicts(ready) == ("Current", "Healthy")

    scene.apply("v2", healthy=False, readiness={"failureThreshold": 2})
    stalled = scene.wait_stalled("HostFailed")
    assert verdicts(stalled) == ("Failed", "Degraded")
    assert kstatus(stalled)["message"] == condition(stalled, "Stalled")["message"]  # type: ignore[index]
