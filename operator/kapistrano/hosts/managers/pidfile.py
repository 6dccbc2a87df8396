"""Manager `pidfile`: processes kapistrano starts detached and tracks by one pid file per instance.

Stopping sends quietSignal (if any) and waits ON THE HOST for the quiet phase to end (the `drained`
check passes, the process exits by itself, or quietTimeoutSeconds ends: never a second signal right
behind the first), then stopSignal, then waits until the pid has really exited (one round trip,
polled every few tens of milliseconds, bounded by stopTimeoutSeconds), then escalates to killSignal
and waits again. Never a fixed sleep.

Starting runs the user's command in the current release directory in its own session (setsid),
stdin from /dev/null, output appended to shared/log/<service>.log, with {index}/{pidfile}
substituted and exported as KAPISTRANO_INSTANCE / KAPISTRANO_PIDFILE. A command that writes its own
pid file (a daemon such as `sidekiq -d -P {pidfile}`) is trusted; a foreground command that writes
none within ctx.start_grace gets the pid kapistrano started written for it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from kapistrano.api.spec import PidfileManager, Service
from kapistrano.hosts.errors import ServiceError
from kapistrano.hosts.managers.base import (
    GROUP_MARK,
    GROUP_POLL_SECONDS,
    ID_SUFFIX,
    KILL_WAIT_SECONDS,
    InstanceState,
    ServiceContext,
    ServiceState,
    centis,
    marker_lines,
    remote_script,
    run_script,
    settings_of,
)
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import cmd, detached, quote, replaces_shell

#: Appended to an instance's pid file for its StartFirst successor until the old instance is gone.
SURGE_SUFFIX = ".next"
#: Appended to an instance's pid file for the pid of the detached script retiring its predecessor.
HANDOFF_SUFFIX = ".handoff"


def pidfile_path(ctx: ServiceContext, template: str, index: int) -> str:
    """The absolute pid file of one instance: {index} substituted, relative paths under shared/ (pure)."""
    return ctx.shared_path(template.replace("{index}", str(index)))


def start_command(command: str, index: int, pidfile: str) -> str:
    """The user's start command with {index} and {pidfile} (quoted) substituted (pure)."""
    return command.replace("{index}", str(index)).replace("{pidfile}", quote(pidfile))


# -- reading pid files ------------------------------------------------------------------------------


def read_lines(pidfiles: list[str], release_dir: str | None = None) -> list[str]:
    """Script lines printing `pid <n> <pid|-> <alive 1|0> <runs from release_dir 1|0>` per pid file (pure)."""
    lines = [f"rd=$(readlink -e {quote(release_dir)} 2>/dev/null)" if release_dir else "rd="]
    for n, path in enumerate(pidfiles):
        lines.append(f'p=$(readpid {quote(path)}); a=0; c=0; [ -n "$p" ] && running {quote(path)} "$p" && a=1')
        lines.append('[ "$a" = 1 ] && [ -n "$rd" ] && [ "$(readlink -e "/proc/$p/cwd" 2>/dev/null)" = "$rd" ] && c=1')
        lines.append(f'echo pid {n} "${{p:--}}" "$a" "$c"')
    return lines


def parse_pids(output: str, count: int) -> list[tuple[int | None, bool]]:
    """(pid or None, alive) per pid file from read_lines output; a missing line means no pid (pure)."""
    return [(state.pid, bool(state.alive)) for state in parse_states(output, count)]


def parse_states(output: str, count: int) -> list[InstanceState]:
    """Per pid file: its pid, whether it lives, whether it runs from the release dir (pure)."""
    found = [InstanceState(str(n), None, False, False) for n in range(count)]
    for row in marker_lines(output, ("pid",)):
        if len(row) not in (4, 5) or not row[1].isdigit() or int(row[1]) >= count:
            continue
        pid = int(row[2]) if row[2].isdigit() else None
        alive = pid is not None and row[3] == "1"
        found[int(row[1])] = InstanceState(row[1], pid, alive, alive and row[4:5] == ["1"])
    return found


async def read_pids(runner: Runner, ctx: ServiceContext, service: str, pidfiles: list[str]) -> list[InstanceState]:
    """Which pid each pid file names, whether it is alive and runs from ctx.current, in one round trip (reads)."""
    result = await run_script(runner, ctx, service, read_lines(pidfiles, ctx.current))
    return parse_states(result.stdout, len(pidfiles))


# -- stopping -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StopOutcome:
    """How a stop ended: gone (was not running), exited, killed or stuck; seconds since the first signal.

    `quiet` says how the quiet phase ended (drained, exited, timeout), None without a quiet signal.
    """

    how: str
    seconds: float | None
    quiet: str | None = None
    quiet_seconds: float | None = None


def drained_lines(settings: PidfileManager, fallback_dir: str) -> list[str]:
    """Script lines of the quiet phase: wait for `drained`, the exit, or quietTimeoutSeconds; sets q (pure).

    The first check comes one period after the quiet signal, so that even a check that passes at
    once leaves the process time to take the quiet signal before the stop signal arrives (sidekiq 6.4
    loses its in-flight jobs when two signals arrive together).
    """
    check = settings.drained
    period = f"{check.period_seconds:g}" if check else f"{GROUP_POLL_SECONDS:g}"
    lines = [f"q=timeout; qd=$(( $(now) + {centis(settings.quiet_timeout_seconds)} ))", 'while running "$pf" "$p"; do']
    lines.append(f'  [ "$(now)" -ge "$qd" ] && break; sleep {quote(period)}; running "$pf" "$p" || break')
    if check is not None:
        run = cmd("timeout", str(check.timeout_seconds), "sh", "-c", check.exec.command)
        lines += [
            f'  d=$(readlink -e "/proc/$p/cwd" 2>/dev/null) || d={quote(fallback_dir)}',
            f'  if (cd "$d" && KAPISTRANO_PID="$p" KAPISTRANO_PIDFILE="$pf" KAPISTRANO_INSTANCE="$n" {run})'
            " </dev/null >/dev/null 2>&1; then q=drained; break; fi",
        ]
    return [*lines, "done", 'running "$pf" "$p" || q=exited', 'echo quiet "$q" $(( $(now) - t0 ))']


def stop_lines(
    settings: PidfileManager, pid: int, pidfile: str, *, index: int = 0, release_dir: str = "/"
) -> list[str]:
    """Script lines that quiet and signal `pid`, wait on the host for it to exit, escalate, and report (pure).

    A compound start command's shell is stopped with its whole process group: signalling the shell
    alone would leave the worker running beside its successor. (The group was made by setsid, so it
    is orphaned: a quiet signal such as TSTP cannot suspend a member that does not handle it.) The
    pid file is removed once everything is gone (only if it still names that pid).
    """
    quiet = []
    if settings.quiet_signal:
        quiet = [f'send {quote(str(settings.quiet_signal))} "$p" "$pf"', *drained_lines(settings, release_dir)]
    return [
        f"p={quote(pid)}; pf={quote(pidfile)}; n={quote(index)}; t0=$(now)",
        'if ! running "$pf" "$p"; then echo stop gone; else',
        *quiet,
        'if ! running "$pf" "$p"; then echo stop exited $(( $(now) - t0 )); else',
        f'send {quote(str(settings.stop_signal))} "$p" "$pf"',
        f'if wait_gone "$p" {centis(settings.stop_timeout_seconds)} "$pf"; then echo stop exited $(( $(now) - t0 ));',
        f'else send {quote(str(settings.kill_signal))} "$p" "$pf"',
        f'if wait_gone "$p" {centis(KILL_WAIT_SECONDS)} "$pf"; then echo stop killed $(( $(now) - t0 ));',
        "else echo stop stuck $(( $(now) - t0 )); fi",
        "fi",
        "fi",
        "fi",
        f'[ "$(readpid "$pf")" = "$p" ] && ! running "$pf" "$p" && rm -f "$pf" "$pf{ID_SUFFIX}"',
        "true",
    ]


def _centis_word(row: list[str], at: int) -> float | None:
    """The centiseconds word at `at` of a report row as seconds, None when absent (pure)."""
    return int(row[at]) / 100 if len(row) > at and row[at].isdigit() else None


def parse_stop(output: str) -> StopOutcome | None:
    """The outcome reported by stop_lines, None if the output has none (pure)."""
    quiet: tuple[str | None, float | None] = (None, None)
    for row in marker_lines(output, ("quiet",)):
        if len(row) >= 2 and row[1] in ("drained", "exited", "timeout"):
            quiet = (row[1], _centis_word(row, 2))
    for row in marker_lines(output, ("stop",)):
        if len(row) >= 2 and row[1] in ("gone", "exited", "killed", "stuck"):
            return StopOutcome(row[1], _centis_word(row, 2), *quiet)
    return None


def stop_budget(settings: PidfileManager) -> float:
    """The longest a stop may wait on the host: quiet phase, stop timeout, kill wait (pure)."""
    quiet = settings.quiet_timeout_seconds if settings.quiet_signal else 0
    return quiet + settings.stop_timeout_seconds + KILL_WAIT_SECONDS


async def stop_pid(
    runner: Runner,
    ctx: ServiceContext,
    service: str,
    settings: PidfileManager,
    *,
    pid: int,
    pidfile: str,
    index: int = 0,
) -> StopOutcome:
    """Quiet and stop one process and wait until it has exited (side effects: signals on the host)."""
    lines = stop_lines(settings, pid, pidfile, index=index, release_dir=ctx.current)
    result = await run_script(runner, ctx, service, lines, wait=stop_budget(settings))
    outcome = parse_stop(result.stdout)
    if outcome is None:
        raise ServiceError(runner.name, service, f"stopping pid {pid} reported nothing: {result.stdout[-400:]}")
    if outcome.how == "stuck":
        raise ServiceError(runner.name, service, f"pid {pid} survived {settings.kill_signal!s}")
    return outcome


# -- starting -----------------------------------------------------------------------------------------


def launch_lines(
    ctx: ServiceContext, command: str, pidfile: str, log_file: str, env: dict[str, str], *, write_pid: bool = True
) -> list[str]:
    """Script lines that start a user command detached and report the pid that runs it (pure).

    Bounded poll: a pid file written by the process itself wins; a launcher still alive after
    ctx.start_grace is a foreground process and its pid is written (only when write_pid); a launcher
    that exited 0 daemonized and has until ctx.daemon_timeout to write its pid file; one that exited
    non-zero failed.
    """
    grace = f"$(( $(now) + {centis(ctx.start_grace)} ))" if write_pid else ""
    return [
        f"pf={quote(pidfile)}; log={quote(log_file)}",
        cmd("mkdir", "-p", posixpath.dirname(pidfile), posixpath.dirname(log_file)) + " || exit 1",
        cmd("cd", ctx.current) + " || exit 1",
        f'rm -f "$pf" "$pf{ID_SUFFIX}"',
        detached(command, env, log_file),
        f"c=$!; st=; own=; grace={grace}; dd=$(( $(now) + {centis(ctx.daemon_timeout)} ))",
        "while :; do",
        '  own=$(readpid "$pf"); [ -n "$own" ] && alive "$own" && break; own=',
        '  if [ -z "$st" ] && ! alive "$c"; then wait "$c"; st=$?; [ "$st" -ne 0 ] && break; fi',
        '  [ -z "$st" ] && [ -n "$grace" ] && [ "$(now)" -ge "$grace" ] && break',
        '  [ "$(now)" -ge "$dd" ] && break',
        '  sleep "$POLL"',
        "done",
        'm=; if [ -n "$own" ]; then echo start own "$own"; p=$own',
        'elif [ -n "$grace" ] && [ -z "$st" ] && alive "$c"; then echo "$c" > "$pf" && echo start written "$c"; p=$c'
        + ("" if replaces_shell(command) else f"; m={GROUP_MARK}"),
        'else echo start failed "${st:--}"; echo ---; tail -n 20 "$log" 2>/dev/null; p=; fi',
        f'[ -n "$p" ] && i=$(ident "$p") && echo "$p $i${{m:+ $m}}" > "$pf{ID_SUFFIX}"',
        "true",
    ]


@dataclass(frozen=True)
class StartOutcome:
    """How a start ended: `own` (the process wrote its pid file), `written` (kapistrano did) or `failed`."""

    how: str
    pid: int | None
    status: int | None = None
    log_tail: str = ""


def parse_start(output: str) -> StartOutcome | None:
    """The outcome reported by launch_lines, None if the output has none (pure)."""
    head, _, tail = output.partition("\n---\n")
    for row in marker_lines(head, ("start",)):
        if len(row) == 3 and row[1] in ("own", "written") and row[2].isdigit():
            return StartOutcome(row[1], int(row[2]))
        if len(row) == 3 and row[1] == "failed":
            status = int(row[2]) if row[2].isdigit() else None
            return StartOutcome("failed", None, status, tail.strip())
    return None


def launch_env(ctx: ServiceContext, index: int | None, pidfile: str) -> dict[str, str]:
    """The environment a started process gets: ctx.env plus KAPISTRANO_INSTANCE/KAPISTRANO_PIDFILE (pure)."""
    env = dict(ctx.env)
    if index is not None:
        env["KAPISTRANO_INSTANCE"] = str(index)
    env["KAPISTRANO_PIDFILE"] = pidfile
    return env


async def launch(
    runner: Runner,
    ctx: ServiceContext,
    service: str,
    command: str,
    *,
    pidfile: str,
    index: int | None,
    write_pid: bool = True,
) -> int:
    """Start a user command detached and return the live pid that runs it (side effects: a process)."""
    env = launch_env(ctx, index, pidfile)
    lines = launch_lines(ctx, command, pidfile, ctx.log_file(service), env, write_pid=write_pid)
    result = await run_script(runner, ctx, service, lines, wait=ctx.start_grace + ctx.daemon_timeout)
    outcome = parse_start(result.stdout)
    if outcome is None:
        raise ServiceError(runner.name, service, f"start reported nothing: {result.stdout[-400:]}")
    if outcome.pid is None:
        why = f"exited with status {outcome.status}" if outcome.status else "wrote no pid file in time"
        raise ServiceError(runner.name, service, f"start command {why}; log: {outcome.log_tail[-600:]}")
    return outcome.pid


# -- the manager ----------------------------------------------------------------------------------------


def pidfiles(ctx: ServiceContext, service: Service) -> list[str]:
    """Absolute pid file of every instance (pure)."""
    template = settings_of(service, PidfileManager).path
    return [pidfile_path(ctx, template, n) for n in range(service.instances)]


def surge_pidfile(pidfile: str) -> str:
    """Where a StartFirst instance keeps its pid while the one it replaces still runs (pure)."""
    return pidfile + SURGE_SUFFIX


async def status(runner: Runner, ctx: ServiceContext, service: Service) -> ServiceState:
    """Which instance pids are alive; a stale or missing pid file means not running (side effects: none).

    A StartFirst successor that runs while its predecessor drains (a handoff) is the instance.
    """
    files = pidfiles(ctx, service)
    states = await read_pids(runner, ctx, service.name, [*files, *(surge_pidfile(f) for f in files)])
    count = len(files)
    return ServiceState(
        service.name, tuple(states[count + n] if states[count + n].alive else states[n] for n in range(count))
    )


def handoff_marker(pidfile: str) -> str:
    """Where the pid of an instance's running handoff is kept (pure)."""
    return pidfile + HANDOFF_SUFFIX


def handoff_lines(settings: PidfileManager, old_pid: int, pidfile: str, index: int, release_dir: str) -> list[str]:
    """Script lines run detached on the host: retire the old instance, then give its pid file to the successor (pure).

    The successor's pid file is taken over only once the old process is gone: a daemon that removes
    its own pid file on exit can then never remove its successor's.
    """
    successor, ident = quote(surge_pidfile(pidfile)), quote(surge_pidfile(pidfile) + ID_SUFFIX)
    return [
        *stop_lines(settings, old_pid, pidfile, index=index, release_dir=release_dir),
        f'if [ -n "$(readpid {successor})" ]; then mv -f {successor} {quote(pidfile)};'
        f" mv -f {ident} {quote(pidfile + ID_SUFFIX)} 2>/dev/null; fi",
        f"rm -f {quote(handoff_marker(pidfile))}",
        "true",
    ]


async def hand_off(
    runner: Runner, ctx: ServiceContext, service: str, settings: PidfileManager, *, old: int, pidfile: str, index: int
) -> None:
    """Start, detached on the host, the retirement of an old instance (side effects: a process on the host).

    It goes on by itself (quiet phase, stop, kill if need be) whatever happens to this process or
    its connection; its pid is kept next to the pid file until it ends.
    """
    body = remote_script(ctx, handoff_lines(settings, old, pidfile, index, ctx.current))
    marker = quote(handoff_marker(pidfile))
    await run_script(runner, ctx, service, [f"setsid {body} </dev/null >/dev/null 2>&1 &", f"echo $! > {marker}"])


def wait_handoffs_lines(files: list[str], budget: float) -> list[str]:
    """Script lines that wait until no handoff of these pid files runs, within `budget` seconds (pure)."""
    lines = [f"d=$(( $(now) + {centis(budget)} ))"]
    for path in files:
        marker = quote(handoff_marker(path))
        lines.append(f'h=; [ -f {marker} ] && read -r h < {marker}; while [ -n "$h" ] && alive "$h"; do')
        lines.append('  [ "$(now)" -ge "$d" ] && break; sleep "$GROUP_POLL"; done')
    return [*lines, "true"]
