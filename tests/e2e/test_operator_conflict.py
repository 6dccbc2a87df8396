"""Two Releases deploying to the same hosts and deployTo: the host lock lets only one of them in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kapistrano.lab import HostLab

from .kube import Kube
from .test_operator import Scene, condition, current_version, running_scene, wait_until

pytestmark = pytest.mark.e2e

LOCK = "/var/www/app/.kapistrano.lock"


@pytest.fixture
def scene(kube: Kube, lab: HostLab) -> Iterator[Scene]:
    """A Scene with the operator running; everything is stopped afterwards."""
    with running_scene(kube, lab) as made:
        yield made


def test_a_second_release_on_the_same_hosts_stalls_with_conflict_and_the_first_completes(scene: Scene) -> None:
    gate = scene.app.root / "gate"
    # The first Release holds its host locks in afterUpdate until the test opens the gate (2 minutes at most).
    wait = f"i=0; while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done; [ -e {gate} ]"
    held = {"afterUpdate": [{"name": "gate", "run": wait}]}
    scene.secret()
    scene.apply("v1", name="first", hooks=held)
    wait_until(lambda: all(h.path(LOCK).exists() for h in scene.lab.hosts), "the first Release's host locks", 30)

    scene.apply("v2", name="second")
    second = scene.wait_stalled("Conflict", name="second", timeout=30)
    stalled = condition(second, "Stalled")
    assert stalled is not None
    assert stalled["message"], "the Conflict says which lock is held"
    assert condition(second, "Ready")["status"] == "False"  # type: ignore[index]
    assert second["status"].get("currentVersion") is None

    gate.touch()
    first = scene.wait_ready("first", timeout=30)
    assert first["status"]["ready"] == "3/3"
    assert [h["version"] for h in first["status"]["hosts"]] == ["v1", "v1", "v1"]
    assert [current_version(h) for h in scene.lab.hosts] == ["v1", "v1", "v1"], "the second Release changed a host"
    assert not scene.get("second").get("status", {}).get("currentVersion")
