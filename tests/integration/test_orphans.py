"""No orphans: what a new release no longer names is stopped when a host is published, and said so.

Real lab hosts and sample workers; what counts is the workers' own exit lines and /proc.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from kapistrano.api.release import parse_release
from kapistrano.engine.rollout import Result
from kapistrano.hosts import layout
from kapistrano.lab.sample_app import worker_service

from .appkit import App, AppFactory
from .safety import DEPLOY_TO, current_release, eventually, lives, pid_alive
from .test_cli import kapistrano, ssh_args


@pytest.fixture
def app(app_factory: AppFactory) -> App:
    """The sample worker on two lab hosts; its directory is removed after the test."""
    return app_factory(2, drain=0.3, boot=0.2)


def mailer(app: App) -> dict[str, Any]:
    """A second service, the same sample worker on its own health port (pure)."""
    service = worker_service(drain=app.drain, boot=app.boot, events=app.events)
    service["name"] = "mailer"
    service["pidfile"]["path"] = "tmp/pids/mailer.{index}.pid"
    service["pidfile"]["start"] = service["pidfile"]["start"].replace("exec env ", "exec env HEALTH_PORT=9200 ")
    service["readiness"]["httpGet"]["port"] = 9200
    return service


async def test_instances_beyond_the_count_and_a_retired_service_are_stopped_on_publish(app: App) -> None:
    v1 = app.manifest("v1", instances=2, strategy={"maxUnavailable": "100%"})
    v1["spec"]["services"].append(mailer(app))
    assert (await app.apply_manifest(v1)).result == Result.READY
    old = [life for life in lives(app.read_events()) if life.version == "v1"]
    assert len(old) == 6, old  # worker x2 and mailer x1 on each of 2 hosts

    outcome = await app.apply_manifest(app.manifest("v2", instances=1))

    assert outcome.result == Result.READY, outcome.message
    await eventually(lambda: not any(pid_alive(life.pid) for life in old), 10, lambda: "the v1 processes to be gone")
    ended = {life.pid: life.exit for life in lives(app.read_events())}
    assert all(ended[life.pid] is not None for life in old), "a v1 process never drained and exited by itself"
    for host in outcome.status.hosts:
        assert "stopped worker[1] pid" in host.message, host
        assert "mailer[0] pid" in host.message, host
        assert host.orphans == [], host
    for lab_host in app.lab.hosts:
        pids = lab_host.path(f"{DEPLOY_TO}/shared/tmp/pids")
        assert sorted(p.name for p in pids.iterdir() if p.suffix == ".pid") == ["worker.0.pid"], lab_host.name


async def test_a_release_a_live_process_runs_from_is_never_cleaned_up(app: App) -> None:
    v1 = app.manifest("v1", instances=2)
    assert (await app.apply_manifest(v1)).result == Result.READY
    spec = parse_release(v1).spec
    driver = app.driver(spec)
    try:
        (running_from,) = await layout.list_releases(driver.conn, DEPLOY_TO)
        # Two newer releases, current switched to the newest: v1's release is the oldest, beyond
        # keepReleases and neither current nor previous; only its live workers keep it.
        for name in ("20991231000000", "20991231000001", "20991231000002"):
            await layout.create_release(driver.conn, DEPLOY_TO, name)
        await layout.publish(driver.conn, DEPLOY_TO, "20991231000002")
        removed = await layout.cleanup(driver.conn, DEPLOY_TO, 1)
    finally:
        await driver.close()
    assert running_from not in removed, "the release the workers run from was removed"
    assert removed == ["20991231000000"], removed


async def test_a_process_the_release_no_longer_names_is_reported_and_healed(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the command's tables keep each host on one line
    v1 = app.manifest("v1", strategy={"maxUnavailable": "100%"})
    v1["spec"]["services"].append(mailer(app))
    assert (await app.apply_manifest(v1)).result == Result.READY
    v1_release = current_release(app, "host1")
    v2 = app.manifest("v2")
    assert (await app.apply_manifest(v2)).result == Result.READY
    # A mailer of v1 running again, as one left behind by a run cut short before it stopped it.
    host1 = app.lab.host("host1")
    start = f"cd {DEPLOY_TO}/releases/{v1_release} && EVENTS_LOG={app.events} HEALTH_PORT=9200 "
    start += f"setsid python3 worker.py </dev/null >/dev/null 2>&1 & echo $! > {DEPLOY_TO}/shared/tmp/pids/mailer.0.pid"
    host1.exec(start)
    rogue = int(host1.path(f"{DEPLOY_TO}/shared/tmp/pids/mailer.0.pid").read_text())
    try:
        spec = parse_release(v2).spec
        driver = app.driver(spec)
        try:
            seen = await driver.observe(spec)
        finally:
            await driver.close()
        orphan = f"mailer[0] pid {rogue} (release {v1_release})"
        assert seen.orphans == (orphan,), seen
        release = app.write("v2")
        argv = ["-f", release, "--state", app.state, *ssh_args(app)]
        status, planned = kapistrano("status", *argv), kapistrano("plan", *argv)
        assert f"not in the spec: {orphan}" in status.stdout, status.stdout
        assert f"stop what the spec no longer names: {orphan}" in planned.stdout, planned.stdout

        outcome = await app.apply_manifest(v2)

        assert outcome.result == Result.READY, outcome.message
        await eventually(lambda: not pid_alive(rogue), 10, "the orphaned mailer to be gone")
        entry = outcome.status.host("host1")
        assert entry is not None
        assert entry.message == f"stopped mailer[0] pid {rogue} (release {v1_release}): no longer in the spec"
        assert entry.orphans == []
    finally:
        if pid_alive(rogue):
            os.kill(rogue, signal.SIGKILL)
