"""A deployed app on one lab host for the service-manager tests: layout, sample worker, events log."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest_asyncio
from kapistrano.api.spec import Service
from kapistrano.hosts.managers.base import ServiceContext, ServiceEvent
from kapistrano.hosts.ssh import SshConnection
from kapistrano.lab import HostLab, LabHost

from tests.integration.hostkit import target_for, wait_until

WORKERS = Path(__file__).resolve().parent.parent / "workers"
DEPLOY_TO = "/var/www/app"
RELEASE = f"{DEPLOY_TO}/releases/20260101000000"
PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Event:
    """One line of the sample worker's events file."""

    kind: str
    pid: int
    at: float
    instance: str


@dataclass
class App:
    """A Capistrano-style app on a lab host with an SSH connection to it."""

    lab: HostLab
    host: LabHost
    runner: SshConnection
    ctx: ServiceContext
    seen: list[ServiceEvent] = field(default_factory=list)

    @property
    def events_file(self) -> str:
        """The host path the sample workers append their events to (pure)."""
        return f"{DEPLOY_TO}/shared/events.log"

    def worker(self, *args: str) -> str:
        """A start command running the sample worker with the host's python (pure)."""
        return " ".join([PYTHON, "slow_worker.py", "--events", self.events_file, *args])

    def events(self) -> list[Event]:
        """Every worker event so far, in file order (reads the host's file)."""
        path = self.host.path(self.events_file)
        if not path.exists():
            return []
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        return [Event(r[0], int(r[1]), float(r[2]), r[3]) for r in rows]

    def event(self, kind: str, pid: int) -> Event:
        """The one event of a kind for a pid (reads the host's file); fails the test if absent."""
        found = [e for e in self.events() if e.kind == kind and e.pid == pid]
        assert len(found) == 1, f"expected one {kind} for {pid}: {self.events()}"
        return found[0]

    async def wait_event(self, kind: str, pid: int, timeout: float = 10.0) -> Event:
        """The event of a kind for a pid once the process has logged it (polls the host's file)."""

        async def logged() -> bool:
            return any(e.kind == kind and e.pid == pid for e in self.events())

        await wait_until(logged, timeout=timeout)
        return self.event(kind, pid)

    def write(self, remote: str, text: str) -> Path:
        """Write a file on the host, creating its directory (side effect: host filesystem)."""
        path = self.host.path(remote)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def record(self, event: ServiceEvent) -> None:
        """An on_event sink keeping every event (mutates self.seen)."""
        self.seen.append(event)

    def kinds(self) -> list[tuple[str, str]]:
        """(kind, instance) of every event seen so far (pure)."""
        return [(e.kind, e.instance) for e in self.seen]

    def alive(self, pid: int) -> bool:
        """True when the pid runs inside the host and is not a zombie (reads /proc)."""
        return pid in self.host.processes() and not _zombie(pid)


def _zombie(pid: int) -> bool:
    """True when /proc says the process is a zombie (reads /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def deploy(host: LabHost) -> None:
    """Lay out releases/<ts> with the sample worker, current -> it, and shared/ (side effect: host files)."""
    release = host.path(RELEASE)
    release.mkdir(parents=True)
    shutil.copy(WORKERS / "slow_worker.py", release / "slow_worker.py")
    (host.path(DEPLOY_TO) / "shared" / "log").mkdir(parents=True)
    (host.path(DEPLOY_TO) / "current").symlink_to("releases/20260101000000")


@pytest_asyncio.fixture
async def app(lab_factory: object) -> AsyncIterator[App]:
    """One lab host with the app deployed and an SSH connection to it; closed after the test."""
    lab: HostLab = lab_factory(1)  # type: ignore[operator]
    host = lab.hosts[0]
    deploy(host)
    runner = SshConnection(target_for(lab, host))
    try:
        yield App(lab, host, runner, ServiceContext(deploy_to=DEPLOY_TO, command_timeout=60))
    finally:
        await runner.close()


def pidfile_service(start: str, *, instances: int = 1, **settings: object) -> Service:
    """A pidfile-managed service called worker (pure)."""
    block = {"path": "tmp/pids/worker.{index}.pid", "start": start, **settings}
    return Service.model_validate({"name": "worker", "manager": "pidfile", "instances": instances, "pidfile": block})


def session_of(pid: int) -> int:
    """The session id of a process (reads /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def cwd_of(pid: int) -> str:
    """The working directory of a process as the root namespace sees it (reads /proc)."""
    return os.readlink(f"/proc/{pid}/cwd")


def environ_of(pid: int) -> list[bytes]:
    """The environment of a process, one `K=V` per entry (reads /proc)."""
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def dead_pid() -> int:
    """A pid no process has: above the kernel's pid_max, so it cannot be reused meanwhile (reads /proc).

    (The pid of an exited child can be handed out again within milliseconds when the machine forks
    thousands of processes a second, as a big lab does.)
    """
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
