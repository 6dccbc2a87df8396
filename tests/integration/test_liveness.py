"""Liveness apart from readiness, on lab hosts: stuck workers are restarted one host at a time, then left alone."""

from __future__ import annotations

import time
from typing import Any

from kapistrano.engine.rollout import Outcome, Result

from .appkit import App
from .safety import DEPLOY_TO, Monitor, starts_of

STUCK = f"{DEPLOY_TO}/shared/STUCK"
MAX_RESTARTS = 2
LIVENESS = {
    "exec": {"command": f"test ! -e {STUCK}"},
    "failureThreshold": 2,
    "periodSeconds": 0.1,
    "backoffSeconds": 0.5,
    "maxRestarts": MAX_RESTARTS,
}


def with_liveness(app: App, **spec: Any) -> dict[str, Any]:
    """The Release of v1 with a liveness check that fails on a host holding shared/STUCK (pure)."""
    doc = app.manifest("v1", **spec)
    doc["spec"]["services"][0]["liveness"] = LIVENESS
    return doc


def given_up(outcome: Outcome) -> set[str]:
    """Hosts whose liveness restarts reached the limit (pure)."""
    return {h.name for h in outcome.status.hosts if h.liveness_restarts >= MAX_RESTARTS}


def drift_reason(outcome: Outcome) -> str | None:
    """The Drifted condition's reason when it is True (pure)."""
    drifted = outcome.status.condition("Drifted")
    return drifted.reason if drifted is not None and drifted.status == "True" else None


async def test_stuck_workers_are_restarted_one_host_at_a_time_until_the_limit(app: App) -> None:
    assert (await app.apply_manifest(with_liveness(app, strategy={"maxUnavailable": "100%"}))).result == Result.READY
    before = starts_of(app.read_events(), "v1")
    for name in ("host1", "host2"):
        app.lab.host(name).path(STUCK).write_text("stuck\n")
    deadline = time.monotonic() + 60
    with Monitor(app) as monitor:
        # Each run restarts what is due and ends; the next one comes once a backoff may be over.
        outcome = await app.apply_manifest(with_liveness(app))
        while given_up(outcome) != {"host1", "host2"} and time.monotonic() < deadline:
            outcome = await app.apply_manifest(with_liveness(app))
    assert drift_reason(outcome) == "CrashLoop", outcome.status.conditions
    drifted = outcome.status.condition("Drifted")
    assert drifted is not None
    assert "host1, host2" in drifted.message, drifted.message
    after = starts_of(app.read_events(), "v1")
    restarted = {name: after.get(name, 0) - before.get(name, 0) for name in ("host1", "host2", "host3")}
    assert restarted == {"host1": MAX_RESTARTS, "host2": MAX_RESTARTS, "host3": 0}, restarted
    assert monitor.most_down <= 1, f"more than 1 host down at once: {monitor.worst()}"
    assert monitor.count(1) >= 1, "the watcher never saw a host restart"
