"""Restart and inspect a Release's services on one host, whatever their manager.

    ctx = ServiceContext(deploy_to="/var/www/billing", command_timeout=600)
    state = await status(runner, ctx, service)                # which pids are alive, per instance
    result = await restart(runner, ctx, service, on_event=print, check_ready=readiness(runner, ctx, service))

`restart` stops, waits for the old process to really exit (never a fixed sleep), starts, and runs
`check_ready` once the new processes run; for manager graceful that happens before the old master
is retired, so a new master that never gets ready leaves the old one serving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kapistrano.api.spec import Manager, Service
from kapistrano.hosts.managers import command, graceful, pidfile, systemd
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
)
from kapistrano.hosts.probes import AttemptSink, ignore_attempt, wait_ready
from kapistrano.hosts.runner import Runner

__all__ = [
    "EventSink",
    "InstanceRestart",
    "InstanceState",
    "ReadyCheck",
    "RestartResult",
    "ServiceContext",
    "ServiceEvent",
    "ServiceState",
    "readiness",
    "restart",
    "status",
]

Restarter = Callable[..., Awaitable[RestartResult]]
Inspector = Callable[[Runner, ServiceContext, Service], Awaitable[ServiceState]]

_RESTART: dict[Manager, Restarter] = {
    Manager.PIDFILE: pidfile.restart,
    Manager.GRACEFUL: graceful.restart,
    Manager.SYSTEMD: systemd.restart,
    Manager.COMMAND: command.restart,
}
_STATUS: dict[Manager, Inspector] = {
    Manager.PIDFILE: pidfile.status,
    Manager.GRACEFUL: graceful.status,
    Manager.SYSTEMD: systemd.status,
    Manager.COMMAND: command.status,
}


async def restart(
    runner: Runner,
    ctx: ServiceContext,
    service: Service,
    *,
    on_event: EventSink = ignore_event,
    check_ready: ReadyCheck | None = None,
) -> RestartResult:
    """Restart a service with its manager (side effects: processes on the host)."""
    return await _RESTART[service.manager](runner, ctx, service, on_event=on_event, check_ready=check_ready)


async def status(runner: Runner, ctx: ServiceContext, service: Service) -> ServiceState:
    """Which of a service's processes are alive, per instance (side effects: none, or a status command's)."""
    return await _STATUS[service.manager](runner, ctx, service)


def readiness(
    runner: Runner, ctx: ServiceContext, service: Service, *, on_attempt: AttemptSink = ignore_attempt
) -> ReadyCheck | None:
    """A check that waits for the service's readiness probe, None without one (pure; the check has side effects)."""
    probe = service.readiness
    if probe is None:
        return None

    async def check() -> None:
        """Wait for readiness; raises NotReady after failureThreshold failures (side effects: the probe's)."""
        await wait_ready(runner, ctx, probe, on_attempt=on_attempt)

    return check
