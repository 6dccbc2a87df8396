"""Acceptance tests of the rollout engine against real SSH hosts and real worker processes.

Each test watches what actually happens on the hosts (worker event lines, pid files, `current`) rather
than what the engine says about itself, and waits by polling with deadlines, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from kapistrano.api.status import HostPhase
from kapistrano.engine.events import HostEvent
from kapistrano.engine.rollout import Outcome, Result, Rollout
from kapistrano.hosts import layout
from kapistrano.lab import HostLab, LabHost

from .appkit import App
from .safety import (
    DEPLOY_TO,
    Monitor,
    current_release,
    eventually,
    lives,
    overlaps,
    read_pid,
    read_state,
    release_version,
    starts_of,
)

LabFactory = Any


@pytest.fixture
def make_app() -> Iterator[Any]:
    """Build Apps on labs; every app directory is removed after the test."""
    made: list[App] = []

    def build(lab: HostLab, *, drain: float, boot: float) -> App:
        app = App(lab, drain=drain, boot=boot)
        made.append(app)
        return app

    yield build
    for app in made:
        app.close()


class Watched:
    """An engine run in a task, with every host event it emits kept for the test to wait on."""

    def __init__(self, app: App, version: str, **spec: Any) -> None:
        self.events: list[HostEvent] = []
        self.rollout: Rollout = app.rollout(app.release(version, **spec).spec)
        self.rollout.user_emit = self.events.append
        self.task: asyncio.Task[Outcome] = asyncio.ensure_future(self._run())

    async def _run(self) -> Outcome:
        try:
            return await self.rollout.run()
        finally:
            await self.rollout.close()

    def saw(self, host: str, *, phase: HostPhase | None = None, text: str = "") -> bool:
        """True once the engine emitted an event for `host` with that phase and message text (pure)."""
        return any(e.host == host and (phase is None or e.phase == phase) and text in e.message for e in self.events)

    async def outcome(self, timeout: float) -> Outcome:
        """The run's outcome; fails the test past `timeout` seconds."""
        return await asyncio.wait_for(asyncio.shield(self.task), timeout)


@pytest_asyncio.fixture
async def watch() -> AsyncIterator[Callable[..., Watched]]:
    """Start engine runs in tasks; a run still going when the test ends is cancelled and its connections closed."""
    runs: list[Watched] = []

    def start(app: App, version: str, **spec: Any) -> Watched:
        run = Watched(app, version, **spec)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.task.cancel()
        with contextlib.suppress(BaseException):
            await run.task


def pid_of(host: LabHost, instance: int = 0) -> int | None:
    """The pid the worker's pid file names on a host (reads the host's file)."""
    return read_pid(host.path(f"{DEPLOY_TO}/shared/tmp/pids/worker.{instance}.pid"))


def health(host: LabHost) -> str:
    """What the worker's /health answers on a host, with the HTTP code (runs curl inside the host)."""
    result = host.exec(["curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:9100/health"], check=False)
    return " ".join(result.stdout.split())


def assert_no_overlap(app: App) -> None:
    """No two processes of the same host and instance ran at the same time (reads the events)."""
    found = overlaps(app.read_events())
    assert not found, f"processes of one instance overlapped: {found}"


# -- 1. a slow-draining worker is replaced only after it exited, without a fixed pause ---------------


async def test_a_slow_draining_worker_is_replaced_right_after_it_exits(lab_factory: LabFactory, make_app: Any) -> None:
    app: App = make_app(lab_factory(2), drain=5.0, boot=0.5)
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    before = len(app.read_events())
    outcome = await app.apply("v2")
    assert outcome.result == Result.READY, outcome.message
    events = app.read_events()[before:]
    old = {life.host: life for life in lives(app.read_events()) if life.version == "v1"}
    new = {life.host: life for life in lives(events) if life.version == "v2"}
    assert sorted(new) == ["host1", "host2"]
    for name in ("host1", "host2"):
        exited = old[name].exit
        assert exited is not None, f"{name}: the v1 worker never exited"
        assert exited - old[name].start > 5, "the old worker drained for its 5 s"
        gap = new[name].start - exited
        # Started after the exit, and sooner than the worker takes to start: no pause in between.
        assert 0 < gap < app.boot, f"{name}: v2 started {gap:.2f}s after v1 exited (must be after, and at once)"
    ready_host1 = next(e for e in events if e["event"] == "ready" and e["host"] == "host1")
    draining_host2 = next(e for e in events if e["event"] == "draining" and e["host"] == "host2")
    assert ready_host1["time"] < draining_host2["time"], "host2 was stopped before host1 was ready again"
    assert_no_overlap(app)


# -- 2. never more hosts down than maxUnavailable -----------------------------------------------------


async def test_a_watcher_never_sees_more_hosts_down_than_max_unavailable(
    lab_factory: LabFactory, make_app: Any
) -> None:
    app: App = make_app(lab_factory(5), drain=0.6, boot=0.3)
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    with Monitor(app) as two:
        outcome = await app.apply("v2", strategy={"maxUnavailable": 2})
    assert outcome.result == Result.READY, outcome.message
    assert two.most_down <= 2, f"more than 2 hosts down at once: {two.worst()}"
    assert two.count(2) >= 1, "the watcher never saw two hosts down together: it is not watching"
    with Monitor(app) as one:
        outcome = await app.apply("v3", strategy={"maxUnavailable": 1})
    assert outcome.result == Result.READY, outcome.message
    assert one.most_down <= 1, f"more than 1 host down at once: {one.worst()}"
    assert one.count(1) >= 5, "the watcher did not see the hosts go down one by one"
    assert_no_overlap(app)


# -- 3. a version that never gets ready is rolled back on the first host and not retried --------------


async def test_a_version_that_never_gets_ready_is_rolled_back_and_not_retried(lab: HostLab, make_app: Any) -> None:
    app: App = make_app(lab, drain=0.3, boot=0.2)
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    host1, *others = lab.hosts
    v1_release = current_release(app, "host1")
    v1_pids = {h.name: pid_of(h) for h in others}
    broken = {"healthy": False, "readiness": {"failureThreshold": 3, "periodSeconds": 0.1}}

    outcome = await app.apply("v2", **broken)
    assert outcome.result == Result.STALLED, outcome.message
    assert outcome.status.failed_version == "v2"
    stalled = outcome.status.condition("Stalled")
    assert stalled is not None
    assert (stalled.status, stalled.reason) == ("True", "HostFailed")
    assert current_release(app, "host1") == v1_release
    await eventually(lambda: health(host1) == "ok v1 200", 10, lambda: f"host1 serving v1, not {health(host1)!r}")
    assert {h.name: pid_of(h) for h in others} == v1_pids, "other hosts were restarted"
    assert "host1" in starts_of(app.read_events(), "v2"), "v2 was never tried on host1"
    assert set(starts_of(app.read_events(), "v2")) == {"host1"}, "v2 reached another host"

    tried = starts_of(app.read_events(), "v2")
    again = await app.apply("v2", **broken)
    assert again.result == Result.STALLED, again.message
    assert starts_of(app.read_events(), "v2") == tried, "a failed version was retried without a spec change"

    fixed = await app.apply("v3")
    assert fixed.result == Result.READY, fixed.message
    assert [h.version for h in fixed.status.hosts] == ["v3", "v3", "v3"]
    assert fixed.status.failed_version is None
    assert_no_overlap(app)


async def test_on_failure_halt_leaves_the_failed_host_as_it_is_and_stops(lab: HostLab, make_app: Any) -> None:
    app: App = make_app(lab, drain=0.3, boot=0.2)
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    host1, *others = lab.hosts
    v1_pids = {h.name: pid_of(h) for h in others}
    broken = {"healthy": False, "readiness": {"failureThreshold": 3, "periodSeconds": 0.1}}

    outcome = await app.apply("v2", strategy={"onFailure": "Halt"}, **broken)

    assert outcome.result == Result.STALLED, outcome.message
    assert outcome.status.failed_version == "v2"
    entry = outcome.status.host("host1")
    assert entry is not None
    assert (entry.phase, entry.version) == ("Failed", "v2"), entry
    assert release_version(app, "host1", current_release(app, "host1")) == "v2", "host1 was rolled back"
    assert health(host1) == "not ready v2 503", "the v2 worker is not left running for a human to look at"
    assert {h.name: pid_of(h) for h in others} == v1_pids, "other hosts were restarted"


# -- 5. a host cut off the network mid-rollout ----------------------------------------------------------


async def test_a_host_cut_off_mid_rollout_holds_the_rollout_until_it_returns(
    lab: HostLab, make_app: Any, watch: Callable[..., Watched]
) -> None:
    app: App = make_app(lab, drain=0.5, boot=0.2)
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    host2 = lab.host("host2")
    host3_pid = pid_of(lab.host("host3"))
    with Monitor(app) as monitor:
        run = watch(app, "v2", ssh={"user": "root", "connectTimeoutSeconds": 2})
        await eventually(lambda: run.saw("host2", phase=HostPhase.RESTARTING), 30, "host2 restarting")
        host2.cut_link()
        try:
            await eventually(lambda: run.saw("host2", phase=HostPhase.UNREACHABLE), 20, "host2 Unreachable")
            await eventually(lambda: host_phase(app, "host2") == "Unreachable", 5, "Unreachable in the state file")
            assert pid_of(lab.host("host3")) == host3_pid, "host3 was taken down while host2 was away"
        finally:
            host2.restore_link()
        outcome = await run.outcome(60)
    assert outcome.result == Result.READY, outcome.message
    assert [h.version for h in outcome.status.hosts] == ["v2", "v2", "v2"]
    assert monitor.most_down <= 1, f"more than one host down: {monitor.worst()}"
    assert_no_overlap(app)


async def test_a_host_that_never_comes_back_ends_in_progress_deadline_exceeded(
    lab: HostLab, make_app: Any, watch: Callable[..., Watched]
) -> None:
    app: App = make_app(lab, drain=0.5, boot=0.2)
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    host2 = lab.host("host2")
    host3_pid = pid_of(lab.host("host3"))
    with Monitor(app) as monitor:
        run = watch(app, "v2", ssh={"user": "root", "connectTimeoutSeconds": 2}, progressDeadlineSeconds=6)
        await eventually(lambda: run.saw("host2", phase=HostPhase.RESTARTING), 30, "host2 restarting")
        host2.cut_link()
        try:
            outcome = await run.outcome(60)
        finally:
            host2.restore_link()
    assert outcome.result == Result.DEADLINE, outcome.message
    stalled = outcome.status.condition("Stalled")
    assert stalled is not None
    assert (stalled.status, stalled.reason) == ("True", "ProgressDeadlineExceeded")
    assert read_state(app.state)["conditions"], "the outcome was saved"
    assert pid_of(lab.host("host3")) == host3_pid, "host3 was taken down although host2 used the budget"
    assert "host3" not in starts_of(app.read_events(), "v2")
    assert monitor.most_down <= 1, f"more than one host down: {monitor.worst()}"


def host_phase(app: App, name: str) -> str | None:
    """A host's phase in the saved state file (reads the file)."""
    for entry in read_state(app.state).get("hosts", []):
        if entry.get("name") == name:
            return str(entry.get("phase"))
    return None


# -- 6. sshd restarted under a running rollout ------------------------------------------------------------


def drop_ssh_sessions(host: LabHost) -> None:
    """Stop the host's sshd listener and end its established sessions, as a reboot of sshd would (side effects).

    Only processes inside the lab host that descend from the sshd the lab started are signalled.
    """
    host.stop_sshd()
    for pid in host.pids_of(r"^sshd"):
        os.kill(pid, signal.SIGTERM)


async def test_the_engine_reconnects_after_sshd_restarts_mid_rollout(
    lab: HostLab, make_app: Any, watch: Callable[..., Watched]
) -> None:
    app: App = make_app(lab, drain=0.5, boot=0.2)
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    host2 = lab.host("host2")
    with Monitor(app) as monitor:
        run = watch(app, "v2", ssh={"user": "root", "connectTimeoutSeconds": 2})
        await eventually(lambda: run.saw("host2", phase=HostPhase.RESTARTING), 30, "host2 restarting")
        drop_ssh_sessions(host2)
        try:
            await eventually(lambda: run.saw("host2", phase=HostPhase.UNREACHABLE), 20, "host2 Unreachable")
        finally:
            host2.start_sshd()
        outcome = await run.outcome(60)
    assert outcome.result == Result.READY, outcome.message
    assert [h.version for h in outcome.status.hosts] == ["v2", "v2", "v2"]
    assert monitor.most_down <= 1, f"more than one host down: {monitor.worst()}"
    assert_no_overlap(app)


# -- 7. intent recorded before a crash is carried out on the next run ------------------------------------


async def test_a_host_switched_before_a_crash_gets_its_services_restarted(lab: HostLab, make_app: Any) -> None:
    app: App = make_app(lab, drain=0.3, boot=0.2)
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    spec = app.release("v2").spec
    engine = app.rollout(spec)
    try:
        driver = engine.driver(spec, spec.hosts[0])
        v2_release = await driver.update(spec, lambda _: None)
        v1_release = current_release(app, "host1")
        await layout.publish(driver.conn, spec.deploy_path, v2_release)  # type: ignore[attr-defined]
    finally:
        await engine.close()
    assert release_version(app, "host1", current_release(app, "host1")) == "v2"
    state = read_state(app.state)
    state["version"] = "v2"
    for entry in state["hosts"]:
        if entry["name"] == "host1":
            entry |= {"phase": "Publishing", "action": "Publish", "previousRelease": v1_release, "ready": False}
    app.state.write_text(json.dumps(state))
    old_pid = pid_of(lab.host("host1"))

    outcome = await app.apply("v2")
    assert outcome.result == Result.READY, outcome.message
    new_pid = pid_of(lab.host("host1"))
    assert new_pid != old_pid, "host1's worker was not restarted"
    runs = [life for life in lives(app.read_events()) if life.pid == new_pid]
    assert [life.cwd for life in runs] == [f"{DEPLOY_TO}/releases/{v2_release}"], "not run from the new release"
    assert starts_of(app.read_events(), "v2") == {"host1": 1, "host2": 1, "host3": 1}
    assert_no_overlap(app)
