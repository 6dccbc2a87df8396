"""Drift: a worker killed behind the operator's back is healed, or only reported, per driftPolicy."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from kapistrano.engine.rollout import FULL_OBSERVE_SECONDS

from .test_operator import Scene, condition, scene, wait_until

__all__ = ["scene"]

pytestmark = pytest.mark.e2e
DRIFT_SECONDS = 2


def kill_worker(scene: Scene, host_index: int) -> int:
    """SIGKILL the worker on one host, as a crash would; returns its pid (stops a process)."""
    pidfile = scene.lab.hosts[host_index].path("/var/www/app/shared/tmp/pids/worker.0.pid")
    pid = int(pidfile.read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    return pid


def starts_on(scene: Scene, host: str) -> list[dict[str, Any]]:
    """The worker starts logged on one host."""
    return [e for e in scene.app.read_events() if e["event"] == "start" and e["host"] == host]


def test_a_killed_worker_is_restarted_within_the_drift_interval(scene: Scene) -> None:
    scene.secret()
    scene.apply("v1", driftCheckIntervalSeconds=DRIFT_SECONDS)
    scene.wait_ready()
    host = scene.lab.hosts[1].name
    before = len(starts_on(scene, host))
    others = {h.name: len(starts_on(scene, h.name)) for h in scene.lab.hosts if h.name != host}
    kill_worker(scene, 1)
    wait_until(lambda: len(starts_on(scene, host)) > before, f"a new worker on {host}", timeout=30)
    scene.wait_ready()
    assert {h: len(starts_on(scene, h)) for h in others} == others, "a healthy host was restarted"


def test_drift_policy_report_only_reports(scene: Scene) -> None:
    scene.secret()
    scene.apply("v1", driftCheckIntervalSeconds=DRIFT_SECONDS, driftPolicy="Report")
    scene.wait_ready()
    host = scene.lab.hosts[1].name
    before = len(starts_on(scene, host))
    kill_worker(scene, 1)
    drifted = wait_until(
        lambda: (c := condition(scene.get(), "Drifted")) and c["status"] == "True" and c,
        "Drifted=True",
        timeout=30,
    )
    assert host in drifted["message"]
    status = scene.get()["status"]
    health = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert status["phase"] == "Degraded"
    assert {k: health[k] for k in ("Ready", "Stalled", "Reconciling")} == {
        "Ready": ("False", "Drifted"),
        "Stalled": ("True", "Drifted"),
        "Reconciling": ("False", "Drifted"),
    }
    # A heal would be recorded (action) and started right after the step that saw the host down, or
    # after a later reading of it: watch through one full re-read period for either.
    quiet_until = time.monotonic() + FULL_OBSERVE_SECONDS + 1
    while time.monotonic() < quiet_until:
        assert len(starts_on(scene, host)) == before, "Report must not restart anything"
        assert not any(h.get("action") for h in scene.get()["status"]["hosts"]), "Report must not plan a heal"
        time.sleep(0.2)  # sampling a period for something that must not happen: nothing to await
