"""The rolling restart engine against real SSH hosts and real worker processes."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from kapistrano.engine.rollout import Result
from kapistrano.hosts import layout
from kapistrano.hosts.errors import CommandTimeout
from kapistrano.hosts.lock import LOCK_FILE
from kapistrano.lab import HostLab

from .appkit import App, AppFactory, by_pid


@pytest.fixture
def app(lab: HostLab, app_factory: AppFactory) -> App:
    return app_factory(lab, drain=1.0, boot=0.3)


async def test_a_release_rolls_across_every_host_one_at_a_time(app: App) -> None:
    first = await app.apply("v1", strategy={"maxUnavailable": "100%"})
    assert first.result == Result.READY, first.message
    before = len(app.read_events())
    second = await app.apply("v2")
    assert second.result == Result.READY, second.message
    status = second.status
    assert status.ready == "3/3"
    assert status.current_version == "v2"
    assert [h.version for h in status.hosts] == ["v2", "v2", "v2"]
    events = app.read_events()[before:]
    starts = [e for e in events if e["event"] == "start" and e["version"] == "v2"]
    assert [e["host"] for e in starts] == [h.name for h in app.lab.hosts], "one host after the other, in spec order"
    exits = {e["host"]: e for e in events if e["event"] == "exit" and e["version"] == "v1"}
    readies = {e["host"]: e for e in events if e["event"] == "ready" and e["version"] == "v2"}
    names = [h.name for h in app.lab.hosts]
    for previous, following in itertools.pairwise(names):
        assert readies[previous]["time"] <= exits[following]["time"], (
            f"{following} was stopped before {previous} was ready"
        )
    per_pid = dict(by_pid(app.read_events()))
    assert all("exit" in e or e.get("start", {}).get("version") == "v2" for e in per_pid.values())


async def test_hooks_run_in_the_release_and_once_hooks_on_the_first_host_only(app: App) -> None:
    marks = app.root / "hooks.log"
    # The migration takes a while, so a host that published during it would be caught doing so.
    migrate = f"echo migrate $(hostname) >> {marks}; sleep 0.5; echo migrated $(date +%s.%N) >> {marks}"
    hooks = {
        "afterUpdate": [{"name": "bundle", "run": f"echo update $(cat VERSION) $(hostname) >> {marks}"}],
        "beforePublish": [
            {"name": "migrate", "run": migrate, "once": True},
            {"name": "announce", "run": f"echo before $(hostname) $(date +%s.%N) >> {marks}"},
        ],
        "afterPublish": [{"name": "notify", "run": f"echo published $(hostname) >> {marks}"}],
    }
    outcome = await app.apply("v1", hooks=hooks, strategy={"maxUnavailable": "100%"})
    assert outcome.result == Result.READY, outcome.message
    lines = marks.read_text().splitlines()
    names = [h.name for h in app.lab.hosts]
    assert sorted(line for line in lines if line.startswith("update")) == [f"update v1 {n}" for n in names]
    assert [line for line in lines if line.startswith("migrate ")] == [f"migrate {names[0]}"]
    assert sorted(line for line in lines if line.startswith("published")) == [f"published {n}" for n in names]
    migrated = float(next(line for line in lines if line.startswith("migrated")).split()[1])
    began = {line.split()[1]: float(line.split()[2]) for line in lines if line.startswith("before")}
    assert sorted(began) == names
    # Although the budget lets every host publish at once, none starts before the migration ended.
    assert all(began[n] > migrated for n in names[1:]), (migrated, began)
    starts = {e["host"]: e["time"] for e in app.read_events() if e["event"] == "start"}
    assert all(starts[n] > migrated for n in names), (migrated, starts)


async def test_a_canary_pause_stops_after_its_hosts_and_raising_it_finishes(app: App) -> None:
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    paused = await app.apply("v2", strategy={"pauseAfterHosts": 1})
    assert paused.result == Result.PAUSED, paused.message
    assert [h.version for h in paused.status.hosts] == ["v2", "v1", "v1"]
    assert paused.status.phase == "Paused"
    done = await app.apply("v2")
    assert done.result == Result.READY, done.message
    assert [h.version for h in done.status.hosts] == ["v2", "v2", "v2"]


async def test_a_paused_release_starts_no_host(app: App) -> None:
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    before = len(app.read_events())
    outcome = await app.apply("v2", paused=True)
    assert outcome.result == Result.PAUSED
    assert len(app.read_events()) == before, "a worker was restarted while paused"


async def test_max_unavailable_100_percent_restarts_every_host_at_once(app: App) -> None:
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    before = len(app.read_events())
    assert (await app.apply("v2", strategy={"maxUnavailable": "100%"})).result == Result.READY
    events = app.read_events()[before:]
    draining = [e["time"] for e in events if e["event"] == "draining"]
    first_ready = min(e["time"] for e in events if e["event"] == "ready" and e["version"] == "v2")
    assert len(draining) == 3
    assert max(draining) < first_ready, "a host waited for another one although the budget allowed all"


async def test_a_first_deploy_that_never_gets_ready_stalls_and_leaves_the_host_alone(app: App) -> None:
    """There is no earlier release to go back to: the rollout stalls instead of retrying a rollback."""
    outcome = await asyncio.wait_for(app.apply("v1", healthy=False, readiness={"failureThreshold": 3}), 60)
    assert outcome.result == Result.STALLED, outcome.message
    assert "HostFailed" in outcome.message
    # The budget holds on a first deploy too: the first host failed, and nothing older is there to go
    # back to; the hosts after it were never started.
    first, *others = outcome.status.hosts
    assert (first.phase, first.rollback_failed, first.failed_version) == ("Failed", True, "v1"), first
    assert "no previous release" in first.message
    for host in others:
        assert (host.phase, host.version, host.attempts) == ("Updated", None, 0), host


async def test_an_after_update_hook_cut_short_leaves_no_release_to_reuse(app: App) -> None:
    """A release is complete (reusable) only once its afterUpdate hooks ran to the end."""
    slow = {"afterUpdate": [{"name": "bundle", "run": "sleep 30"}]}
    spec = app.release("v1", hooks=slow, ssh={"user": "root", "commandTimeoutSeconds": 1}).spec
    driver = app.driver(spec)
    try:
        with pytest.raises(CommandTimeout):
            await driver.update(spec, lambda _event: None)
        assert await layout.find_release_for_version(driver.conn, spec.deploy_path, "v1") is None
        assert await layout.list_releases(driver.conn, spec.deploy_path) == [], "a half-made release was left"
        # The hooks see REVISION (as in Capistrano) but not yet the marker that makes the release reusable.
        check = "test -f REVISION && test ! -e .kapistrano-version && touch hooked"
        fixed = app.release("v1", hooks={"afterUpdate": [{"name": "bundle", "run": check}]}).spec
        release = await driver.update(fixed, lambda _event: None)
        assert app.lab.hosts[0].path(f"{layout.Paths(fixed.deploy_path).release(release)}/hooked").exists()
    finally:
        await driver.close()


async def test_min_ready_seconds_holds_the_next_host_and_the_locks_last_until_the_end(app: App) -> None:
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    before = len(app.read_events())
    # Run from releases/<name>: the hook fails, and so does the rollout, unless the host lock is held.
    locked = {"beforePublish": [{"name": "locked", "run": f"test -f ../../{LOCK_FILE}"}]}
    outcome = await app.apply("v2", strategy={"minReadySeconds": 1}, hooks=locked)
    assert outcome.result == Result.READY, outcome.message
    events = app.read_events()[before:]
    ready = {e["host"]: e["time"] for e in events if e["event"] == "ready" and e["version"] == "v2"}
    draining = {e["host"]: e["time"] for e in events if e["event"] == "draining" and e["version"] == "v1"}
    names = [h.name for h in app.lab.hosts]
    for previous, following in itertools.pairwise(names):
        assert draining[following] - ready[previous] >= 1.0, f"{following} started before {previous} held 1 s"
    lock_file = f"{app.release('v2').spec.deploy_path}/{LOCK_FILE}"
    assert not any(h.path(lock_file).exists() for h in app.lab.hosts), "a lock was kept"


async def test_a_rollback_cut_short_after_its_switch_finishes_on_the_release_it_switched_to(app: App) -> None:
    """No previous release recorded (the status was lost): `current` already left the failed version."""
    first = await app.apply("v1", strategy={"maxUnavailable": "100%"})
    assert first.result == Result.READY, first.message
    entry = first.status.host("host1")
    assert entry is not None
    assert entry.release is not None
    v1_release = entry.release
    assert (await app.apply("v2")).result == Result.READY
    spec = app.release("v2").spec
    driver = app.driver(spec)
    try:
        await layout.publish(driver.conn, spec.deploy_path, v1_release)  # the switch of the cut-short rollback
        before = len(app.read_events())
        assert await driver.rollback(spec, lambda _event: None, release=None) == v1_release
        current = await layout.read_current(driver.conn, spec.deploy_path)
        assert current is not None
        assert current.release == v1_release
    finally:
        await driver.close()
    started = [e for e in app.read_events()[before:] if e["event"] == "start"]
    assert [(e["host"], e["version"]) for e in started] == [("host1", "v1")], started
