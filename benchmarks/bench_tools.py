#!/usr/bin/env python3
"""kapistrano, Capistrano 3.17 and ansible-core rolling the same worker on the same SSH test hosts.

For each tool and host count N: a fresh lab, v1 of the sample worker running on every host
(started by `kapistrano apply` with maxUnavailable 100%, so every tool starts from the same state),
then the timed v2 release by the tool under test. Every worker needs D seconds to exit after TERM
and S seconds to become ready; the floor of a one-host-at-a-time release is N*(D+S). All tools get
the code the same way: they copy a version directory that already exists on every host into a new
release directory (kapistrano `source.path`, a copy SCM plugin for Capistrano, `cp -a` in Ansible).

The workers append start/ready/draining/exit lines to one shared EVENTS_LOG; from it the script
reports the most hosts without a live worker at once, the longest time one host had none (old
worker's TERM to the new worker's ready) and hosts where the new worker started before the old one
had exited (overlap). For kapistrano at 50 hosts it also reports the CLI's peak RSS, CPU seconds
and status-file saves (renames of the state file, counted with inotify).

    .venv/bin/python -m benchmarks.bench_tools                      (as root, from the repo root)
    .venv/bin/python -m benchmarks.bench_tools --hosts 3 --tools cap-sleep --drain 5 --big 0

Tools: kapistrano, cap-sleep (the seed story's `kill; sleep 3; start` in sequence), cap-wait (wait
for the pid to exit, then for /health), ansible (serial: 1, wait_for /proc/<pid> absent, uri until
200). ansible-playbook comes with the `test` extra (pip install -e '.[test]').

With --instances, every host runs that many workers with seeded random drains (--drain-range,
benchmarks/multi.py) and the tools are kapistrano (StopFirst, instances together),
kapistrano-startfirst (replace StartFirst, --max-surge), cap-wait and ansible (all instances of a
host TERMed, waited for, started and checked together); ratios against the floors and the targets
are printed at the end:

    .venv/bin/python -m benchmarks.bench_tools --hosts 3 10 --instances 2 4
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import math
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml
from kapistrano.lab import HostLab
from kapistrano.lab.sample_app import lab_release

from benchmarks.bench_rolling import host_count, make_versions, manifest
from benchmarks.multi import (
    NEXT_PORT,
    V1_PORT,
    Capacity,
    Drains,
    Phases,
    capacity,
    multi_service,
    phases,
    read_events,
    started_lab,
    write_drains,
)

HERE = Path(__file__).resolve().parent
CAP_PROJECT = HERE / "capistrano"
PLAYBOOK = HERE / "ansible" / "rolling.yml"
BIN = Path(sys.executable).parent
TOOLS = ("kapistrano", "cap-sleep", "cap-wait", "ansible", "kapistrano-startfirst")
#: Tools run by default: one instance per host / several instances with random drains.
SINGLE_TOOLS = ("kapistrano", "cap-sleep", "cap-wait", "ansible")
MULTI_TOOLS = ("kapistrano", "kapistrano-startfirst", "cap-wait", "ansible")
PR_SET_CHILD_SUBREAPER = 36
IN_MOVED_TO = 0x80
IN_Q_OVERFLOW = 0x4000


# -- processes --------------------------------------------------------------------------------------


def become_reaping_parent() -> None:
    """Make this process a child subreaper and continue in a forked child; the parent reaps orphans.

    Workers are started detached (setsid ... &), so when the SSH command returns they are orphans. On a
    real host init reaps them at once; this machine's PID 1 reaps only every ~2 s, and a zombie still
    answers `kill -0` and keeps /proc/<pid>, which would make the naive wait loops of Capistrano and
    Ansible look slower than they are. Orphans of the lab hosts are reparented to the nearest
    subreaper ancestor, this parent, which reaps them as they exit. Returns in the child only.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("warning: cannot become a child subreaper; exited workers stay zombies until init reaps them")
        return
    child = os.fork()
    if child == 0:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child cleans up its lab on Ctrl-C
    code = 1
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            break
    for _ in range(100):  # whatever exited meanwhile; anything still running goes to init
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    sys.exit(code)


@dataclass(frozen=True)
class Child:
    """How one tool run ended: exit code, wall seconds, CPU seconds and peak RSS of its process tree."""

    returncode: int
    wall: float
    cpu: float
    maxrss_kib: int
    log: Path


def run_child(argv: list[str], *, log: Path, timeout: float, env: dict[str, str], cwd: Path | None = None) -> Child:
    """Run a command in its own process group, output to `log`; kill the group on timeout (side effects).

    CPU and peak RSS come from wait4(): the child plus the descendants it waited for (peak RSS is the
    largest single process among them).
    """
    with log.open("w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # helpers a tool left behind in its group (there should be none)
    return Child(proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, log)


def require_ok(child: Child, what: str) -> None:
    """Stop with the end of the log if a tool run failed (reads the log)."""
    if child.returncode != 0:
        tail = child.log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"{what} failed with exit code {child.returncode} after {child.wall:.1f}s:\n{tail}")


class RenameCounter:
    """Counts renames onto one file (atomic saves) with inotify, from a background thread."""

    def __init__(self, target: Path) -> None:
        self.target = target.name.encode()
        self.directory = target.parent
        self.count = 0
        self.overflow = False
        self._stop = threading.Event()
        self._fd = -1
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RenameCounter:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0 or libc.inotify_add_watch(self._fd, bytes(self.directory), IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._fd)

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if ready:
                self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            offset = 0
            while offset + 16 <= len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].split(b"\0", 1)[0]
                self.overflow |= bool(mask & IN_Q_OVERFLOW)
                if mask & IN_MOVED_TO and name == self.target:
                    self.count += 1
                offset += 16 + length


# -- one benchmark -----------------------------------------------------------------------------------


@dataclass
class Case:
    """One run: a tool on a fresh lab of `hosts` hosts, with its files under `root`."""

    tool: str
    hosts: int
    drain: float
    boot: float
    budget: int | str
    root: Path = field(default_factory=Path)
    instances: int = 1
    spread: tuple[float, float] | None = None  # random drains in [low, high] per instance (multi mode)
    seed: int = 0
    surge: int | str = 1
    drains: Drains | None = None

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def timeout(self) -> float:
        return 120 + self.hosts * (max(self.spread or (self.drain,)) + self.boot + 5) * 3


def budget_count(budget: int | str, hosts: int) -> int:
    """maxUnavailable as a host count, as kapistrano's planner counts it (pure)."""
    if isinstance(budget, str) and budget.endswith("%"):
        return min(hosts, max(1, hosts * int(budget[:-1]) // 100))
    return min(hosts, max(1, int(budget)))


def kapistrano_apply(case: Case, lab: HostLab, version: str, budget: int | str, counter: bool) -> tuple[Child, int]:
    """`kapistrano apply` of one version of the worker; returns the run and the state saves (side effects)."""
    if case.spread is None:
        doc = manifest(lab, str(case.root / version), version, drain=case.drain, boot=case.boot, budget=budget)
        pidfile = doc["spec"]["services"][0]["pidfile"]
        pidfile["start"] = pidfile["start"].replace("exec env ", f"exec env EVENTS_LOG={case.events} ", 1)
    else:
        replace = "StartFirst" if case.tool == "kapistrano-startfirst" and version != "v1" else "StopFirst"
        service = multi_service(instances=case.instances, ready=case.boot, replace=replace, events=case.events)
        strategy = {"maxUnavailable": budget, "maxSurge": case.surge}
        source = {"path": str(case.root / version)}
        doc = lab_release(
            lab, "bench", services=[service], application="bench", version=version, source=source, strategy=strategy
        )
    release = case.root / f"release-{version}.yaml"
    release.write_text(yaml.safe_dump(doc, sort_keys=False))
    state = case.root / "state" / "bench.json"
    state.parent.mkdir(exist_ok=True)
    argv = [str(BIN / "kapistrano"), "apply", "-f", str(release), "--state", str(state)]
    argv += ["--ssh-key", str(lab.client_key), "--known-hosts", str(lab.known_hosts)]
    log = case.root / f"kapistrano-{version}.log"
    env = {**os.environ, "COLUMNS": "200"}
    if not counter:
        return run_child(argv, log=log, timeout=case.timeout, env=env), 0
    with RenameCounter(state) as renames:
        child = run_child(argv, log=log, timeout=case.timeout, env=env)
    if renames.overflow:
        print("warning: inotify queue overflowed; the save count is a lower bound")
    return child, renames.count


def cap_deploy(case: Case, lab: HostLab, restart: str) -> Child:
    """`cap bench deploy` of v2 from a copy of benchmarks/capistrano (side effects)."""
    project = case.root / "capistrano"
    shutil.copytree(CAP_PROJECT, project)
    env = {
        **os.environ,
        "BENCH_RESTART": restart,
        "BENCH_HOSTS": ",".join(h.address for h in lab.hosts),
        "BENCH_SOURCE": str(case.root / "v2"),
        "BENCH_VERSION": "v2",
        "BENCH_DRAIN": str(case.drain),
        "BENCH_READY": str(case.boot),
        "BENCH_EVENTS": str(case.events),
        "BENCH_KEY": str(lab.client_key),
        "BENCH_KNOWN_HOSTS": str(lab.known_hosts),
        "BENCH_INSTANCES": str(case.instances),
        "BENCH_HEALTH_BASE": str(V1_PORT if case.spread is None else NEXT_PORT),
    }
    return run_child(["cap", "bench", "deploy"], cwd=project, log=case.root / "cap.log", timeout=case.timeout, env=env)


def ansible_deploy(case: Case, lab: HostLab) -> Child:
    """ansible-playbook benchmarks/ansible/rolling.yml for v2 (side effects: also closes its SSH masters)."""
    work = case.root / "ansible"
    control = work / "cp"
    control.mkdir(parents=True)
    inventory = work / "inventory.ini"
    rows = [f"{h.name} ansible_host={h.address} ansible_user=root" for h in lab.hosts]
    inventory.write_text("[workers]\n" + "\n".join(rows) + "\n")
    ssh_args = (
        f"-C -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={lab.known_hosts} -o GlobalKnownHostsFile=/dev/null"
    )
    config = work / "ansible.cfg"
    config.write_text(
        "[defaults]\n"
        f"inventory = {inventory}\nprivate_key_file = {lab.client_key}\nforks = {min(case.hosts, 50)}\n"
        "interpreter_python = /usr/bin/python3\nretry_files_enabled = False\n"
        "[ssh_connection]\n"
        f"pipelining = True\nssh_args = {ssh_args}\ncontrol_path_dir = {control}\ncontrol_path = %(directory)s/%%h\n"
    )
    extra = {
        "source": str(case.root / "v2"),
        "release": time.strftime("%Y%m%d%H%M%S", time.gmtime()),
        "drain": case.drain,
        "ready": case.boot,
        "events": str(case.events),
        "instances": case.instances,
        "health_base": V1_PORT if case.spread is None else NEXT_PORT,
    }
    env = {**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ANSIBLE_NOCOLOR": "1"}
    argv = [str(BIN / "ansible-playbook"), str(PLAYBOOK), "-e", json.dumps(extra)]
    try:
        return run_child(argv, log=case.root / "ansible.log", timeout=case.timeout, env=env)
    finally:
        for socket_path in control.iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "lab"],
                capture_output=True,
                timeout=10,
                check=False,
            )


# -- what the workers recorded -----------------------------------------------------------------------


@dataclass(frozen=True)
class Gaps:
    """What the EVENTS_LOG says about one release from `old` to `new`."""

    down_at_once: int  # most hosts without a ready worker at the same time
    down_max: float  # longest time one host had no ready worker: old TERM (draining) to new ready
    overlaps: int  # hosts where the new worker started before the old one had exited
    overlap_max: float  # the longest such overlap, seconds
    missing: int  # hosts with no ready new worker once things settled
    span: float  # first old worker's TERM to the last new worker's ready (or the tool's end if earlier)
    late: float  # the last new worker became ready this long after the tool returned (0: before)


def host_events(path: Path, version: str) -> dict[str, dict[int, dict[str, float]]]:
    """host -> pid -> event -> time, for the workers of one version (reads the file)."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["version"] == version:
            out.setdefault(row["host"], {}).setdefault(row["pid"], {})[row["event"]] = row["time"]
    return out


def settle(path: Path, hosts: list[str], old: str, new: str, deadline: float) -> None:
    """Wait until every host logged a ready `new` worker and every `old` one exited, or the deadline (reads)."""
    while time.time() < deadline:
        olds, news = host_events(path, old), host_events(path, new)
        ready = all(any("ready" in e for e in news.get(h, {}).values()) for h in hosts)
        if ready and all("exit" in e for pids in olds.values() for e in pids.values()):
            return
        time.sleep(0.1)


def analyze(path: Path, hosts: list[str], old: str, new: str, ended: float) -> Gaps:
    """Gaps and overlaps of one release from the shared events log; `ended`: when the tool returned (reads)."""
    end = max(time.time(), ended)
    olds, news = host_events(path, old), host_events(path, new)
    intervals: list[tuple[float, float]] = []
    overlaps, overlap_max, missing = 0, 0.0, 0
    for host in hosts:
        drained = [e["draining"] for e in olds.get(host, {}).values() if "draining" in e]
        exits = [e.get("exit", math.inf) for e in olds.get(host, {}).values()]
        starts = [e["start"] for e in news.get(host, {}).values() if "start" in e]
        readies = [e["ready"] for e in news.get(host, {}).values() if "ready" in e]
        missing += not readies
        if drained:
            intervals.append((min(drained), min((r for r in readies if r >= min(drained)), default=end)))
        if starts and exits and min(starts) < max(exits):
            overlaps += 1
            overlap_max = max(overlap_max, min(max(exits), end) - min(starts))
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda p: (p[0], p[1]))
    level = most = 0
    for _, step in points:
        level += step
        most = max(most, level)
    last = max((b for _, b in intervals), default=ended)
    span = min(last, ended) - min(a for a, _ in intervals) if intervals else 0.0
    down_max = max((b - a for a, b in intervals), default=0.0)
    return Gaps(most, down_max, overlaps, overlap_max, missing, span, max(0.0, last - ended))


def settle_all(path: Path, count: int, old: str, new: str, deadline: float) -> None:
    """Wait until `count` `new` workers logged ready and `count` `old` ones exited, or the deadline (reads)."""
    while time.time() < deadline:
        rows = read_events(path)
        ready = sum(r["version"] == new and r["event"] == "ready" for r in rows)
        gone = sum(r["version"] == old and r["event"] == "exit" for r in rows)
        if ready >= count and gone >= count:
            return
        time.sleep(0.1)


def overlaps_of(path: Path, hosts: list[str], old: str, new: str) -> tuple[int, float]:
    """Hosts where a new worker started before the last old one had exited, and the longest such overlap (reads)."""
    olds, news = host_events(path, old), host_events(path, new)
    count, longest = 0, 0.0
    for host in hosts:
        exits = [e.get("exit", math.inf) for e in olds.get(host, {}).values()]
        starts = [e["start"] for e in news.get(host, {}).values() if "start" in e]
        if starts and exits and min(starts) < max(exits):
            count += 1
            longest = max(longest, max(exits) - min(starts))
    return count, longest


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    case: Case
    run: Child
    gaps: Gaps
    saves: int
    capacity: Capacity | None = None
    phases: Phases | None = None

    @property
    def floor(self) -> float:
        drains = self.case.drains
        if drains is not None:
            if self.case.tool == "kapistrano-startfirst":
                return drains.start_first_floor(self.case.boot)
            return drains.stop_first_floor(self.case.boot)
        batches = math.ceil(self.case.hosts / budget_count(self.case.budget, self.case.hosts))
        return batches * (self.case.drain + self.case.boot)


def bench(case: Case) -> Row:
    """Fresh lab, v1 everywhere, then the timed v2 release by case.tool (starts test hosts)."""
    case.root = Path(tempfile.mkdtemp(prefix="kapbench-tools-"))
    cap, steps = None, None
    try:
        sources = make_versions(case.root, ["v1", "v2"], shim=case.spread is not None)
        with started_lab(case.hosts) as lab:
            names = [h.name for h in lab.hosts]
            if case.spread is not None:
                case.drains = Drains.draw(case.seed, names, case.instances, *case.spread)
                write_drains(sources, case.drains)
            first, _ = kapistrano_apply(case, lab, "v1", "100%", counter=False)
            require_ok(first, "kapistrano apply v1")
            saves = 0
            if case.tool.startswith("kapistrano"):
                run, saves = kapistrano_apply(case, lab, "v2", case.budget, counter=True)
            elif case.tool in ("cap-sleep", "cap-wait"):
                run = cap_deploy(case, lab, case.tool.removeprefix("cap-"))
            else:
                run = ansible_deploy(case, lab)
            ended = time.time()
            if run.returncode != 0:
                print(f"  {case.tool} exited {run.returncode}; end of its log:")
                print("  " + run.log.read_text(errors="replace")[-1500:].replace("\n", "\n  "))
            if case.spread is None:
                settle(case.events, names, "v1", "v2", ended + case.drain + case.boot + 5)
            else:
                settle_all(case.events, case.hosts * case.instances, "v1", "v2", ended + case.spread[1] + case.boot + 5)
                cap = capacity(case.events, names, case.instances)
                steps = phases(case.events)
            gaps = analyze(case.events, names, "v1", "v2", ended)
            if case.spread is not None:  # several instances: overlaps against the last old exit of each host
                overlaps, longest = overlaps_of(case.events, names, "v1", "v2")
                gaps = dataclasses.replace(gaps, overlaps=overlaps, overlap_max=longest)
    finally:
        shutil.rmtree(case.root, ignore_errors=True)
    return Row(case, run, gaps, saves, cap, steps)


# -- output ------------------------------------------------------------------------------------------

TOOLS_HEAD = (
    "| tool | hosts | D s | S s | wall s | floor s | above floor s | per host s | fixed s "
    "| most hosts down | longest host down s | overlaps (max s) | hosts without v2 | last ready after exit s "
    "| exit | CPU s | peak RSS MiB |"
)


def tools_line(row: Row) -> str:
    """One markdown row of the comparison table (pure)."""
    c, r, g = row.case, row.run, row.gaps
    above = r.wall - row.floor
    cells = [
        c.tool,
        str(c.hosts),
        f"{c.drain:g}",
        f"{c.boot:g}",
        f"{r.wall:.2f}",
        f"{row.floor:.2f}",
        f"{above:.2f}",
        f"{above / c.hosts:.2f}",
        f"{r.wall - g.span:.2f}",
        str(g.down_at_once),
        f"{g.down_max:.2f}",
        f"{g.overlaps} ({g.overlap_max:.2f})",
        str(g.missing),
        f"{g.late:.2f}",
        str(r.returncode),
        f"{r.cpu:.2f}",
        f"{r.maxrss_kib / 1024:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


MULTI_HEAD = (
    "| tool | hosts | instances | seed | wall s | span s | floor s | wall/floor | span/floor | fixed s "
    "| most hosts short | samples below capacity | fewest ready (of) | overlaps (max s) | exit | CPU s |"
)


def multi_line(row: Row) -> str:
    """One markdown row of the several-instances table (pure)."""
    c, r, g, k = row.case, row.run, row.gaps, row.capacity
    assert k is not None
    assert c.drains is not None
    cells = [
        c.tool,
        str(c.hosts),
        str(c.instances),
        str(c.drains.seed),
        f"{r.wall:.2f}",
        f"{k.span:.2f}",
        f"{row.floor:.2f}",
        f"{r.wall / row.floor:.3f}",
        f"{k.span / row.floor:.3f}",
        f"{r.wall - k.span:.2f}",
        str(k.hosts_short_at_once),
        f"{k.below}/{k.samples}",
        f"{k.exact_lowest} ({k.full})",
        f"{g.overlaps} ({g.overlap_max:.2f})",
        str(r.returncode),
        f"{r.cpu:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


BIG_HEAD = (
    "| hosts | maxUnavailable | D s | S s | wall s | floor s | ratio | CLI peak RSS MiB | CLI CPU s | CPU s/host "
    "| status saves | saves/min | most hosts down | overlaps |"
)


def big_line(row: Row) -> str:
    """One markdown row of the 50-host table (pure)."""
    c, r, g = row.case, row.run, row.gaps
    cells = [
        str(c.hosts),
        str(c.budget),
        f"{c.drain:g}",
        f"{c.boot:g}",
        f"{r.wall:.2f}",
        f"{row.floor:.2f}",
        f"{r.wall / row.floor:.3f}",
        f"{r.maxrss_kib / 1024:.0f}",
        f"{r.cpu:.2f}",
        f"{r.cpu / c.hosts:.3f}",
        str(row.saves),
        f"{row.saves / r.wall * 60:.0f}",
        str(g.down_at_once),
        str(g.overlaps),
    ]
    return "| " + " | ".join(cells) + " |"


def available(tool: str) -> str | None:
    """Why a tool cannot run here, or None (reads PATH)."""
    if tool.startswith("cap-") and shutil.which("cap") is None:
        return "`cap` is not installed (apt-get install capistrano)"
    if tool == "ansible" and not (BIN / "ansible-playbook").exists():
        return "ansible-playbook is not in the virtualenv (pip install -e '.[test]')"
    if not (BIN / "kapistrano").exists():
        return "the kapistrano CLI is not in the virtualenv (pip install -e .)"
    return None


def targets(rows: list[Row]) -> list[str]:
    """Per hosts x instances, whether kapistrano met the targets of this benchmark (pure)."""
    out = []
    groups: dict[tuple[int, int], dict[str, Row]] = {}
    for row in rows:
        groups.setdefault((row.case.hosts, row.case.instances), {})[row.case.tool] = row
    for (hosts, instances), by_tool in groups.items():
        head = f"{hosts} hosts x {instances}:"
        if (kap := by_tool.get("kapistrano")) is not None:
            ratio = kap.run.wall / kap.floor
            out.append(f"{head} StopFirst wall/floor {ratio:.3f} (target 1.03: {'met' if ratio <= 1.03 else 'missed'})")
            for other in ("cap-wait", "ansible"):
                if other in by_tool:
                    theirs = by_tool[other].run.wall
                    verdict = "ahead" if kap.run.wall < theirs else "NOT ahead"
                    out.append(f"{head} kapistrano {kap.run.wall:.2f} s vs {other} {theirs:.2f} s: {verdict}")
        if (surge := by_tool.get("kapistrano-startfirst")) is not None and surge.capacity is not None:
            k, ratio = surge.capacity, surge.capacity.span / surge.floor
            below = "met" if k.below == 0 else "missed"
            out.append(
                f"{head} StartFirst samples below capacity {k.below} (target 0: {below}), "
                f"span/floor {ratio:.3f} (target 1.1: {'met' if ratio <= 1.1 else 'missed'})"
            )
    return out


def main_multi(args: argparse.Namespace, tools: list[str]) -> None:
    """Several instances per host with random drains: every tool on every hosts x instances (starts labs)."""
    low, high = args.drain_range
    print(
        f"drains uniform in [{low:g}, {high:g}] s per instance (seed + 100 x hosts + instances), ready {args.boot:g} s"
    )
    rows = []
    for hosts in args.hosts:
        for instances in args.instances:
            seed = args.seed + 100 * hosts + instances
            for tool in tools:
                print(f"{tool} on {hosts} hosts x {instances} instances (seed {seed}) ...", flush=True)
                case = Case(tool, hosts, low, args.boot, 1, instances=instances, spread=(low, high), seed=seed)
                case.surge = args.max_surge
                row = bench(case)
                if tool == tools[0] and case.drains is not None:
                    print(case.drains.describe())
                print("  " + multi_line(row))
                if row.phases is not None:
                    p = row.phases
                    print(f"    per host: boot {p.boot:.3f}, ready->stop {p.to_stop:.3f}, drain {p.drain:.3f}, "
                          f"exit->start {p.to_start:.3f} s", flush=True)  # fmt: skip
                rows.append(row)
    print()
    print(MULTI_HEAD)
    print("|" + "---|" * MULTI_HEAD.count(" | ") + "---|")
    for row in rows:
        print(multi_line(row))
    print()
    print("\n".join(targets(rows)))


def main() -> None:
    """Run every tool on every host count, then kapistrano on the big fleet; print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="*", default=[3, 10])
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=None)
    parser.add_argument("--drain", type=float, default=2.0, help="D: seconds a worker drains after TERM")
    parser.add_argument("--boot", type=float, default=1.0, help="S: seconds a worker needs to become ready")
    parser.add_argument("--big", type=int, default=50, help="hosts for the kapistrano-only run (0: skip)")
    parser.add_argument("--big-budget", default="10%", help="maxUnavailable of the big run")
    parser.add_argument("--instances", type=int, nargs="*", default=[], help="workers per host, random drains")
    parser.add_argument("--drain-range", type=float, nargs=2, default=[3.5, 6.0], metavar=("LOW", "HIGH"))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--max-surge", type=host_count, default=1, help="strategy.maxSurge of kapistrano-startfirst")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the SSH test hosts need root")
    become_reaping_parent()
    chosen = args.tools or list(MULTI_TOOLS if args.instances else SINGLE_TOOLS)
    skipped = {t: why for t in chosen if (why := available(t))}
    if args.instances and "cap-sleep" in chosen:
        skipped["cap-sleep"] = "it restarts one instance per host (the seed story's Capfile)"
    for tool, why in skipped.items():
        print(f"skipping {tool}: {why}")
    if args.instances:
        main_multi(args, [t for t in chosen if t not in skipped])
        return
    if "kapistrano-startfirst" in chosen:
        skipped["kapistrano-startfirst"] = "only with --instances"
    rows = []
    for hosts in args.hosts:
        for tool in chosen:
            if tool in skipped:
                continue
            print(f"{tool} on {hosts} hosts ...", flush=True)
            rows.append(bench(Case(tool, hosts, args.drain, args.boot, 1)))
    if rows:
        print()
        print(TOOLS_HEAD)
        print("|" + "---|" * TOOLS_HEAD.count(" | ") + "---|")
        for row in rows:
            print(tools_line(row))
    if args.big > 0 and "kapistrano" not in skipped:
        print(f"\nkapistrano on {args.big} hosts, maxUnavailable {args.big_budget} ...", flush=True)
        big = bench(Case("kapistrano", args.big, args.drain, args.boot, args.big_budget))
        print()
        print(BIG_HEAD)
        print("|" + "---|" * BIG_HEAD.count(" | ") + "---|")
        print(big_line(big))


if __name__ == "__main__":
    main()
