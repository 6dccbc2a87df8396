"""Restart and inspect a Release's services on one host, whatever their manager.

    ctx = ServiceContext(deploy_to="/var/www/billing", command_timeout=600)
    state = await status(runner, ctx, service)                # which pids are alive, per instance
    result = await restart(runner, ctx, service, on_event=print, check_ready=readiness(runner, ctx, service))

`restart` stops, waits for the old process to really exit (never a fixed sleep), starts, and runs
`check_ready` once the new processes run; for manager graceful that happens before the old master
is retired, so a new master that never gets ready leaves the old one serving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from kapistrano.api.spec import Manager, Probe, Service
from kapistrano.hosts.facts import PidFact, judge_cwds
from kapistrano.hosts.managers import command, graceful, pidfile, pidfile_restart, systemd
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
from kapistrano.hosts.shell import cmd

__all__ = [
    "EventSink",
    "InstanceRestart",
    "InstanceState",
    "ReadyCheck",
    "RestartResult",
    "ServiceContext",
    "ServiceEvent",
    "ServiceState",
    "describe_probes",
    "pidfiles_of",
    "readiness",
    "restart",
    "status",
    "status_from_pids",
]

Restarter = Callable[..., Awaitable[RestartResult]]
Inspector = Callable[[Runner, ServiceContext, Service], Awaitable[ServiceState]]

_RESTART: dict[Manager, Restarter] = {
    Manager.PIDFILE: pidfile_restart.restart,
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
    keep_current: bool = False,
) -> RestartResult:
    """Restart a service with its manager (side effects: processes on the host).

    `keep_current` (a publish resumed, a rollback, healing) leaves processes that already run from
    ctx.current alone and only checks their readiness: a restart cut short after the new processes
    started never stops them again.
    """
    if service.manager == Manager.PIDFILE:
        return await pidfile_restart.restart(
            runner, ctx, service, on_event=on_event, check_ready=check_ready, keep_current=keep_current
        )
    if keep_current:
        state = await status(runner, ctx, service)
        if state.running and await runs_from(runner, state.pids, ctx.current):
            on_event(ServiceEvent("kept", service.name, "-", detail="already runs from the release"))
            if check_ready is not None:
                await check_ready()
            return RestartResult(service.name, ())
    return await _RESTART[service.manager](runner, ctx, service, on_event=on_event, check_ready=check_ready)


async def runs_from(runner: Runner, pids: Sequence[int], release_dir: str) -> bool | None:
    """Whether the processes' working directories are the release dir; None when unknowable (network I/O).

    False when one runs from another release (it was never restarted); None when none can be told
    apart (no pids, daemons that chdir to "/").
    """
    if not pids:
        return None
    command = cmd("readlink", "-e", "--", release_dir) + "; echo ---; "
    command += cmd("readlink", "-e", "--", *(f"/proc/{pid}/cwd" for pid in pids))
    result = await runner.run(command, check=False)
    head, _, tail = result.stdout.partition("---\n")
    return judge_cwds(head.strip() or None, tail.splitlines())


async def status(runner: Runner, ctx: ServiceContext, service: Service) -> ServiceState:
    """Which of a service's processes are alive, per instance (side effects: none, or a status command's)."""
    return await _STATUS[service.manager](runner, ctx, service)


def pidfiles_of(ctx: ServiceContext, service: Service) -> list[str]:
    """The pid files a service's status reads: its instances and their successors, or its master (pure)."""
    if service.manager == Manager.PIDFILE:
        files = pidfile.pidfiles(ctx, service)
        return [*files, *(pidfile.surge_pidfile(f) for f in files)]
    if service.manager == Manager.GRACEFUL:
        return [graceful.master_pidfile(ctx, service)]
    return []


def status_from_pids(
    ctx: ServiceContext, service: Service, pids: Mapping[str, PidFact], release_dir: str | None = None
) -> ServiceState | None:
    """A service's status from pid files already read, as its manager's status() reads it; None if not read (pure).

    `release_dir` is ctx.current resolved: an instance runs from it when its working directory is it.
    """
    files = pidfiles_of(ctx, service)
    if not files or not all(f in pids for f in files):
        return None
    if service.manager == Manager.GRACEFUL:
        master = pids[files[0]]
        return ServiceState(service.name, (InstanceState(graceful.MASTER, master.pid, master.alive),))
    count = len(files) // 2
    states = [
        InstanceState(
            str(n), pids[f].pid, pids[f].alive, pids[f].alive and release_dir is not None and pids[f].cwd == release_dir
        )
        for n, f in enumerate(files)
    ]
    return ServiceState(
        service.name, tuple(states[count + n] if states[count + n].alive else states[n] for n in range(count))
    )


def readiness(
    runner: Runner, ctx: ServiceContext, service: Service, *, on_attempt: AttemptSink = ignore_attempt
) -> ReadyCheck | None:
    """A check that waits for the service's readiness probe, None without one (pure; the check has side effects)."""
    probe = service.readiness
    if probe is None:
        return None

    async def check(env: Mapping[str, str] | None = None) -> None:
        """Wait for readiness (of one instance when `env` names it); raises NotReady after failureThreshold."""
        where = ctx if not env else replace(ctx, env={**ctx.env, **env})
        await wait_ready(runner, where, probe, on_attempt=on_attempt)

    return check


# -- which probes judge a host ------------------------------------------------------------------------


def describe_probe(probe: Probe) -> str:
    """A probe in a few words, e.g. `exec: test -e READY` or `httpGet :9100/health` (pure)."""
    if probe.exec is not None:
        return f"exec: {probe.exec.command}"
    if probe.http_get is not None:
        return f"httpGet {probe.http_get.host or ''}:{probe.http_get.port}{probe.http_get.path}"
    assert probe.tcp_socket is not None
    return f"tcpSocket {probe.tcp_socket.host or ''}:{probe.tcp_socket.port}"


def describe_probes(services: Sequence[Service]) -> str:
    """Which readiness probe judges each service, in one line (pure)."""
    parts = [f"{s.name}: {describe_probe(s.readiness) if s.readiness else 'no probe'}" for s in services]
    return "; ".join(parts) or "no services"
