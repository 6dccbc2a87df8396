"""Manager `graceful`: a master that re-executes itself (unicorn, puma) is reloaded without downtime.

reloadSignal (USR2) makes the old master fork and exec a new one that inherits the listening
sockets; the new master's pid lands in the pid file while the old one's moves to `<pidfile>.oldbin`
(unicorn's convention). Once the new master is up (and ready, if a check is given), quitSignal
(QUIT) retires the old master, which finishes its requests and exits. If no new master shows up
within timeoutSeconds, or it is not ready, the old master is left serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from kapistrano.api.spec import GracefulManager, Service
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
    centis,
    ignore_event,
    marker_lines,
    run_script,
    settings_of,
)
from kapistrano.hosts.managers.pidfile import launch, read_pids, start_command
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import cmd, quote

MASTER = "master"


def master_pidfile(ctx: ServiceContext, service: Service) -> str:
    """The master's absolute pid file (pure)."""
    return ctx.shared_path(settings_of(service, GracefulManager).pid_file)


def reload_lines(settings: GracefulManager, old: int, pidfile: str) -> list[str]:
    """Script lines: send the reload signal, then poll on the host for a new live master (pure).

    Reports `reload new <pid> <oldbin pid|->`, `reload old-died` or `reload timeout`. A new master
    counts once the pid file names another live pid and `.oldbin`, when it exists, names the old one.
    """
    return [
        f"o={quote(old)}; pf={quote(pidfile)}; ob={quote(pidfile + '.oldbin')}",
        cmd("kill", "-s", str(settings.reload_signal), old) + " || { echo reload old-died; exit 0; }",
        f"dd=$(( $(now) + {centis(settings.timeout_seconds)} ))",
        "while :; do",
        '  n=$(readpid "$pf"); b=$(readpid "$ob")',
        '  if [ -n "$n" ] && [ "$n" != "$o" ] && alive "$n" && { [ -z "$b" ] || [ "$b" = "$o" ]; }; then',
        '    echo reload new "$n" "${b:--}"; exit 0; fi',
        '  alive "$o" || { echo reload old-died; exit 0; }',
        '  [ "$(now)" -ge "$dd" ] && { echo reload timeout; exit 0; }',
        '  sleep "$POLL"',
        "done",
    ]


@dataclass(frozen=True)
class ReloadOutcome:
    """How a reload ended: `new` (with the new master's pid), `old-died` or `timeout`."""

    how: str
    pid: int | None = None


def parse_reload(output: str) -> ReloadOutcome | None:
    """The outcome reported by reload_lines, None if the output has none (pure)."""
    for row in marker_lines(output, ("reload",)):
        if len(row) >= 3 and row[1] == "new" and row[2].isdigit():
            return ReloadOutcome("new", int(row[2]))
        if len(row) == 2 and row[1] in ("old-died", "timeout"):
            return ReloadOutcome(row[1])
    return None


def retire_lines(
    signal: str, pid: int, seconds: float, pidfile: str | None = None, restore: int | None = None
) -> list[str]:
    """Script lines: signal a master, wait on the host for it to exit, report `retire exited|lingering CS` (pure).

    With `restore`, the pid file is pointed back at that pid if it does not name it (a failed reload).
    Without it, the old master of a finished reload is retired: `.oldbin` stops naming it before it
    is signalled, so a master still shutting down is never taken for one an unfinished reload left.
    """
    forget = []
    if pidfile is not None and restore is None:
        forget = [f"ob={quote(pidfile + '.oldbin')}", '[ "$(readpid "$ob")" = "$p" ] && rm -f "$ob"']
    lines = [
        f"p={quote(pid)}; t0=$(now)",
        *forget,
        cmd("kill", "-s", signal, pid) + " 2>/dev/null",
        f'if wait_gone "$p" {centis(seconds)}; then echo retire exited $(( $(now) - t0 ));',
        "else echo retire lingering $(( $(now) - t0 )); fi",
    ]
    if pidfile is not None and restore is not None:
        # The retired master is `restore`'s child: until `restore` has reaped it, unicorn takes the
        # zombie for a re-exec still running and ignores the next reload signal: wait (3 s at most).
        lines.append('k=0; while [ -e "/proc/$p" ] && ! alive "$p" && [ "$k" -lt 300 ]; do')
        lines.append("  sleep 0.01; k=$((k + 1)); done")
        lines.append(f"pf={quote(pidfile)}; r={quote(restore)}")
        lines.append('[ "$(readpid "$pf")" = "$r" ] || { echo "$r" > "$pf"; rm -f "$pf.oldbin"; }')
    return lines


def parse_retire(output: str) -> tuple[bool, float | None]:
    """(exited, seconds) from retire_lines output; (False, None) if it reported nothing (pure)."""
    for row in marker_lines(output, ("retire",)):
        if len(row) == 3 and row[1] in ("exited", "lingering") and row[2].isdigit():
            return row[1] == "exited", int(row[2]) / 100
    return False, None


async def status(runner: Runner, ctx: ServiceContext, service: Service) -> ServiceState:
    """Whether the master named by the pid file is alive (side effects: none)."""
    (state,) = await read_pids(runner, ctx, service.name, [master_pidfile(ctx, service)])
    return ServiceState(service.name, (InstanceState(MASTER, state.pid, state.alive),))


async def _retire(
    runner: Runner,
    ctx: ServiceContext,
    service: Service,
    pid: int,
    *,
    on_event: EventSink,
    restore: int | None = None,
) -> float | None:
    """Send quitSignal to a master and wait for it to exit (side effects: signals on the host)."""
    settings = settings_of(service, GracefulManager)
    on_event(ServiceEvent("quitting", service.name, MASTER, pid))
    lines = retire_lines(
        str(settings.quit_signal), pid, settings.timeout_seconds, master_pidfile(ctx, service), restore
    )
    result = await run_script(runner, ctx, service.name, lines, wait=settings.timeout_seconds)
    exited, seconds = parse_retire(result.stdout)
    on_event(ServiceEvent("exited" if exited else "lingering", service.name, MASTER, pid, seconds))
    return seconds


async def _start_master(
    runner: Runner,
    ctx: ServiceContext,
    service: Service,
    old: int | None,
    *,
    on_event: EventSink,
    check_ready: ReadyCheck | None,
) -> RestartResult:
    """Start a master when none runs; its own pid file is awaited, never written (side effects: a process)."""
    settings, pidfile = settings_of(service, GracefulManager), master_pidfile(ctx, service)
    if settings.start is None:
        raise ServiceError(runner.name, service.name, f"no master running ({pidfile}) and no start command")
    on_event(ServiceEvent("not-running", service.name, MASTER, old, detail="stale pid file" if old else ""))
    on_event(ServiceEvent("starting", service.name, MASTER))
    command = start_command(settings.start, 0, pidfile)
    pid = await launch(runner, ctx, service.name, command, pidfile=pidfile, index=None, write_pid=False)
    on_event(ServiceEvent("started", service.name, MASTER, pid))
    if check_ready is not None:
        await check_ready()
    return RestartResult(service.name, (InstanceRestart(MASTER, None, pid),))


def oldbin_lines(master: int, old: int, pidfile: str) -> list[str]:
    """Script lines: report `oldbin child` when `old` is `master`'s parent (a reload cut short), else
    forget a `.oldbin` naming `old` (left by a crash, its pid since reused) and report `oldbin stale` (pure).
    """
    return [
        f"m={quote(master)}; o={quote(old)}; ob={quote(pidfile + '.oldbin')}",
        'if [ "$(ppid "$m")" = "$o" ]; then echo oldbin child',
        'else [ "$(readpid "$ob")" = "$o" ] && rm -f "$ob"; echo oldbin stale; fi',
    ]


async def _settle_oldbin(
    runner: Runner, ctx: ServiceContext, service: Service, master: int, old: int, *, on_event: EventSink
) -> int:
    """Deal with a live pid in `.oldbin` before a reload; returns the master to reload (side effects).

    A master forked by that pid is the unproven half of a reload cut short before its quit: it is
    retired and the old master serves alone again (unicorn refuses to re-exec while `.oldbin` names a
    live master, so the reload could never be retried otherwise). Anything else there is a stranger
    that reused a crashed master's pid, and is left alone.
    """
    result = await run_script(runner, ctx, service.name, oldbin_lines(master, old, master_pidfile(ctx, service)))
    if ["oldbin", "child"] not in marker_lines(result.stdout, ("oldbin",)):
        return master
    on_event(ServiceEvent("rolling-back", service.name, MASTER, master, detail="(an earlier reload did not finish)"))
    await _retire(runner, ctx, service, master, on_event=on_event, restore=old)
    return old


async def restart(
    runner: Runner,
    ctx: ServiceContext,
    service: Service,
    *,
    on_event: EventSink = ignore_event,
    check_ready: ReadyCheck | None = None,
) -> RestartResult:
    """Reload the master without downtime, or start it if none runs (side effects: processes on the host)."""
    settings, pidfile = settings_of(service, GracefulManager), master_pidfile(ctx, service)
    state, oldbin = await read_pids(runner, ctx, service.name, [pidfile, pidfile + ".oldbin"])
    if not state.alive or state.pid is None:
        return await _start_master(runner, ctx, service, state.pid, on_event=on_event, check_ready=check_ready)
    old = state.pid
    if oldbin.alive and oldbin.pid is not None and oldbin.pid != old:
        old = await _settle_oldbin(runner, ctx, service, old, oldbin.pid, on_event=on_event)
    on_event(ServiceEvent("reloading", service.name, MASTER, old, detail=f"({settings.reload_signal!s})"))
    wait = settings.timeout_seconds
    result = await run_script(runner, ctx, service.name, reload_lines(settings, old, pidfile), wait=wait)
    outcome = parse_reload(result.stdout)
    if outcome is None or outcome.pid is None:
        how = outcome.how if outcome else "nothing"
        raise ServiceError(runner.name, service.name, f"no new master within {wait}s after reload ({how})")
    on_event(ServiceEvent("new-master", service.name, MASTER, outcome.pid))
    if check_ready is not None:
        try:
            await check_ready()
        except BaseException:
            on_event(ServiceEvent("rolling-back", service.name, MASTER, outcome.pid))
            await _retire(runner, ctx, service, outcome.pid, on_event=on_event, restore=old)
            raise
    seconds = await _retire(runner, ctx, service, old, on_event=on_event)
    return RestartResult(service.name, (InstanceRestart(MASTER, old, outcome.pid, seconds),))
