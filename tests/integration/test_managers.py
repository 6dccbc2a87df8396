"""Managers systemd and command against real lab hosts over SSH.

systemd cannot run on the lab hosts, so the systemd tests put a `systemctl` stand-in
(tests/workers/systemctl: start/stop/restart/is-active/show/list-units for units described by a
file, backed by pid files, waiting for the old process to exit like systemd) into a directory under
the host's private /var/www and point PATH at it through the context's environment. The command
manager tests run the sample worker with the user's own start/stop/status commands.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
from kapistrano.api.spec import Service
from kapistrano.hosts import services
from kapistrano.hosts.errors import ServiceError

from tests.integration.servicekit import DEPLOY_TO, PYTHON, RELEASE, WORKERS, App, app

__all__ = ["app"]

STANDIN_BIN = f"{DEPLOY_TO}/standin-bin"
UNITS = f"{DEPLOY_TO}/systemd"
CMD_PIDFILE = f"{DEPLOY_TO}/shared/tmp/pids/cmd.pid"


def install_systemctl(app: App, units: list[str]) -> App:
    """Put the systemctl stand-in on the host and describe each unit as a sample worker (side effects)."""
    target = app.host.path(f"{STANDIN_BIN}/systemctl")
    target.parent.mkdir(parents=True)
    shutil.copy(WORKERS / "systemctl", target)
    for unit in units:
        app.write(f"{UNITS}/{unit}.cmd", f"{PYTHON} {RELEASE}/slow_worker.py --events {app.events_file} --drain 1\n")
    env = {"PATH": f"{STANDIN_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "STANDIN_DIR": UNITS}
    return replace(app, ctx=replace(app.ctx, env=env))


def systemd_service(unit: str) -> Service:
    """A systemd-managed service (pure)."""
    return Service.model_validate({"name": "sidekiq", "manager": "systemd", "systemd": {"unit": unit}})


async def start_units(app: App, units: list[str]) -> dict[str, int]:
    """Start units through the stand-in and return their main pids (side effects: processes)."""
    await app.runner.run(f"env PATH={STANDIN_BIN}:/usr/bin:/bin STANDIN_DIR={UNITS} systemctl start " + " ".join(units))
    state = await services.status(app.runner, app.ctx, systemd_service("worker@*.service"))
    return {i.instance: i.pid for i in state.instances if i.pid is not None}


async def test_a_unit_glob_restarts_every_matching_unit_in_turn(app: App) -> None:
    units = ["worker@1.service", "worker@2.service"]
    app = install_systemctl(app, [*units, "other.service"])
    before = await start_units(app, units)
    assert sorted(before) == units
    service = systemd_service("worker@*.service")

    result = await services.restart(app.runner, app.ctx, service, on_event=app.record)

    assert [r.instance for r in result.instances] == units
    assert [k for k in app.kinds()] == [
        ("stopping", units[0]),
        ("started", units[0]),
        ("stopping", units[1]),
        ("started", units[1]),
    ]
    for restarted in result.instances:
        assert restarted.old_pid == before[restarted.instance]
        assert restarted.new_pid is not None
        assert restarted.new_pid != restarted.old_pid
        started = await app.wait_event("start", restarted.new_pid)
        assert started.at >= app.event("exit", restarted.old_pid).at
    state = await services.status(app.runner, app.ctx, service)
    assert state.running
    assert set(state.pids) == {r.new_pid for r in result.instances}


async def test_a_single_unit_is_restarted_and_reported_active(app: App) -> None:
    app = install_systemctl(app, ["worker@1.service"])
    service = systemd_service("worker@1.service")
    assert not (await services.status(app.runner, app.ctx, service)).running

    result = await services.restart(app.runner, app.ctx, service)

    assert result.instances[0].old_pid is None
    new = result.instances[0].new_pid
    assert new is not None
    assert app.alive(new)
    assert (await services.status(app.runner, app.ctx, service)).pids == (new,)


async def test_a_glob_matching_no_unit_is_an_error(app: App) -> None:
    app = install_systemctl(app, ["worker@1.service"])
    with pytest.raises(ServiceError, match="no loaded unit matches"):
        await services.restart(app.runner, app.ctx, systemd_service("web@*.service"))


# -- command ---------------------------------------------------------------------------------------------


def command_service(app: App, start: str | None = None) -> Service:
    """A command-managed sample worker with its own start/stop/status commands (pure)."""
    state = f"p=$(cat {CMD_PIDFILE} 2>/dev/null) && s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) && [ \"$s\" != Z ]"
    stop = (
        f"p=$(cat {CMD_PIDFILE} 2>/dev/null) || exit 0; kill $p 2>/dev/null || exit 0; "
        f"while s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null) && [ \"$s\" != Z ]; do sleep 0.05; done"
    )
    start = start or app.worker("--daemonize", "--pidfile", CMD_PIDFILE, "--drain", "1")
    block = {"start": start, "stop": stop, "status": state}
    return Service.model_validate({"name": "jobs", "manager": "command", "command": block})


async def test_the_command_manager_runs_stop_then_start_and_checks_status(app: App) -> None:
    app.host.path(CMD_PIDFILE).parent.mkdir(parents=True)
    service = command_service(app)
    assert not (await services.status(app.runner, app.ctx, service)).running
    await services.restart(app.runner, app.ctx, service)
    old = int(app.host.path(CMD_PIDFILE).read_text())

    await services.restart(app.runner, app.ctx, service, on_event=app.record)

    new = int(app.host.path(CMD_PIDFILE).read_text())
    assert new != old
    assert (await app.wait_event("start", new)).at >= app.event("exit", old).at
    assert [k for k, _ in app.kinds()] == ["stopping", "exited", "starting", "started"]
    assert (await services.status(app.runner, app.ctx, service)).running


async def test_a_failing_start_command_reports_its_status_and_output(app: App) -> None:
    service = command_service(app, start="echo boom >&2; exit 4")
    with pytest.raises(ServiceError, match=r"start exited 4: .*boom"):
        await services.restart(app.runner, app.ctx, service)
    assert "boom" in app.host.path(f"{DEPLOY_TO}/shared/log/jobs.log").read_text()


async def test_a_start_that_leaves_status_failing_is_an_error(app: App) -> None:
    service = command_service(app, start="true")
    with pytest.raises(ServiceError, match="status command fails after start"):
        await services.restart(app.runner, app.ctx, service)
