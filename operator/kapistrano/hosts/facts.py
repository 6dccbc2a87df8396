"""What one look at a host finds, in ONE remote script: current, release markers, services records, the action
marker, pid files.

Reading a host used to take a round trip (an sshd session) per fact; here a pure `read_command()`
builds one script that prints every fact in its own section, and a pure `parse_facts()` reads its
output. The pid files to read are given by the caller (those its spec and the records it saw last
name); a record naming others is answered by the caller with one more read of just those.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kapistrano.hosts.intent import ActionMark, marker_path, parse_mark
from kapistrano.hosts.layout import (
    _CURRENT,
    _MARKERS,
    CurrentRelease,
    Paths,
    ReleaseInfo,
    parse_current,
    parse_release_markers,
)
from kapistrano.hosts.managers.base import ServiceContext, instance_env, remote_script, run_script
from kapistrano.hosts.records import _RECORDS, parse_services_records
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import SECTION, cmd, quote, section, split_sections


@dataclass(frozen=True)
class PidFact:
    """One pid file: the pid it names (None: none), whether that process runs, its working directory."""

    pid: int | None
    alive: bool
    cwd: str | None = None
    #: When the process started, in seconds since the host booted (None: not running, or unknown).
    started: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HostFacts:
    """What one read of a host found; `pids` holds only the pid files asked for."""

    current: CurrentRelease | None = None
    #: `current` resolved to a directory (readlink -e), None when it does not resolve.
    current_dir: str | None = None
    markers: tuple[ReleaseInfo, ...] = ()
    records: Mapping[str, str] = field(default_factory=dict)
    pids: Mapping[str, PidFact] = field(default_factory=dict)
    #: The action marker (hosts/intent.py): an action under way on the host, if any.
    action: ActionMark | None = None
    #: What a lock refresh made by the same script printed (hosts/lock.py), None when none was asked.
    lock: str | None = None
    #: Readiness attempts made by the reading itself: (pid file, command, pid) -> passed.
    probed: Mapping[tuple[str, str, int], bool] = field(default_factory=dict)

    def covers(self, pidfiles: Iterable[str]) -> bool:
        """True when every pid file given was read (pure)."""
        return all(path in self.pids for path in pidfiles)


@dataclass(frozen=True)
class FoldedProbe:
    """An exec readiness attempt the reading makes for one pidfile instance, when its process runs."""

    pidfile: str
    instance: int
    command: str
    timeout_seconds: float

    def line(self, number: int, current: str) -> str:
        """The script line running it in `current` (resolved), printing `probe\\t<number>\\t<pid>\\t<status>` (pure).

        It runs as exec_attempt runs it (the instance named in the environment), bounded by
        coreutils `timeout`; a status of 127 (no such command) leaves the attempt to a session of its own.
        """
        names = instance_env(self.instance, self.pidfile, 0)
        names.pop("KAPISTRANO_PID")
        limit = f"{max(1, math.ceil(self.timeout_seconds))}s"
        probe = cmd("timeout", "-k", "2", limit, "sh", "-c", self.command)
        env = " ".join(f"{k}={quote(v)}" for k, v in names.items())
        run = f'(cd -P {quote(current)} && exec env {env} KAPISTRANO_PID="$p" {probe}) </dev/null >/dev/null 2>&1'
        return f'[ "$a" = 1 ] && {{ {run}; printf \'probe\\t%s\\t%s\\t%s\\n\' {number} "$p" "$?"; }}'


def pid_lines(pidfiles: Sequence[str], probes: Sequence[FoldedProbe] = (), current: str = "") -> list[str]:
    """Script lines printing `pid\\t<n>\\t<pid|->\\t<alive 1|0>\\t<start|->\\t<cwd|->` per pid file (pure).

    <start> is when the process started in clock ticks since boot; the section's first line gives
    the ticks per second.
    """
    lines = [f"echo {SECTION} pids", "printf 'hz\\t%s\\n' \"$(getconf CLK_TCK 2>/dev/null)\""]
    for n, path in enumerate(pidfiles):
        lines.append(f'p=$(readpid {quote(path)}); a=0; w=; t=; [ -n "$p" ] && running {quote(path)} "$p" && a=1')
        lines.append('[ "$a" = 1 ] && w=$(readlink -e "/proc/$p/cwd" 2>/dev/null) && t=$(started "$p")')
        lines.append(f'printf \'pid\\t%s\\t%s\\t%s\\t%s\\t%s\\n\' {n} "${{p:--}}" "$a" "${{t:--}}" "${{w:--}}"')
        lines += [probe.line(j, current) for j, probe in enumerate(probes) if probe.pidfile == path]
    return lines


def read_lines(deploy_to: str, pidfiles: Sequence[str], probes: Sequence[FoldedProbe] = ()) -> list[str]:
    """Script lines reading current, the release markers, the services records and the pid files,
    with the readiness attempts `probes` of the instances that run (pure)."""
    paths = Paths(deploy_to)
    return [
        *section("current", _CURRENT, paths.current),
        f"echo {SECTION} resolved; readlink -e {quote(paths.current)} 2>/dev/null",
        *section("markers", _MARKERS, paths.releases),
        *section("records", _RECORDS, paths.releases),
        f"echo {SECTION} action; cat -- {quote(marker_path(deploy_to))} 2>/dev/null",
        *pid_lines(pidfiles, probes, paths.current),
        "true",
    ]


def parse_probed(text: str, probes: Sequence[FoldedProbe]) -> dict[tuple[str, str, int], bool]:
    """(pid file, command, pid) -> passed, from the pids section's probe lines; 127 is left out (pure)."""
    found = {}
    for line in text.splitlines():
        row = line.split("\t")
        if len(row) != 4 or row[0] != "probe" or not all(x.isdigit() for x in row[1:]) or int(row[1]) >= len(probes):
            continue
        probe = probes[int(row[1])]
        if row[3] != "127":
            found[(probe.pidfile, probe.command, int(row[2]))] = row[3] == "0"
    return found


def read_command(ctx: ServiceContext, pidfiles: Sequence[str]) -> str:
    """The one command line that reads a host (pure)."""
    return remote_script(ctx, read_lines(ctx.deploy_to, pidfiles))


def parse_pids(text: str, pidfiles: Sequence[str]) -> dict[str, PidFact]:
    """Pid file -> PidFact from pid_lines output; a pid file without a line names no pid (pure)."""
    found = {path: PidFact(None, False) for path in pidfiles}
    hz = 0
    for line in text.splitlines():
        row = line.split("\t", 5)
        if row[0] == "hz" and len(row) == 2 and row[1].isdigit():
            hz = int(row[1])
        if len(row) != 6 or row[0] != "pid" or not row[1].isdigit() or int(row[1]) >= len(pidfiles):
            continue
        pid = int(row[2]) if row[2].isdigit() else None
        alive = pid is not None and row[3] == "1"
        started = int(row[4]) / hz if alive and hz and row[4].isdigit() else None
        cwd = row[5] if alive and row[5] not in ("", "-") else None
        found[pidfiles[int(row[1])]] = PidFact(pid, alive, cwd, started)
    return found


def parse_facts(output: str, pidfiles: Sequence[str], probes: Sequence[FoldedProbe] = ()) -> HostFacts:
    """The HostFacts read_command's output describes (pure)."""
    sections = split_sections(output)
    resolved = sections.get("resolved", "").strip()
    return HostFacts(
        current=parse_current(sections.get("current", "")),
        current_dir=resolved or None,
        markers=tuple(parse_release_markers(sections.get("markers", ""))),
        records=parse_services_records(sections.get("records", "")),
        pids=parse_pids(sections.get("pids", ""), pidfiles),
        action=parse_mark(sections.get("action", "")),
        lock=sections.get("lock"),
        probed=parse_probed(sections.get("pids", ""), probes),
    )


async def read(
    runner: Runner,
    ctx: ServiceContext,
    pidfiles: Iterable[str],
    *,
    first: Sequence[str] = (),
    probes: Sequence[FoldedProbe] = (),
) -> HostFacts:
    """Read a host in one round trip, after the script lines `first` (a lock refresh), making the
    readiness attempts `probes` of running instances on the way (side effects: theirs only)."""
    wanted = list(dict.fromkeys(pidfiles))
    wait = sum(p.timeout_seconds + 2 for p in probes)
    result = await run_script(runner, ctx, "host", [*first, *read_lines(ctx.deploy_to, wanted, probes)], wait=wait)
    return parse_facts(result.stdout, wanted, probes)


async def read_pids(
    runner: Runner, ctx: ServiceContext, pidfiles: Iterable[str]
) -> tuple[dict[str, PidFact], str | None]:
    """Only the given pid files, and ctx.current resolved, in one round trip (side effects: none on the host)."""
    wanted = list(dict.fromkeys(pidfiles))
    lines = [f"echo {SECTION} resolved; readlink -e {quote(ctx.current)} 2>/dev/null", *pid_lines(wanted), "true"]
    sections = split_sections((await run_script(runner, ctx, "pids", lines)).stdout)
    return parse_pids(sections.get("pids", ""), wanted), sections.get("resolved", "").strip() or None


def judge_cwds(release_dir: str | None, cwds: Iterable[str | None]) -> bool | None:
    """Whether processes run from a release dir: True, False (one runs from another release), None (unknowable) (pure).

    `release_dir` is resolved (readlink -e); None when it does not resolve.
    """
    seen = {c for c in cwds if c}
    if not release_dir or not seen:
        return None
    if seen == {release_dir}:
        return True
    releases_dir = posixpath.dirname(release_dir)
    if any(posixpath.dirname(c) == releases_dir and c != release_dir for c in seen):
        return False
    return None
