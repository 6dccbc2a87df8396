"""Manager `command`: the user's own stop/start/status commands, run in the current release directory.

`stop` must return once the service has exited; `start` must return once it runs (daemonize or hand
over to a supervisor). Their output is appended to shared/log/<service>.log, so a daemon that keeps
its stdout open does not hold the SSH channel; on failure the log's tail is in the error.
"""

from __future__ import annotations

import asyncio
import posixpath

from kapistrano.api.spec import CommandManager, Service
from kapistrano.hosts.errors import ServiceError
from kapistrano.hosts.managers.base import (
    EventSink,
    InstanceRestart,
    InstanceState,
    ReadyCheck,
    RestartResult,
    ServiceContext,
    ServiceEvent,
    ServiceState,
    ignore_event,
    settings_of,
)
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import chain, cmd, quote, user_command

INSTANCE = "command"


def logged_command(ctx: ServiceContext, service: str, command: str) -> str:
    """A user command run in the current release, stdin /dev/null, output appended to the log (pure).

    On failure the last lines of the log go to stderr and the exit status is kept.
    """
    log = ctx.log_file(service)
    run = f"{{ {user_command(ctx.current, command, ctx.env)}; }} </dev/null >>{quote(log)} 2>&1"
    report = f"st=$?; tail -n 20 {quote(log)} >&2; exit $st"
    return chain(cmd("mkdir", "-p", posixpath.dirname(log)), f"{{ {run} || {{ {report}; }}; }}")


def status_command(ctx: ServiceContext, command: str) -> str:
    """The user's status command in the current release; exit 0 means running (pure)."""
    return f"{user_command(ctx.current, command, ctx.env)} </dev/null >/dev/null 2>&1"


async def _run(runner: Runner, ctx: ServiceContext, service: str, what: str, command: str) -> None:
    """Run the user's stop or start command; raise ServiceError on failure (side effects: the command's)."""
    result = await runner.run(logged_command(ctx, service, command), timeout=ctx.command_timeout, check=False)
    if not result.ok:
        raise ServiceError(runner.name, service, f"{what} exited {result.exit_status}: {result.stderr.strip()[-600:]}")


async def status(runner: Runner, ctx: ServiceContext, service: Service) -> ServiceState:
    """Whether the status command says the service runs; unknown without one (side effects: the command's)."""
    settings = settings_of(service, CommandManager)
    if settings.status is None:
        return ServiceState(service.name, (InstanceState(INSTANCE, None, None),))
    result = await runner.run(status_command(ctx, settings.status), timeout=ctx.command_timeout, check=False)
    return ServiceState(service.name, (InstanceState(INSTANCE, None, result.ok),))


#: How long status gets to pass after start: a daemon's launcher may return before it wrote its pid file.
STATUS_SETTLE_SECONDS = 5.0
#: How often status is run meanwhile.
STATUS_POLL_SECONDS = 0.1


async def _comes_up(runner: Runner, ctx: ServiceContext, service: Service) -> bool:
    """Whether status passes within STATUS_SETTLE_SECONDS of the start, polled (runs the status command)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STATUS_SETTLE_SECONDS
    while not (await status(runner, ctx, service)).running:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(STATUS_POLL_SECONDS)
    return True


async def restart(
    runner: Runner,
    ctx: ServiceContext,
    service: Service,
    *,
    on_event: EventSink = ignore_event,
    check_ready: ReadyCheck | None = None,
) -> RestartResult:
    """Run stop, then start, then require status to pass when given (side effects: the commands')."""
    settings = settings_of(service, CommandManager)
    on_event(ServiceEvent("stopping", service.name, INSTANCE))
    await _run(runner, ctx, service.name, "stop", settings.stop)
    on_event(ServiceEvent("exited", service.name, INSTANCE))
    on_event(ServiceEvent("starting", service.name, INSTANCE))
    await _run(runner, ctx, service.name, "start", settings.start)
    if settings.status is not None and not await _comes_up(runner, ctx, service):
        raise ServiceError(runner.name, service.name, "status command fails after start")
    on_event(ServiceEvent("started", service.name, INSTANCE))
    if check_ready is not None:
        await check_ready()
    return RestartResult(service.name, (InstanceRestart(INSTANCE, None, None),))
