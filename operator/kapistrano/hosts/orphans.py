"""Processes kapistrano started that the spec no longer names: instances beyond a lowered count, retired services.

Who started what is read from the services record of every release on the host (written when the
release was published): each pidfile instance a record names, whose pid file the spec does not name
and whose process is alive, is an orphan. It is stopped with the settings of the release that
started it (its quiet and stop signals, its timeouts), never with the spec's. Releases published
without a record (by Capistrano or an older kapistrano) name nothing here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kapistrano.api.spec import Manager, PidfileManager, Service
from kapistrano.hosts.facts import PidFact
from kapistrano.hosts.managers.base import ServiceContext, settings_of
from kapistrano.hosts.managers.pidfile import StopOutcome, pidfile_path, pidfiles, read_pids, stop_pid
from kapistrano.hosts.runner import Runner


@dataclass(frozen=True)
class Candidate:
    """A pid file some release's record names and the spec does not, with that release's service."""

    service: Service
    index: int
    pidfile: str
    release: str


@dataclass(frozen=True)
class Orphan:
    """A live process in a candidate's pid file."""

    candidate: Candidate
    pid: int

    def __str__(self) -> str:
        c = self.candidate
        return f"{c.service.name}[{c.index}] pid {self.pid} (release {c.release})"


def candidates(
    ctx: ServiceContext, records: Mapping[str, Sequence[Service]], spec: Sequence[Service]
) -> list[Candidate]:
    """Pid files named by a release's record and not by the spec; the newest release's settings win (pure)."""
    named = {path for s in spec if s.manager == Manager.PIDFILE for path in pidfiles(ctx, s)}
    found: dict[str, Candidate] = {}
    for release in sorted(records):  # release names sort oldest first
        for service in records[release]:
            if service.manager != Manager.PIDFILE:
                continue
            template = settings_of(service, PidfileManager).path
            for index in range(service.instances):
                path = pidfile_path(ctx, template, index)
                if path not in named:
                    found[path] = Candidate(service, index, path, release)
    return list(found.values())


def from_pids(candidates_: Sequence[Candidate], pids: Mapping[str, PidFact]) -> list[Orphan]:
    """The live orphans among candidates whose pid files were already read (pure)."""
    found = [(c, pids[c.pidfile]) for c in candidates_]
    return [Orphan(c, fact.pid) for c, fact in found if fact.alive and fact.pid is not None]


async def find(
    runner: Runner, ctx: ServiceContext, records: Mapping[str, Sequence[Service]], spec: Sequence[Service]
) -> list[Orphan]:
    """The live orphans on a host; no round trip when no record names a pid file the spec lacks (reads)."""
    found = candidates(ctx, records, spec)
    if not found:
        return []
    states = await read_pids(runner, ctx, "orphans", [c.pidfile for c in found])
    return [Orphan(c, s.pid) for c, s in zip(found, states, strict=True) if s.alive and s.pid is not None]


async def stop(runner: Runner, ctx: ServiceContext, orphans: Sequence[Orphan]) -> list[StopOutcome]:
    """Quiet and stop every orphan at once with its own release's settings, waiting for each exit (signals)."""

    async def one(orphan: Orphan) -> StopOutcome:
        c = orphan.candidate
        settings = settings_of(c.service, PidfileManager)
        return await stop_pid(runner, ctx, c.service.name, settings, pid=orphan.pid, pidfile=c.pidfile, index=c.index)

    return list(await asyncio.gather(*(one(o) for o in orphans)))
