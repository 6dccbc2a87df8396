"""Operator replicas sharing Releases by shard, with a hot standby per shard, on the real API server.

Each replica is `kapistrano run` as the ServiceAccount user of manifests/, with its own host name
(tests/e2e/shards.py). Killing a shard's active replica in the middle of a host's restart: its
standby, told by the peering that the active one is gone, takes its host locks over and finishes the
rollout, never restarting a host twice nor taking more than maxUnavailable hosts down. A Release
labelled for a shard is served by that shard's replica only, and moves when relabelled.
"""

from __future__ import annotations

import pytest
from kapistrano.k8s.sharding import Placement
from kapistrano.lab import HostLab

from ..integration.safety import Monitor, overlaps
from ..integration.test_engine_kills import check_every_instance_started_once
from .kube import REPO, Kube
from .shards import apply_in_shard, first_start_after, kill_mid_restart, peering, ready_with_standby, sharded_scene
from .test_operator import Scene, wait_until

pytestmark = pytest.mark.e2e

#: What the operator's log lines about a Release start with (the logger kapistrano.release.<ns>.<name>).
RELEASE_LOGGER = "kapistrano.release"


def finalizers(scene: Scene) -> list[str]:
    """The Release's finalizers now (runs kubectl)."""
    found: list[str] = scene.get()["metadata"].get("finalizers") or []
    return found


def test_a_standby_resumes_a_rollout_whose_active_replica_was_killed_mid_restart(kube: Kube, lab: HostLab) -> None:
    with peering(kube, 2) as base, sharded_scene(kube, lab, (0, base), (2, base)) as (scene, (active, standby)):
        spec = ready_with_standby(scene, active, standby, f"{base}-shard-0")
        before = len(scene.app.read_events())
        with Monitor(scene.app, instances=2) as monitor:
            apply_in_shard(scene, "v2", 0, **spec)
            killed = kill_mid_restart(active, scene.app.read_events)
            landed = scene.get().get("status", {}).get("currentVersion") != "v2"
            done = scene.wait_ready(timeout=180)
        events = scene.app.read_events()[before:]
        first = first_start_after(events, killed)
        assert first is not None
        print(f"\ntakeover: kill to the standby's first host action {first - killed:.2f} s")
        assert landed, "the rollout was over before the kill"
        assert {h["version"] for h in done["status"]["hosts"]} == {"v2"}
        check_every_instance_started_once("v2", events)
        assert monitor.most_down <= 1, f"more than one host down at once: {monitor.worst()}"
        assert not overlaps(scene.app.read_events()), overlaps(scene.app.read_events())
        assert f"peers gone from {base}-shard-0: {active.hostname}/" in standby.output()
        conflicts = [e["message"] for e in kube.events(scene.ns) if e.get("reason") == "Conflict"]
        assert not conflicts, f"the standby was kept out by the killed replica's locks: {conflicts}"


def test_a_release_labelled_for_a_shard_is_served_by_that_shards_replica_only(kube: Kube, lab: HostLab) -> None:
    with sharded_scene(kube, lab, (0, None), (1, None)) as (scene, (zero, one)):
        scene.secret()
        zero.start()
        one.start()
        apply_in_shard(scene, "v1", 1)
        scene.wait_ready(timeout=120)
        assert finalizers(scene) == [Placement(shard=1, shards=2).finalizer]
        assert "rollout complete: version v1" in one.output()
        assert RELEASE_LOGGER not in zero.output(), "shard 0 acted on a Release of shard 1"
        apply_in_shard(scene, "v2", 0)  # relabelled with a new version: shard 0 takes it over
        done = scene.wait_ready(timeout=120)
        assert {h["version"] for h in done["status"]["hosts"]} == {"v2"}
        wait_until(lambda: finalizers(scene) == [Placement(shards=2).finalizer], "shard 0's finalizer alone")
        wait_until(lambda: "rollout complete: version v2" in zero.output(), "shard 0 to finish v2")
        assert "rollout complete: version v2" not in one.output()


def test_the_sharded_install_is_accepted_by_the_api_server(kube: Kube) -> None:
    with peering(kube, 1):  # its CRD established, so that the ClusterKopfPeering objects can be checked
        done = kube.kubectl("apply", "--dry-run=server", "-k", str(REPO / "manifests" / "sharded"))
    assert "statefulset.apps/kapistrano created (server dry run)" in done.stdout, done.stdout
    assert "clusterkopfpeering.kopf.dev/kapistrano-shard-1 created (server dry run)" in done.stdout, done.stdout
