"""The sidekiq workload rolled out by the operator: `kubectl apply` of a Release, kapistrano run, lab hosts.

Same app and checks as test_sidekiq.py, but the rollout is the operator's reaction to a new version
applied with kubectl (the e2e Scene: API server, operator process, SSH Secret).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kapistrano.lab import HostLab

from ..e2e.kube import Kube
from ..e2e.test_operator import SECRET, Operator, Scene
from ..integration.appkit import App
from .kit import Loop, Sampler, Workload, report, running
from .servers import RedisServer, wait_until
from .test_sidekiq import Jobs, live_processes, sidekiq_service

pytestmark = [pytest.mark.workloads, pytest.mark.e2e]


@pytest.fixture
def scene(kube: Kube, lab: HostLab) -> Iterator[Scene]:
    """The operator running against the API server and the lab; stopped afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="kapwop-"))
    app = App(lab)
    operator = Operator(kube, workdir)
    made = Scene(kube, lab, app, operator)
    operator.start()
    try:
        yield made
    finally:
        operator.stop()
        app.close()
        shutil.rmtree(workdir, ignore_errors=True)


def release(scene: Scene, work: Workload, version: str, services: list[dict[str, Any]]) -> dict[str, Any]:
    """The workload's Release in the scene's namespace, with the SSH Secret reference (copies the source)."""
    doc = work.manifest(version, services, strategy={"maxUnavailable": 1})
    doc["metadata"] = {"name": work.application, "namespace": scene.ns}
    doc["spec"]["ssh"]["secretRef"] = {"name": SECRET}
    return doc


def test_the_operator_rolls_sidekiq_one_host_at_a_time_without_a_gap(scene: Scene, redis: RedisServer) -> None:
    watch = redis.client()
    watch.call("DEL", "done", "done_by", "queue:default")
    work = Workload(scene.lab, "sidekiq", application="jobs")
    service = [sidekiq_service(redis, scene.lab)]
    scene.secret()
    try:
        scene.kube.apply(release(scene, work, "v1", service), scene.ns)
        scene.wait_ready(work.application, timeout=90)
        wait_until(lambda: live_processes(watch) == 3, "three live sidekiq processes", 30)

        sampler_client = redis.client()
        sampler = Sampler(lambda: live_processes(sampler_client), period=0.1)
        jobs = Jobs(redis)
        producer = Loop(jobs.enqueue, period=0.1, limit=1500)
        try:
            with running(sampler, producer):
                scene.kube.apply(release(scene, work, "v2", service), scene.ns)
                done = scene.wait_ready(work.application, timeout=90)
        finally:
            sampler_client.close()
            jobs.client.close()
        assert done["status"]["currentVersion"] == "v2"
        assert sampler.errors == []
        assert producer.errors == []
        values = sampler.values()
        assert len(values) >= 30, "too few samples to prove anything"
        assert sampler.max_gap() < 0.5, "the sampler stalled"
        assert min(values) >= 1, f"no live sidekiq at some sample: {values}"
        wait_until(lambda: not jobs.missing(watch), "every enqueued job to complete", 60, 0.2)
        assert "v2" in jobs.versions(watch)
        report("sidekiq by the operator", samples=len(values), min_live=min(values), jobs=len(jobs.ids))
    finally:
        watch.close()
        work.close()
