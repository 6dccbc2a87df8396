"""Reading one host over SSH for the driver: one script for its layout and pid files, then probes.

SshHostDriver (engine/ssh_driver.py) inherits these helpers; they need its connection, its name and
the services records it saw last.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple

from kapistrano.api.spec import Manager, Probe, ReleaseSpec, Service
from kapistrano.hosts import facts, layout, probes, records, services
from kapistrano.hosts.errors import NotReady
from kapistrano.hosts.managers import pidfile
from kapistrano.hosts.managers.base import instance_env
from kapistrano.hosts.services import ServiceContext
from kapistrano.hosts.ssh import SshConnection

#: A liveness check is judged from now: alive at the first pass, stuck after failureThreshold failures.
_CONFIRM_FAILURE = {"initial_delay_seconds": 0, "success_threshold": 1}


class Reading(NamedTuple):
    """What one reading of a host's services found."""

    running: bool | None
    ready: bool
    on_current: bool | None
    live: bool | None = None


class HostReader:
    """How a driver reads its host: one script, then probes (network I/O in every async method)."""

    conn: SshConnection
    name: str
    #: The services records last read, by release: their pid files are read with the next look.
    _records_seen: dict[str, list[Service]]

    async def _read(self, spec: ReleaseSpec, first: Sequence[str] = ()) -> facts.HostFacts:
        """Read the host in one script, with the pid files the spec and the records seen last name (network I/O).

        `first` are script lines run before the reading (a lock refresh), their output in its sections.
        """
        ctx = self._base(spec)
        probes = folded_probes(ctx, spec.services_for(self.name))
        return await facts.read(self.conn, ctx, self._watched(spec, ctx), first=first, probes=probes)

    def _watched(self, spec: ReleaseSpec, ctx: ServiceContext) -> list[str]:
        """The pid files a look at the host reads: those the spec and the records seen last name (pure)."""
        seen = [s for found in self._records_seen.values() for s in found]
        return judged_pidfiles(ctx, [*spec.services_for(self.name), *seen])

    def _base(self, spec: ReleaseSpec) -> ServiceContext:
        """The service context of the host without a release (pure)."""
        return ServiceContext(deploy_to=spec.deploy_path, command_timeout=float(spec.ssh.command_timeout_seconds))

    def _parse_records(self, raw: Mapping[str, str]) -> dict[str, list[Service]]:
        """Each release's services record, unreadable ones left out; kept for the next read (changes a cache)."""
        parsed = {name: records.parse_services_record(text) for name, text in raw.items()}
        self._records_seen = {name: found for name, found in parsed.items() if found is not None}
        return dict(self._records_seen)

    async def _pids(
        self, ctx: ServiceContext, known: Mapping[str, facts.PidFact], wanted: Sequence[str]
    ) -> dict[str, facts.PidFact]:
        """The pid files wanted: those already read, and the rest read in one more round trip (network I/O)."""
        missing = [path for path in wanted if path not in known]
        return {**known, **((await facts.read_pids(self.conn, ctx, missing))[0] if missing else {})}

    async def _records(self, deploy_to: str) -> dict[str, list[Service]]:
        """The services record of every release on the host; unreadable ones are left out (network I/O)."""
        return self._parse_records(await records.read_services_records(self.conn, deploy_to))

    async def _services_ready(
        self,
        judged_by: Sequence[Service],
        ctx: ServiceContext,
        *,
        with_liveness: bool = True,
        known: tuple[Mapping[str, facts.PidFact], str | None] | None = None,
        probed: Mapping[tuple[str, str, int], bool] | None = None,
    ) -> Reading:
        """Whether every process is alive, passes one readiness attempt, runs from current, is live (network I/O).

        `known` holds pid files already read and current resolved; the rest is read in one script.
        `probed` holds readiness attempts the reading made (facts.FoldedProbe): those are not made again.
        """
        if not judged_by:
            return Reading(None, True, None)
        states, on_current = await self._states(judged_by, ctx, known)
        if not all(state.running is not False for state in states):
            return Reading(False, False, None)
        attempts = [
            _attempt(self.conn, where, s.readiness, probed or {})
            for s, state in zip(judged_by, states, strict=True)
            if s.readiness is not None
            for where in _probe_contexts(ctx, s, state)
        ]
        ready = all(await asyncio.gather(*attempts))
        running = True if all(state.running for state in states) else None

        async def live() -> bool | None:
            return await self._live(judged_by, states, ctx) if with_liveness else None

        on, alive = await asyncio.gather(on_current(), live())
        return Reading(running, ready, on, alive)

    async def _states(
        self,
        judged_by: Sequence[Service],
        ctx: ServiceContext,
        known: tuple[Mapping[str, facts.PidFact], str | None] | None,
    ) -> tuple[list[services.ServiceState], Callable[[], Awaitable[bool | None]]]:
        """Each service's status, and how to tell whether its processes run from ctx.current (network I/O).

        Services tracked by pid files are judged from one read of them; systemd and command services
        ask their manager, and then where their processes run is read too.
        """
        pids, release_dir = known if known is not None else await self._read_pids(ctx, judged_pidfiles(ctx, judged_by))
        quick = [services.status_from_pids(ctx, s, pids, release_dir) for s in judged_by]
        slow = await asyncio.gather(
            *(services.status(self.conn, ctx, s) for s, q in zip(judged_by, quick, strict=True) if q is None)
        )
        asked = iter(slow)
        states = [q if q is not None else next(asked) for q in quick]
        running = [pid for state in states for pid in state.pids]

        async def on_current() -> bool | None:
            if slow:
                return await services.runs_from(self.conn, running, ctx.current)
            cwds = {fact.pid: fact.cwd for fact in pids.values() if fact.alive}
            return facts.judge_cwds(release_dir, [cwds.get(pid) for pid in running]) if running else None

        return states, on_current

    async def _read_pids(
        self, ctx: ServiceContext, pidfiles: Sequence[str]
    ) -> tuple[dict[str, facts.PidFact], str | None]:
        """Pid files and ctx.current resolved, in one round trip; none without pid files (network I/O)."""
        if not pidfiles:
            return {}, None
        return await facts.read_pids(self.conn, ctx, pidfiles)

    async def _live(
        self, judged_by: Sequence[Service], states: Sequence[services.ServiceState], ctx: ServiceContext
    ) -> bool | None:
        """False when a liveness check fails failureThreshold times in a row; None without one (network I/O).

        One attempt when it passes: the confirming attempts are paid only by a failing host.
        """
        checks = [
            (where, s.liveness)
            for s, state in zip(judged_by, states, strict=True)
            if s.liveness is not None
            for where in _probe_contexts(ctx, s, state)
        ]
        if not checks:
            return None

        async def one(where: ServiceContext, check: Probe) -> bool:
            try:
                await probes.wait_ready(self.conn, where, check.model_copy(update=_CONFIRM_FAILURE))
            except NotReady:
                return False
            return True

        return all(await asyncio.gather(*(one(where, check) for where, check in checks)))

    def _context(self, spec: ReleaseSpec, release: str) -> ServiceContext:
        """The service context for a release of this host (pure)."""
        paths = layout.Paths(spec.deploy_path)
        return ServiceContext(
            deploy_to=spec.deploy_path,
            current_dir=paths.release(release),
            command_timeout=float(spec.ssh.command_timeout_seconds),
        )


async def _attempt(
    conn: SshConnection, where: ServiceContext, probe: Probe, probed: Mapping[tuple[str, str, int], bool]
) -> bool:
    """Whether one readiness attempt passes: the reading's own, else one made now (network I/O)."""
    pidfile, pid = where.env.get("KAPISTRANO_PIDFILE"), where.env.get("KAPISTRANO_PID", "")
    if probe.exec is not None and pidfile is not None and pid.isdigit():
        made = probed.get((pidfile, probe.exec.command, int(pid)))
        if made is not None:
            return made
    return (await probes.attempt(conn, where, probe)).ok


def folded_probes(ctx: ServiceContext, services: Sequence[Service]) -> list[facts.FoldedProbe]:
    """The exec readiness attempts a reading makes itself: one per pidfile instance of the services (pure).

    They are the spec's; a host whose current release recorded another probe is probed on its own.
    """
    return [
        facts.FoldedProbe(path, n, s.readiness.exec.command, s.readiness.timeout_seconds)
        for s in services
        if s.manager == Manager.PIDFILE and s.readiness is not None and s.readiness.exec is not None
        for n, path in enumerate(pidfile.pidfiles(ctx, s))
    ]


def probe_note(judged_by: Sequence[Service], release: str | None) -> str:
    """Which probes judged a host and where they come from: a release's record, else the spec (pure)."""
    return f"{services.describe_probes(judged_by)} [{f'release {release}' if release else 'spec'}]"


def judged_pidfiles(ctx: ServiceContext, judged_by: Sequence[Service]) -> list[str]:
    """The pid files the services' status reads, without repeats (pure)."""
    return list(dict.fromkeys(path for s in judged_by for path in services.pidfiles_of(ctx, s)))


def _probe_contexts(ctx: ServiceContext, service: Service, state: services.ServiceState) -> list[ServiceContext]:
    """Where a service's readiness is probed: once per live pidfile instance (named in the env), else once (pure)."""
    if service.manager != Manager.PIDFILE or not state.instances:
        return [ctx]
    files = pidfile.pidfiles(ctx, service)
    return [
        replace(ctx, env={**ctx.env, **instance_env(n, files[n], i.pid)})
        for n, i in enumerate(state.instances)
        if i.pid is not None and n < len(files)
    ] or [ctx]
