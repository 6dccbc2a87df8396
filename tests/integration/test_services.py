"""Service managers against real lab hosts over SSH, with real worker processes.

The sample worker (tests/workers/slow_worker.py) takes --drain seconds to exit after TERM and
logs start/exit times per pid, so the tests can see that a new process starts only once the old
one has exited, without any fixed sleep between the two.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from kapistrano.api.spec import Probe
from kapistrano.hosts import services
from kapistrano.hosts.errors import NotReady, ServiceError

from tests.integration.hostkit import wait_until
from tests.integration.servicekit import DEPLOY_TO, App, app, cwd_of, dead_pid, environ_of, pidfile_service, session_of

__all__ = ["app"]

PIDFILE0 = "/var/www/app/shared/tmp/pids/worker.0.pid"


async def test_a_draining_worker_is_replaced_only_after_it_exited_and_without_a_gap(app: App) -> None:
    service = pidfile_service(app.worker("--drain", "5"))
    first = await services.restart(app.runner, app.ctx, service, on_event=app.record)
    old = first.instances[0].new_pid
    assert old is not None
    assert app.alive(old)
    app.seen.clear()

    second = await services.restart(app.runner, app.ctx, service, on_event=app.record)

    new = second.instances[0].new_pid
    assert new is not None
    assert new != old
    started = await app.wait_event("start", new)
    term, exited = app.event("sigterm", old), app.event("exit", old)
    assert exited.at - term.at >= 5.0
    assert started.at >= exited.at
    assert started.at - exited.at < 1.0
    assert second.instances[0].old_pid == old
    assert second.instances[0].stop_seconds is not None
    assert second.instances[0].stop_seconds >= 5.0
    assert not second.instances[0].killed
    assert app.kinds() == [("stopping", "0"), ("exited", "0"), ("starting", "0"), ("started", "0")]
    assert str(app.seen[0]) == f"worker[0] stopping (pid {old})"
    assert not app.alive(old)
    assert app.alive(new)
    state = await services.status(app.runner, app.ctx, service)
    assert state.pids == (new,)
    assert state.running


async def test_the_kill_signal_ends_a_worker_that_outlives_stop_timeout(app: App) -> None:
    service = pidfile_service(app.worker("--drain", "30"), stopTimeoutSeconds=1)
    old = (await services.restart(app.runner, app.ctx, service)).instances[0].new_pid
    assert old is not None

    result = await services.restart(app.runner, app.ctx, service, on_event=app.record)

    restarted = result.instances[0]
    assert restarted.killed
    assert restarted.stop_seconds is not None
    assert 1.0 <= restarted.stop_seconds < 3.0
    assert [e.kind for e in app.events() if e.pid == old] == ["start", "sigterm"]
    new = restarted.new_pid
    assert new is not None
    assert (await app.wait_event("start", new)).at >= app.event("sigterm", old).at + 1.0
    assert ("killed", "0") in app.kinds()
    assert not app.alive(old)


def drained_check(app: App) -> dict[str, object]:
    """A `drained` check passing once the quieted worker logged that its job in progress is done (pure)."""
    command = f'grep -q "^drained $KAPISTRANO_PID " {app.events_file}'
    return {"exec": {"command": command}, "periodSeconds": 0.1}


async def test_the_stop_signal_waits_until_the_quieted_worker_is_drained(app: App) -> None:
    service = pidfile_service(app.worker("--quiet-work", "1.5"), quietSignal="TSTP", drained=drained_check(app))
    old = (await services.restart(app.runner, app.ctx, service)).instances[0].new_pid
    assert old is not None

    await services.restart(app.runner, app.ctx, service, on_event=app.record)

    kinds = [e.kind for e in app.events() if e.pid == old]
    assert kinds == ["start", "sigtstp", "drained", "sigterm", "exit"], "the job in progress was lost"
    assert app.event("sigterm", old).at - app.event("sigtstp", old).at >= 1.5
    assert ("drained", "0") in app.kinds()


async def test_a_quiet_phase_without_a_drained_check_lasts_until_the_worker_exits_or_the_timeout(app: App) -> None:
    service = pidfile_service(app.worker("--quiet-work", "0.5"), quietSignal="TSTP", quietTimeoutSeconds=2)
    old = (await services.restart(app.runner, app.ctx, service)).instances[0].new_pid
    assert old is not None

    await services.restart(app.runner, app.ctx, service)

    kinds = [e.kind for e in app.events() if e.pid == old]
    assert kinds == ["start", "sigtstp", "drained", "sigterm", "exit"]
    assert app.event("sigterm", old).at - app.event("sigtstp", old).at >= 2.0


@pytest.mark.parametrize("content", ["dead", "garbage\n", ""])
async def test_a_stale_or_unreadable_pid_file_means_not_running(app: App, content: str) -> None:
    if content == "dead":
        content = f"{dead_pid()}\n"
    app.write(PIDFILE0, content)
    service = pidfile_service(app.worker())

    assert not (await services.status(app.runner, app.ctx, service)).running
    result = await services.restart(app.runner, app.ctx, service, on_event=app.record)

    assert app.kinds()[0] == ("not-running", "0")
    assert result.instances[0].old_pid is None
    new = result.instances[0].new_pid
    assert new is not None
    assert app.host.path(PIDFILE0).read_text().strip() == str(new)
    assert [e.kind for e in app.events()] == ["start"]


async def test_a_pid_file_whose_pid_was_reused_by_another_process_is_not_signalled(app: App) -> None:
    """The worker died without cleaning up and a later process got its pid (after a reboot, say)."""
    stranger = await asyncio.create_subprocess_exec("sleep", "120", start_new_session=True)
    try:
        app.write(PIDFILE0, f"{stranger.pid}\n")
        # What kapistrano recorded when it started the worker: same pid, another start time.
        app.write(PIDFILE0 + ".kapistrano", f"{stranger.pid} {boot_id()}:1\n")
        service = pidfile_service(app.worker())

        assert not (await services.status(app.runner, app.ctx, service)).running
        result = await services.restart(app.runner, app.ctx, service, on_event=app.record)

        assert app.kinds()[0] == ("not-running", "0")
        assert stranger.returncode is None, "the unrelated process was signalled"
        new = result.instances[0].new_pid
        assert new is not None
        assert new != stranger.pid
        assert (await services.status(app.runner, app.ctx, service)).running
    finally:
        stranger.kill()
        await stranger.wait()


async def test_a_started_worker_is_recorded_with_its_identity(app: App) -> None:
    service = pidfile_service(app.worker())
    pid = (await services.restart(app.runner, app.ctx, service)).instances[0].new_pid
    assert pid is not None
    recorded = app.host.path(PIDFILE0 + ".kapistrano").read_text().split()
    assert recorded == [str(pid), f"{boot_id()}:{start_ticks(pid)}"]


def boot_id() -> str:
    """This boot's id, shared by the lab hosts (reads /proc)."""
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def start_ticks(pid: int) -> str:
    """When a process started, in clock ticks since boot (reads /proc)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


async def test_a_foreground_worker_gets_its_pid_written_and_runs_detached_in_current(app: App) -> None:
    service = pidfile_service(app.worker())
    result = await services.restart(app.runner, app.ctx, service)
    pid = result.instances[0].new_pid
    assert pid is not None
    assert app.host.path(PIDFILE0).read_text().strip() == str(pid)
    assert (await app.wait_event("start", pid)).instance == "0"
    assert session_of(pid) == pid  # its own session, not the SSH session's
    assert cwd_of(pid).endswith("/releases/20260101000000")
    environ = environ_of(pid)
    assert f"KAPISTRANO_PIDFILE={PIDFILE0}".encode() in environ
    assert b"KAPISTRANO_INSTANCE=0" in environ


async def test_a_daemon_that_writes_its_own_pid_file_is_tracked_by_it(app: App) -> None:
    service = pidfile_service(app.worker("--daemonize", "--pidfile", "{pidfile}", "--drain", "1"))
    first = (await services.restart(app.runner, app.ctx, service)).instances[0].new_pid
    assert first is not None
    assert (await app.wait_event("start", first)).pid == first  # the daemon's pid, not its launcher's

    second = (await services.restart(app.runner, app.ctx, service)).instances[0].new_pid

    assert second is not None
    assert (await app.wait_event("start", second)).at >= app.event("exit", first).at
    assert app.host.path(PIDFILE0).read_text().strip() == str(second)


async def test_instances_of_a_host_stop_together_and_start_once_all_have_exited(app: App) -> None:
    service = pidfile_service(app.worker("--drain", "2"), instances=3)
    before = await services.restart(app.runner, app.ctx, service)
    old = [i.new_pid for i in before.instances]

    after = await services.restart(app.runner, app.ctx, service, on_event=app.record)

    new = [i.new_pid for i in after.instances]
    assert None not in old
    assert None not in new
    terms = [app.event("sigterm", pid or 0).at for pid in old]
    exits = [app.event("exit", pid or 0).at for pid in old]
    starts = [(await app.wait_event("start", pid or 0)).at for pid in new]
    assert max(terms) - min(terms) < 1.0, "the instances were not stopped together"
    assert min(starts) >= max(exits), "a new instance started while an old one still drained"
    assert [k for k in app.kinds() if k[0] == "stopping"] == [("stopping", "0"), ("stopping", "1"), ("stopping", "2")]
    assert len((await services.status(app.runner, app.ctx, service)).pids) == 3


async def test_ordered_ready_instances_restart_one_after_the_other_and_never_overlap(app: App) -> None:
    service = pidfile_service(app.worker("--drain", "1"), instances=2, instancePolicy="OrderedReady")
    before = await services.restart(app.runner, app.ctx, service)
    app.seen.clear()

    after = await services.restart(app.runner, app.ctx, service, on_event=app.record)

    assert [k for k in app.kinds() if k[0] in ("stopping", "started")] == [
        ("stopping", "0"),
        ("started", "0"),
        ("stopping", "1"),
        ("started", "1"),
    ]
    for old, new in zip(before.instances, after.instances, strict=True):
        assert old.new_pid is not None
        assert new.new_pid is not None
        started = await app.wait_event("start", new.new_pid)
        assert started.at >= app.event("exit", old.new_pid).at
        assert started.instance == new.instance
    # instance 1 kept consuming while instance 0 restarted
    new_0 = await app.wait_event("start", after.instances[0].new_pid or 0)
    assert app.event("exit", before.instances[1].new_pid or 0).at > new_0.at
    state = await services.status(app.runner, app.ctx, service)
    assert state.running
    assert len(state.pids) == 2


async def test_a_start_command_that_fails_reports_its_status_and_log(app: App) -> None:
    service = pidfile_service(app.worker("--exit-status", "3"))
    with pytest.raises(ServiceError, match=r"exited with status 3.*refusing to start"):
        await services.restart(app.runner, app.ctx, service)


async def test_a_daemon_that_never_writes_its_pid_file_fails_in_time(app: App) -> None:
    ctx = replace(app.ctx, daemon_timeout=1.0)
    service = pidfile_service(app.worker("--daemonize", "--drain", "0"))
    with pytest.raises(ServiceError, match="wrote no pid file"):
        await services.restart(app.runner, ctx, service)


async def test_a_start_command_with_variable_assignments_is_tracked_and_waited_for_as_the_worker(
    app: App,
) -> None:
    """`RAILS_ENV=production bundle exec sidekiq` style: the pid kept is the worker's, not a shell's."""
    service = pidfile_service("WORKER_MODE='slow drain' " + app.worker("--drain", "2"))
    old = (await services.restart(app.runner, app.ctx, service)).instances[0].new_pid
    assert old is not None
    assert app.event("start", old).pid == old, "the pid file names a shell, not the worker"
    assert b"WORKER_MODE=slow drain" in environ_of(old)

    new = (await services.restart(app.runner, app.ctx, service)).instances[0].new_pid
    assert new is not None
    started, exited = await app.wait_event("start", new), app.event("exit", old)
    assert started.at >= exited.at, "the new worker started while the old one was still draining"


@pytest.mark.parametrize("shape", ["{worker} | cat", "true && {worker}"])
async def test_a_compound_start_command_is_stopped_as_a_whole_before_its_successor_starts(app: App, shape: str) -> None:
    """A pipeline or a list runs under a shell: its worker must drain and exit before the next one starts."""
    service = pidfile_service(shape.format(worker=app.worker("--drain", "2")))
    await services.restart(app.runner, app.ctx, service)
    (first,) = [e.pid for e in app.events() if e.kind == "start"]
    tracked = app.host.path(PIDFILE0).read_text().strip()
    assert tracked != str(first), "the command ran as one program: nothing compound is tested"
    assert app.host.path(PIDFILE0 + ".kapistrano").read_text().split()[2:] == ["group"]

    restarted = (await services.restart(app.runner, app.ctx, service)).instances[0]

    exited = app.event("exit", first)
    assert restarted.stop_seconds is not None
    assert restarted.stop_seconds >= 2.0, "the stop returned before the worker drained"
    assert not restarted.killed
    (second,) = [e.pid for e in app.events() if e.kind == "start" and e.pid != first]
    started = await app.wait_event("start", second)
    assert started.at >= exited.at, "the new worker started while the old one was still draining"
    assert not app.alive(first)
    assert not app.alive(int(tracked))


async def test_a_compound_command_whose_shell_died_still_runs_until_its_worker_is_gone(app: App) -> None:
    """The shell of `worker | cat` killed by hand (or by a stop cut short): the worker still counts."""
    service = pidfile_service(app.worker("--drain", "1") + " | cat")
    await services.restart(app.runner, app.ctx, service)
    (first,) = [e.pid for e in app.events() if e.kind == "start"]
    shell = int(app.host.path(PIDFILE0).read_text())
    app.host.exec(["kill", "-KILL", str(shell)])

    async def shell_gone() -> bool:
        return not app.alive(shell)

    await wait_until(shell_gone)
    assert app.alive(first)
    assert (await services.status(app.runner, app.ctx, service)).running, "the running worker was not seen"

    await services.restart(app.runner, app.ctx, service)

    (second,) = [e.pid for e in app.events() if e.kind == "start" and e.pid != first]
    started = await app.wait_event("start", second)
    assert started.at >= app.event("exit", first).at, "the successor started beside the old worker"


def started_by(app: App, first: set[int]) -> list[int]:
    """Pids of the workers started after those in `first` (reads the events file)."""
    return [e.pid for e in app.events() if e.kind == "start" and e.pid not in first]


async def test_start_first_starts_the_new_instances_beside_the_old_and_stops_the_old_once_ready(app: App) -> None:
    ready = {"exec": {"command": 'grep -q "^start $KAPISTRANO_PID " ' + app.events_file}, "periodSeconds": 0.1}
    service = pidfile_service(app.worker("--drain", "1"), instances=2, replace="StartFirst")
    service = service.model_copy(update={"readiness": Probe.model_validate(ready)})
    check = services.readiness(app.runner, app.ctx, service)
    old = {i.new_pid or 0 for i in (await services.restart(app.runner, app.ctx, service, check_ready=check)).instances}

    after = await services.restart(app.runner, app.ctx, service, on_event=app.record, check_ready=check)

    new = {i.new_pid or 0 for i in after.instances}
    assert new.isdisjoint(old)
    assert set((await services.status(app.runner, app.ctx, service)).pids) == new, "the successors are the instances"
    assert ("handing-over", "0") in app.kinds()
    assert ("handing-over", "1") in app.kinds()
    last_start = max([(await app.wait_event("start", pid)).at for pid in new])
    terms = [(await app.wait_event("sigterm", pid)).at for pid in old]
    assert min(terms) >= last_start, "an old instance stopped before its successor started"
    for pid in old:
        await app.wait_event("exit", pid)

    async def handed_over() -> bool:
        left = list(app.host.path(DEPLOY_TO).glob("shared/tmp/pids/*.next*"))
        return not left and not list(app.host.path(DEPLOY_TO).glob("shared/tmp/pids/*.handoff"))

    await wait_until(handed_over, timeout=30)
    pids = {int(app.host.path(DEPLOY_TO + f"/shared/tmp/pids/worker.{n}.pid").read_text()) for n in range(2)}
    assert pids == new, "the successors did not take over the pid files"


async def test_start_first_instances_that_never_get_ready_are_stopped_and_the_old_ones_keep_running(
    app: App,
) -> None:
    service = pidfile_service(app.worker(), instances=2, replace="StartFirst")
    old = {i.new_pid or 0 for i in (await services.restart(app.runner, app.ctx, service)).instances}
    never = Probe.model_validate({"exec": {"command": "false"}, "periodSeconds": 0.1, "failureThreshold": 3})
    service = service.model_copy(update={"readiness": never})

    check = services.readiness(app.runner, app.ctx, service)
    with pytest.raises(NotReady):
        await services.restart(app.runner, app.ctx, service, check_ready=check)

    assert all(app.alive(pid) for pid in old), "an old instance was stopped although its successor failed"
    assert not [e for e in app.events() if e.pid in old and e.kind == "sigterm"]
    successors = started_by(app, old)
    assert len(successors) == 2
    for pid in successors:
        await app.wait_event("exit", pid)
    assert set((await services.status(app.runner, app.ctx, service)).pids) == old


async def test_a_converging_restart_keeps_instances_that_already_run_from_the_release(app: App) -> None:
    service = pidfile_service(app.worker(), instances=2)
    first = await services.restart(app.runner, app.ctx, service)
    app.host.exec(["kill", "-TERM", str(first.instances[1].new_pid)])
    await app.wait_event("exit", first.instances[1].new_pid or 0)

    async def exited() -> bool:  # the worker logs its exit a moment before it is gone
        return not app.alive(first.instances[1].new_pid or 0)

    await wait_until(exited)
    healed = await services.restart(app.runner, app.ctx, service, on_event=app.record, keep_current=True)

    assert healed.instances[0].new_pid == first.instances[0].new_pid, "a live instance was restarted"
    assert ("kept", "0") in app.kinds()
    assert ("not-running", "1") in app.kinds()
    assert app.alive(healed.instances[1].new_pid or 0)
    assert [e.kind for e in app.events() if e.pid == first.instances[0].new_pid] == ["start"]


async def test_a_restart_during_a_handoff_waits_for_it_and_never_signals_the_draining_worker_twice(app: App) -> None:
    ready = {"exec": {"command": 'grep -q "^start $KAPISTRANO_PID " ' + app.events_file}, "periodSeconds": 0.1}
    service = pidfile_service(app.worker("--drain", "2"), replace="StartFirst")
    service = service.model_copy(update={"readiness": Probe.model_validate(ready)})
    check = services.readiness(app.runner, app.ctx, service)
    first = (await services.restart(app.runner, app.ctx, service, check_ready=check)).instances[0].new_pid
    second = (await services.restart(app.runner, app.ctx, service, check_ready=check)).instances[0].new_pid
    assert first is not None
    assert second is not None

    third = (await services.restart(app.runner, app.ctx, service, check_ready=check)).instances[0]

    assert app.event("exit", first).at <= (await app.wait_event("start", third.new_pid or 0)).at, "no wait"
    assert [e.kind for e in app.events() if e.pid == first].count("sigterm") == 1
    assert third.old_pid == second
    await app.wait_event("exit", second)
    assert [e.kind for e in app.events() if e.pid == second].count("sigterm") == 1
