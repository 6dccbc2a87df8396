"""What every service manager shares: the context, progress events, results and the remote wait loop."""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from kapistrano.api.spec import Service
from kapistrano.hosts.errors import ServiceError
from kapistrano.hosts.runner import CommandResult, Runner
from kapistrano.hosts.shell import cmd, quote

#: Extra time a remote wait loop gets from the client beyond its own deadline (round trip, shell start).
REMOTE_SLACK_SECONDS = 30.0
#: How long a process may take to vanish after the kill signal before it counts as stuck.
KILL_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class ServiceContext:
    """Where a host's release lives and how long remote steps may take."""

    deploy_to: str
    #: Directory services start in; `<deploy_to>/current` unless a resolved release dir is given.
    current_dir: str | None = None
    command_timeout: float = 600.0
    #: Extra environment for every user command and systemctl call (e.g. a PATH override).
    env: Mapping[str, str] = field(default_factory=dict)
    #: Period of the remote wait loops (pid exit, pid file appearance). Short because a rolling
    #: restart pays it once per host on the critical path; each turn costs one `sleep` on the host.
    poll_interval: float = 0.01
    #: How long a started process that stays in the foreground gets to write its own pid file. Short,
    #: because it is paid on every restart: a daemon that writes its pid file later still overwrites
    #: the pid kapistrano wrote, and readiness proves the process works either way.
    start_grace: float = 0.1
    #: How long a command that daemonized (its launcher exited 0) gets to write its pid file.
    daemon_timeout: float = 30.0

    @property
    def current(self) -> str:
        """The directory services and user commands run in (pure)."""
        return self.current_dir or posixpath.join(self.deploy_to, "current")

    @property
    def shared(self) -> str:
        """<deploy_to>/shared (pure)."""
        return posixpath.join(self.deploy_to, "shared")

    def log_file(self, service: str) -> str:
        """shared/log/<service>.log, where a service's output is appended (pure)."""
        return posixpath.join(self.shared, "log", f"{service}.log")

    def shared_path(self, path: str) -> str:
        """A path relative to shared/ made absolute; absolute paths stay as they are (pure)."""
        return path if path.startswith("/") else posixpath.join(self.shared, path)


EventKind = Literal[
    "quieting",
    "drained",
    "stopping",
    "exited",
    "killing",
    "killed",
    "not-running",
    "starting",
    "started",
    "reloading",
    "new-master",
    "quitting",
    "rolling-back",
    "lingering",
    "kept",
    "promoted",
    "handing-over",
]


@dataclass(frozen=True)
class ServiceEvent:
    """One step of a restart, for status messages such as "sneakers[0] stopping (pid 4242)"."""

    kind: EventKind
    service: str
    instance: str
    pid: int | None = None
    seconds: float | None = None
    detail: str = ""

    def __str__(self) -> str:
        parts = [f"{self.service}[{self.instance}] {self.kind}"]
        if self.pid is not None:
            parts.append(f"(pid {self.pid})")
        if self.seconds is not None:
            parts.append(f"after {self.seconds:.2f}s")
        if self.detail:
            parts.append(self.detail)
        return " ".join(parts)


EventSink = Callable[[ServiceEvent], None]
_Block = TypeVar("_Block")


class ReadyCheck(Protocol):
    """Called once the new processes run (for graceful, before the old master is retired); raises if not ready.

    `env` names the instance being judged (KAPISTRANO_INSTANCE, KAPISTRANO_PIDFILE, KAPISTRANO_PID)
    for an exec probe; None judges the service as a whole.
    """

    def __call__(self, env: Mapping[str, str] | None = None) -> Awaitable[None]: ...


def settings_of(service: Service, kind: type[_Block]) -> _Block:
    """The block of a service's manager, e.g. service.pidfile for manager pidfile (pure).

    The spec's validation guarantees the block is there; a ValueError names the service otherwise.
    """
    block = getattr(service, str(service.manager), None)
    if not isinstance(block, kind):
        raise ValueError(f"service {service.name} has no {service.manager} settings")
    return block


def instance_env(index: int, pidfile: str, pid: int) -> dict[str, str]:
    """The environment naming one instance to a probe or a drained check (pure)."""
    return {"KAPISTRANO_INSTANCE": str(index), "KAPISTRANO_PIDFILE": pidfile, "KAPISTRANO_PID": str(pid)}


def ignore_event(event: ServiceEvent) -> None:
    """The default event sink: drop the event (pure)."""


@dataclass(frozen=True)
class InstanceState:
    """One process (or unit) of a service as observed on the host; alive None means unknown."""

    instance: str
    pid: int | None
    alive: bool | None
    #: The process runs from the release directory services are started in (ctx.current); None: not known.
    on_current: bool | None = None


@dataclass(frozen=True)
class ServiceState:
    """Every instance of a service as observed on the host."""

    service: str
    instances: tuple[InstanceState, ...]

    @property
    def running(self) -> bool | None:
        """True when every instance is alive, None when that cannot be told (pure)."""
        if any(i.alive is None for i in self.instances):
            return None
        return bool(self.instances) and all(i.alive for i in self.instances)

    @property
    def pids(self) -> tuple[int, ...]:
        """Pids of the live instances (pure)."""
        return tuple(i.pid for i in self.instances if i.alive and i.pid is not None)


@dataclass(frozen=True)
class InstanceRestart:
    """What restarting one instance did."""

    instance: str
    old_pid: int | None
    new_pid: int | None
    stop_seconds: float | None = None
    killed: bool = False


@dataclass(frozen=True)
class RestartResult:
    """What restarting a service did, instance by instance."""

    service: str
    instances: tuple[InstanceRestart, ...]


# -- the remote shell functions every wait loop uses ----------------------------------------------
# Static shell text (no values): `now` reads a monotonic clock in centiseconds from /proc/uptime,
# `alive` treats zombies as gone (a detached process whose reaper never reaps it still answers
# kill -0), `ident` prints what tells a process from a later one with the same pid (boot id and
# start time in clock ticks), `readpid` prints the pid in a pid file if it holds one and it was not
# reused (see ID_SUFFIX), and `wait_gone PID CS [PIDFILE]` waits on the host until PID is gone or CS
# centiseconds passed, so a wait costs one round trip instead of one per poll. One process watches
# (`exits`: a perl loop that looks at the pid every $POLL seconds as `alive` does, a zombie being
# gone; perl-base is part of every Debian and Ubuntu): polling with `sleep` cost a fork and an
# exec per turn, 130 per host for a drain of 5 s, most of the CPU of hosts restarting side by side.
# Without perl it polls with `sleep` every $POLL seconds, after 50 turns every $SLOW_POLL, reading
# the clock every 5th turn.
# `grouped PIDFILE PID` says whether the identity file marks PID as the shell of a process group
# kapistrano stops as a whole; `group_alive PGID` is `alive` for such a group; `running PIDFILE PID`,
# `send SIG PID PIDFILE` and `wait_gone PID CS PIDFILE` act on the group when it is one (polling it
# every $GROUP_POLL seconds: each look reads every process's stat file; dash's kill takes
# `-SIG -PGID`, not `-s`). `ppid PID` prints PID's parent.
SHELL_FUNCTIONS = r"""now() { read -r _u _r < /proc/uptime; echo $(( ${_u%.*} * 100 + 1${_u#*.} - 100 )); }
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  _s=; { read -r _s < "/proc/$1/stat"; } 2>/dev/null; _s=${_s##*) }; _s=${_s%% *}
  [ "$_s" != Z ] && [ "$_s" != X ]
}
started() {
  _s=; { read -r _s < "/proc/$1/stat"; } 2>/dev/null || return 1
  _s=${_s##*) }; set -- $_s; shift 19
  echo "$1"
}
ident() {
  _t=$(started "$1") || return 1
  _b=-; { read -r _b < /proc/sys/kernel/random/boot_id; } 2>/dev/null
  echo "$_b:$_t"
}
readpid() {
  _p=; [ -f "$1" ] && { read -r _p < "$1"; } 2>/dev/null
  case $_p in ''|*[!0-9]*|0|1) return 0 ;; esac
  _ip=; _i=; _m=; [ -f "$1.kapistrano" ] && { read -r _ip _i _m < "$1.kapistrano"; } 2>/dev/null
  if [ "$_ip" = "$_p" ] && [ -n "$_i" ] && _n=$(ident "$_p") && [ "$_n" != "$_i" ]; then return 0; fi
  echo "$_p"
}
wait_gone() {
  _d=$(( $(now) + $2 )); _w=$POLL; _g=; _k=0
  [ -n "$3" ] && grouped "$3" "$1" && _g=1 && _w=$GROUP_POLL
  while if [ -n "$_g" ]; then group_alive "$1"; else alive "$1"; fi; do
    _k=$((_k + 1)); [ "$_k" = 50 ] && [ -z "$_g" ] && _w=$SLOW_POLL
    if [ -z "$_g" ] && [ -z "$_noperl" ]; then
      _l=$(( _d - $(now) )); [ "$_l" -le 0 ] && return 1
      exits "$1" "$_l" && continue
    fi
    if [ $((_k % 5)) = 1 ]; then [ "$(now)" -ge "$_d" ] && return 1; fi
    sleep "$_w"
  done
  return 0
}
exits() {
  perl -e '
    my ($p, $cs, $w) = @ARGV;
    for (0 .. $cs / 100 / $w) {
      my $s = "";
      if (open(my $f, "<", "/proc/$p/stat")) { $s = <$f> // ""; close $f }
      exit 0 unless kill(0, $p) || $! + 0 == 1;
      my $i = rindex($s, ") ");
      exit 0 if $i >= 0 && substr($s, $i + 2, 1) =~ /[ZX]/;
      select(undef, undef, undef, $w);
    }
    exit 124' "$1" "$2" "$POLL" 2>/dev/null
  case $? in 0|124) return 0 ;; esac
  _noperl=1; return 1
}
send() {
  if grouped "$3" "$2"; then kill -"$1" -"$2" 2>/dev/null; else kill -s "$1" "$2" 2>/dev/null; fi
}
ppid() {
  _s=; { read -r _s < "/proc/$1/stat"; } 2>/dev/null || return 1
  _s=${_s##*) }; set -- $_s; echo "$2"
}
grouped() {
  _ip=; _i=; _m=; { read -r _ip _i _m < "$1.kapistrano"; } 2>/dev/null
  [ "$_ip" = "$2" ] && [ "$_m" = group ]
}
running() {
  if grouped "$1" "$2"; then group_alive "$2"; else alive "$2"; fi
}
group_alive() {
  kill -0 -"$1" 2>/dev/null || return 1
  for _f in /proc/[0-9]*/stat; do
    _s=; { read -r _s < "$_f"; } 2>/dev/null || continue
    _s=${_s##*) }; set -- "$1" $_s
    [ "$4" = "$1" ] && [ "$2" != Z ] && [ "$2" != X ] && return 0
  done
  return 1
}"""


#: Next to a pid file, kapistrano records "<pid> <ident> [group]" of the process it started: a live
#: process with that pid but another identity is a later process that reused the pid (after a
#: reboot, say), so it is never signalled as the worker. Pid files without one (written by others)
#: are trusted. `group` marks the shell of a start command that is not one program (`a | b`): its
#: process group is what gets signalled and waited for.
ID_SUFFIX = ".kapistrano"
#: The third word of an identity line whose pid leads a process group kapistrano stops as a whole.
GROUP_MARK = "group"
#: How often a process group is looked at while waiting for it to exit.
GROUP_POLL_SECONDS = 0.1
#: How often a process still running after 50 looks (a long drain) is looked at: exit is then seen
#: within this long, at a fifth of the forks.
SLOW_POLL_SECONDS = 0.05


def centis(seconds: float) -> int:
    """Seconds as whole centiseconds, the unit of the remote clock (pure)."""
    return max(0, round(seconds * 100))


def remote_script(ctx: ServiceContext, lines: list[str]) -> str:
    """A command line running a POSIX sh script with the shared functions defined (pure).

    Scripts run under `sh -c` whatever the login shell is, so they behave the same everywhere.
    """
    slow = max(ctx.poll_interval, SLOW_POLL_SECONDS)
    poll = f"POLL={quote(f'{ctx.poll_interval:g}')}; SLOW_POLL={slow:g}; GROUP_POLL={GROUP_POLL_SECONDS:g}"
    body = "\n".join([poll, SHELL_FUNCTIONS, *lines])
    return cmd("sh", "-c", body)


def marker_lines(output: str, markers: tuple[str, ...]) -> list[list[str]]:
    """The whitespace-split stdout lines whose first word is one of `markers` (pure)."""
    rows = [line.split() for line in output.splitlines()]
    return [row for row in rows if row and row[0] in markers]


async def run_script(
    runner: Runner, ctx: ServiceContext, service: str, lines: list[str], *, wait: float = 0.0
) -> CommandResult:
    """Run a service script on the host, allowing `wait` seconds of remote waiting (side effects: remote).

    Raises ServiceError when the script itself fails (it reports outcomes on stdout and exits 0).
    """
    timeout = min(ctx.command_timeout, REMOTE_SLACK_SECONDS) + wait
    result = await runner.run(remote_script(ctx, lines), timeout=timeout, check=False)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip()[-800:]
        raise ServiceError(runner.name, service, f"remote script exited {result.exit_status}: {detail}")
    return result
