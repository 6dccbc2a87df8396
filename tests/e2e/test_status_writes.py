"""Status writes are coalesced: at most about one PATCH of releases/status per second of rollout.

Counted by the API server itself (`apiserver_request_total` of its /metrics), not by the operator.
Every host transition still shows: in the final status (each host Ready, the version in the history)
and in the Events.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kapistrano.api.release import GROUP
from kapistrano.lab import HostLab
from prometheus_client.parser import text_string_to_metric_families

from .kube import REAL_CLUSTER_ENV, Kube
from .test_operator import Scene, running_scene

pytestmark = pytest.mark.e2e

HOSTS = 5
#: Saves a run may make besides its one per second: the first at once, the final one at its end.
CONSTANT = 3


@pytest.fixture
def scene(kube: Kube, lab_factory: Any) -> Iterator[Scene]:
    """The operator and the sample app on five lab hosts."""
    lab: HostLab = lab_factory(HOSTS)
    with running_scene(kube, lab) as made:
        yield made


def status_patches(kube: Kube) -> float:
    """PATCHes of releases/status the API server has answered so far, by its own count (runs kubectl)."""
    if kube.server is None:
        pytest.skip(f"the request count of a shared cluster ({REAL_CLUSTER_ENV}) is not this test's alone")
    text = kube.kubectl("get", "--raw", "/metrics").stdout
    wanted = {"group": GROUP, "resource": "releases", "subresource": "status", "verb": "PATCH"}
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "apiserver_request_total" and wanted.items() <= sample.labels.items()
    )


def test_a_rollout_patches_the_status_at_most_once_a_second_and_every_transition_shows(scene: Scene) -> None:
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": 1})
    scene.wait_ready()
    events_before = {e["metadata"]["name"] for e in scene.kube.events(scene.ns)}
    before = status_patches(scene.kube)
    started = time.monotonic()
    scene.patch({"version": "v2", "source": {"path": scene.app.version("v2")}})
    done = scene.wait_ready(timeout=120)
    seconds = time.monotonic() - started
    patches = status_patches(scene.kube) - before
    print(f"{HOSTS} hosts: {patches:.0f} status PATCHes in {seconds:.1f} s of rollout")
    assert patches <= seconds + CONSTANT, (patches, seconds)

    status = done["status"]
    assert [(h["name"], h["phase"], h["version"], h["ready"]) for h in status["hosts"]] == [
        (h.name, "Ready", "v2", True) for h in scene.lab.hosts
    ]
    assert status["history"][0]["version"] == "v2"
    new = [e for e in scene.kube.events(scene.ns) if e["metadata"]["name"] not in events_before]
    per_host = Counter((e["message"].split(":")[0], e["reason"]) for e in new)
    for host in scene.lab.hosts:
        for reason in ("HostPublishing", "HostRestarting", "HostWaitingReady", "HostReady"):
            assert per_host[(host.name, reason)] >= 1, (host.name, reason, per_host)
    writes = sum(int(e.get("count") or 1) for e in new)
    print(f"{len(new)} Event objects, {writes} occurrences, for {HOSTS} hosts")
    assert len(new) <= 8 * HOSTS + CONSTANT, per_host
