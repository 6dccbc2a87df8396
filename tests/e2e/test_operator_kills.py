"""The operator SIGKILLed at random instants of multi-instance rollouts on the real API server.

Rollouts v2, v3, ... of two worker instances on each of three hosts (maxUnavailable 1), the operator
killed once in each after a random delay (the test input, from a fixed seed) and started again,
until twenty kills landed while a rollout was still going. Throughout, a monitor samples every
worker every 50 ms: never two hosts down at once, no instance of a version started twice, no worker
of the new version ever stopped, and every rollout ends Ready.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
from typing import Any

import pytest

from ..integration.safety import Monitor, overlaps
from ..integration.test_engine_kills import check_every_instance_started_once, own_readiness
from .test_operator import Scene, scene

pytestmark = pytest.mark.e2e

__all__ = ["scene"]

SEED = 20261205
KILLS = 20
MAX_ROLLOUTS = 40


def test_operator_killed_20_times_mid_rollout_never_stops_a_new_worker_nor_a_host_twice(scene: Scene) -> None:
    scene.secret()
    spec: dict[str, Any] = {"strategy": {"maxUnavailable": 1}, "instances": 2, "readiness": own_readiness(scene.app)}
    began = time.monotonic()
    scene.apply("v1", **spec)
    scene.wait_ready()
    expected = time.monotonic() - began
    rng = random.Random(SEED)
    kills = rollouts = 0
    with Monitor(scene.app, instances=2) as monitor:
        while kills < KILLS and rollouts < MAX_ROLLOUTS:
            rollouts += 1
            version = f"v{rollouts + 1}"
            before = len(scene.app.read_events())
            scene.apply(version, **spec)
            kills += kill_within(scene, version, rng.uniform(0.3, expected))
            done = scene.wait_ready(timeout=120)
            assert {h["version"] for h in done["status"]["hosts"]} == {version}
            check_every_instance_started_once(version, scene.app.read_events()[before:])
    assert kills == KILLS, f"only {kills} of {rollouts} rollouts were still going when their kill came"
    assert monitor.most_down <= 1, f"more than one host down at once: {monitor.worst()}"
    assert not overlaps(scene.app.read_events()), overlaps(scene.app.read_events())


def kill_within(scene: Scene, version: str, delay: float) -> bool:
    """SIGKILL the operator `delay` s into a rollout and start it again; whether the rollout was still going.

    The delay is the test's input: the operator process is waited on for that long (it never exits).
    """
    process = scene.operator.process
    assert process is not None
    assert process.poll() is None, scene.operator.output()[-2000:]
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(delay)
    scene.operator.kill()
    landed = scene.get().get("status", {}).get("currentVersion") != version
    scene.operator.start()
    return landed
