"""The HostDriver over SSH: Capistrano layout, source fetch, hooks, service restarts and readiness."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from kapistrano.api.spec import Hook, Host, ReleaseSpec, Service
from kapistrano.api.status import HostPhase, Reason
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.engine.rollout import DriverFactory
from kapistrano.engine.ssh_reading import HostReader, judged_pidfiles, probe_note
from kapistrano.hosts import facts, fetch, hooks, intent, layout, lock, orphans, probes, records, services, switch
from kapistrano.hosts.errors import CommandFailed, HostError, NotReady, SourceError
from kapistrano.hosts.hub import SshHub
from kapistrano.hosts.services import ServiceContext, ServiceEvent
from kapistrano.hosts.ssh import SshConnection, target_for_host
from kapistrano.hosts.ssh_options import LocalSsh
from kapistrano.plan import ActionKind, HostObservation
from kapistrano.plan.model import Underway
from kapistrano.plan.outcomes import stopped_note

log = logging.getLogger(__name__)

#: Start grace for services with a readiness probe: just long enough to catch a command that fails at once.
NO_GRACE_SECONDS = 0.02
#: Readiness is re-checked this often while a host holds minReadySeconds.
HOLD_CHECK_SECONDS = 1.0


#: Whose lock a reading takes or refreshes, and for how long: (owner, ttl seconds).
LockFor = tuple[str, int]


def driver_factory(
    private_key: bytes | Path | None,
    known_hosts: bytes | str | Path | None,
    local: LocalSsh | None = None,
    *,
    hub: SshHub | None = None,
    key: str = "",
) -> DriverFactory:
    """A factory of SSH drivers that share one set of credentials (and the CLI user's SSH set-up) (pure).

    With a hub, their connections count against the process's bound and their work is admitted
    fairly under `key` (the Release) beside every other Release of the process.
    """

    def make(spec: ReleaseSpec, host: Host) -> SshHostDriver:
        target = target_for_host(spec, host, private_key, known_hosts, local)
        return SshHostDriver(SshConnection(target, hub=hub, key=key), spec.deploy_path, target.user)

    return make


class SshHostDriver(HostReader):
    """Carries out plan actions on one host over one multiplexed SSH connection."""

    def __init__(self, connection: SshConnection, deploy_to: str, user: str) -> None:
        self.conn = connection
        self.name = connection.name
        self.deploy_to = deploy_to
        #: Who revisions.log says deployed (Capistrano writes its local user there).
        self.user = user
        #: The last publish's bookkeeping (revisions.log, cleanup), finished off the critical path.
        self._bookkeeping: asyncio.Task[None] | None = None
        self._records_seen = {}
        #: A survey made with the lock confirmation (begin_update), for the update that follows it.
        self._surveyed: tuple[fetch.UpdateInputs, fetch.Surveyed] | None = None

    # -- reading ---------------------------------------------------------------------------------

    async def observe(self, spec: ReleaseSpec, *, lock_for: LockFor | None = None) -> HostObservation:
        """Where current points, whether the release for spec.version exists, whether services are ready.

        A host is judged by the services (status and readiness) its release was published with, so
        a new probe applies to a host only once it runs the release that brought it. One remote
        script reads it all (a second one only when a record names pid files not read yet), after
        taking or refreshing the host lock when `lock_for` (owner, ttl) asks (a LockConflict is
        raised after the read); probes and the status commands of systemd/command services run on
        their own (network I/O).
        """
        await self.settle()
        first = lock.refresh_lines(self.deploy_to, *lock_for) if lock_for else []
        found = await self._read(spec, first)
        if lock_for is not None:
            await lock.acquire_lock(self.conn, self.deploy_to, *lock_for, tried=found.lock)
        current = found.current
        desired = layout.pick_release_for_version(found.markers, spec.version)
        underway = underway_of(found.action)
        if current is None or not current.exists:
            return HostObservation(
                name=self.name, has_desired_release=desired is not None, ready=False, underway=underway
            )
        by_release = self._parse_records(found.records)
        ctx = self._context(spec, current.release)
        recorded = by_release.get(current.release)
        judged_by = spec.services_for(self.name) if recorded is None else recorded
        named = orphans.candidates(ctx, by_release, judged_by)
        judged = judged_pidfiles(ctx, judged_by)
        pids = await self._pids(ctx, found.pids, [*judged, *(c.pidfile for c in named)])
        reading = await self._services_ready(judged_by, ctx, known=(pids, found.current_dir), probed=found.probed)
        return HostObservation(
            name=self.name,
            version=current.version,
            release=current.release,
            has_desired_release=desired is not None,
            ready=reading.ready,
            services_running=reading.running,
            services_on_current=reading.on_current,
            services_live=reading.live,
            probe=probe_note(judged_by, None if recorded is None else current.release),
            orphans=tuple(str(o) for o in orphans.from_pids(named, pids)),
            underway=underway,
            restarted_since_mark=restarted_since(found.action, [pids[f] for f in judged if f in pids]),
        )

    async def _record_services(self, spec: ReleaseSpec, release_dir: str) -> None:
        """Write with a release the services this host runs from it (network I/O)."""
        record = records.services_record(spec.services_for(self.name))
        await records.write_services_record(self.conn, release_dir, record)

    async def _stop_orphans(
        self, spec: ReleaseSpec, release: str, emit: EventSink, found: facts.HostFacts | None = None
    ) -> tuple[str, ...]:
        """Stop what the release's services no longer name, with its starter's settings (network I/O).

        `found` is a reading of the records and pid files already made (by the switch), else one is made.
        """
        found = found or await self._read(spec)
        by_release = self._parse_records(found.records)
        ctx = self._context(spec, release)
        named = orphans.candidates(ctx, by_release, by_release.get(release, spec.services_for(self.name)))
        left = orphans.from_pids(named, await self._pids(ctx, found.pids, [c.pidfile for c in named]))
        if not left:
            return ()
        names = tuple(str(o) for o in left)
        emit(HostEvent(self.name, f"stopping {', '.join(names)}: not in the spec", HostPhase.RESTARTING))
        await orphans.stop(self.conn, ctx, left)
        emit(HostEvent(self.name, stopped_note(names), reason=Reason.ORPHANS_STOPPED, warning=True))
        return names

    # -- locking ---------------------------------------------------------------------------------

    async def lock(self, owner: str, ttl_seconds: int) -> None:
        """Take or refresh the host lock (network I/O)."""
        await self.settle()
        await lock.acquire_lock(self.conn, self.deploy_to, owner, ttl_seconds)

    async def unlock(self, owner: str) -> None:
        """Release the host lock if we hold it, once the bookkeeping is done (network I/O)."""
        await self.settle()
        await lock.release_lock(self.conn, self.deploy_to, owner)

    async def note(self, spec: ReleaseSpec, message: str) -> None:
        """Append a line to revisions.log, once the bookkeeping is done (network I/O)."""
        await self.settle()
        await layout.append_revision_log(self.conn, spec.deploy_path, message)

    # -- action marker ---------------------------------------------------------------------------

    async def begin_action(self, owner: str, underway: Underway, *, lock_ttl: int | None = None) -> str:
        """Write the action marker, once the last bookkeeping is done; returns its token (network I/O).

        With `lock_ttl` the host lock is confirmed first, in the same session: the marker is written
        only once the lock is ours (LockConflict is raised, and nothing written, when it is not).
        """
        await self.settle()
        token = secrets.token_hex(8)
        mark = intent.ActionMark(owner, underway.kind.value, underway.version, underway.previous_release, token)
        write = intent.write_mark_command(self.deploy_to, mark)
        if lock_ttl is None:
            await self.conn.run(write)
            return token
        result = await self.conn.run(lock.then_command(self.deploy_to, owner, lock_ttl, write), check=False)
        if not result.stdout.startswith("acquired"):  # not ours yet: a takeover, or a conflict raised
            await lock.acquire_lock(self.conn, self.deploy_to, owner, lock_ttl, tried=result.stdout or None)
            await self.conn.run(write)
        elif not result.ok:
            raise CommandFailed(self.name, "write the action marker", result.exit_status, result.stderr)
        return token

    async def begin_update(self, spec: ReleaseSpec, owner: str, lock_ttl: int) -> None:
        """Confirm the host lock and, in the same session, survey the host for the update that follows.

        Raises LockConflict (nothing surveyed) when the lock is not ours. A survey that failed is
        left for update() to make again and report, as the host's failure (network I/O).
        """
        await self.settle()
        self._surveyed = None
        inputs = fetch.UpdateInputs.from_spec(spec)
        script = lock.then_command(self.deploy_to, owner, lock_ttl, fetch.survey_command(inputs))
        result = await self.conn.run(script, check=False)
        answer, _, rest = result.stdout.partition("\n")
        if not answer.startswith("acquired"):  # not ours yet: a takeover, or a conflict raised
            await lock.acquire_lock(self.conn, self.deploy_to, owner, lock_ttl, tried=result.stdout or None)
        elif result.ok:
            self._surveyed = (inputs, fetch.parse_survey(rest, inputs))

    def end_action(self, owner: str, token: str) -> None:
        """Clear the marker in the background, after the bookkeeping; every later call waits for it (no I/O here)."""
        before = self._bookkeeping

        async def clear() -> None:
            if before is not None:
                await asyncio.shield(before)
            try:
                await intent.clear_mark(self.conn, self.deploy_to, owner, token)
            except HostError as exc:  # a marker left behind costs a resume that finds the host done
                log.warning("%s: clearing the action marker failed: %s", self.name, exc)

        self._bookkeeping = asyncio.create_task(clear())

    # -- updating --------------------------------------------------------------------------------

    async def update(self, spec: ReleaseSpec, emit: EventSink) -> str:
        """Fetch and link the release (or reuse one) and run its afterUpdate hooks (network I/O).

        The hooks run before the release is marked complete: one cut short (a timeout, a lost
        connection, a killed kapistrano) leaves no release that a later run would reuse unhooked.
        """
        await self.settle()

        async def hooks(release_dir: str) -> None:
            await self._hooks(spec, spec.hooks.after_update, release_dir, emit, run_once=True)

        here = any(self._runs(spec, h, run_once=True) for h in spec.hooks.after_update)
        inputs = fetch.UpdateInputs.from_spec(spec)
        made, self._surveyed = self._surveyed, None
        surveyed = made[1] if made is not None and made[0] == inputs else None
        result = await fetch.update_host(self.conn, inputs, before_complete=hooks if here else None, surveyed=surveyed)
        assert result.release is not None
        if result.reused:
            emit(HostEvent(self.name, f"reusing release {result.release}"))
        return result.release

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, spec: ReleaseSpec, emit: EventSink, *, run_once_hooks: bool) -> HostObservation:
        """Hooks, atomic switch, restart, readiness, minReadySeconds, hooks; then revisions.log and cleanup.

        The host counts as done once its after-publish hooks ran: its revisions.log line and the
        cleanup of old releases run in the background, so the next host need not wait for them
        (every other driver call waits for them first). A process killed in between leaves the
        host published without that log line; the next publish cleans up (network I/O).
        """
        await self.settle()
        target, seen = await self._switch(spec, emit, run_once_hooks=run_once_hooks)
        release_dir = layout.Paths(spec.deploy_path).release(target.name)
        await self._restart_all(spec, target.name, emit, keep_current=True)
        stopped = await self._stop_orphans(spec, target.name, emit, seen)
        await self._hold(spec, target.name, emit)
        await self._hooks(spec, spec.hooks.after_publish, release_dir, emit, run_once=run_once_hooks)
        branch = spec.git_ref or spec.version
        message = layout.deploy_log_line(branch, target.revision or spec.version, target.name, self.user)
        self._bookkeeping = asyncio.create_task(self._keep_books(spec, message, emit))
        # What readiness just proved; the processes were started in this release's directory.
        return HostObservation(
            name=self.name,
            version=spec.version,
            release=target.name,
            has_desired_release=True,
            ready=True,
            services_on_current=True if spec.services_for(self.name) else None,
            probe=probe_note(spec.services_for(self.name), target.name),
            stopped=stopped,
        )

    async def _switch(
        self, spec: ReleaseSpec, emit: EventSink, *, run_once_hooks: bool
    ) -> tuple[layout.ReleaseInfo, facts.HostFacts]:
        """beforePublish hooks, then the services record and the switch of current in one script (network I/O).

        The record is written before the switch: from then on the host is judged by the probes it is
        published with. Without hooks to run here, finding the release takes no round trip of its own.
        The same script reads the records and pid files, for the orphans to stop after the restart.
        """
        before = [h for h in spec.hooks.before_publish if self._runs(spec, h, run_once=run_once_hooks)]
        name = None
        if before:
            found = await layout.find_release_for_version(self.conn, spec.deploy_path, spec.version)
            if found is None:
                raise SourceError(self.name, f"no release for version {spec.version} on the host")
            name = found.name
            release_dir = layout.Paths(spec.deploy_path).release(name)
            await self._hooks(spec, before, release_dir, emit, run_once=run_once_hooks)
        emit(HostEvent(self.name, f"switching current to {name or spec.version}", HostPhase.PUBLISHING))
        record = records.services_record(spec.services_for(self.name))
        ctx = self._base(spec)
        target, seen = await switch.switch(
            self.conn, ctx, spec.version, release=name, record=record, pidfiles=self._watched(spec, ctx)
        )
        if target is None:
            raise SourceError(self.name, f"no release for version {spec.version} on the host")
        return target, seen

    async def rollback(self, spec: ReleaseSpec, emit: EventSink, *, release: str | None) -> str:
        """Switch back to `release` (or the one before current), restart, prove ready (network I/O)."""
        await self.settle()
        deploy_to = spec.deploy_path
        target = release or await self._rollback_target(spec)
        if target is None:
            raise SourceError(self.name, "no previous release to roll back to")
        # The release goes back to the services it was published with (its own probes included).
        recorded = (await self._records(deploy_to)).get(target)
        emit(HostEvent(self.name, f"rolling back to {target}", HostPhase.PUBLISHING))
        await layout.publish(self.conn, deploy_to, target)
        await self._restart_all(spec, target, emit, keep_current=True, services_=recorded)
        await self._stop_orphans(spec, target, emit)
        await layout.append_revision_log(self.conn, deploy_to, layout.rollback_log_line(self.user, target))
        return target

    async def _rollback_target(self, spec: ReleaseSpec) -> str | None:
        """Where to roll back to when the status kept no previous release (network I/O).

        The release before `current`, unless `current` has already left the failed version (an
        earlier rollback switched it and was cut short): then it is `current` itself.
        """
        current = await layout.read_current(self.conn, spec.deploy_path)
        if current is not None and current.exists and current.version != spec.version:
            return current.release
        releases = await layout.list_releases(self.conn, spec.deploy_path)
        return layout.previous_release(releases, current.release if current else None)

    async def restart(self, spec: ReleaseSpec, emit: EventSink, *, keep_running: bool = False) -> tuple[str, ...]:
        """Restart every service on the current release and wait until ready (network I/O).

        `keep_running` (healing) starts only what is not running, as the release's services record
        says, and leaves live processes alone; a restart request restarts this host's services and records them.
        Returns the processes stopped because the spec no longer names them.
        """
        await self.settle()
        current = await layout.read_current(self.conn, spec.deploy_path)
        if current is None:
            raise SourceError(self.name, "nothing is published on the host")
        recorded = (await self._records(spec.deploy_path)).get(current.release) if keep_running else None
        if not keep_running:
            release_dir = layout.Paths(spec.deploy_path).release(current.release)
            await self._record_services(spec, release_dir)
        await self._restart_all(spec, current.release, emit, keep_current=keep_running, services_=recorded)
        return await self._stop_orphans(spec, current.release, emit)

    async def _restart_all(
        self,
        spec: ReleaseSpec,
        release: str,
        emit: EventSink,
        *,
        keep_current: bool,
        services_: Sequence[Service] | None = None,
    ) -> None:
        """Restart each service (the host's in the spec, unless given) and wait for its readiness (network I/O).

        With `keep_current`, processes that already run from the release are kept and only checked.
        """
        ctx = self._context(spec, release)
        for service in spec.services_for(self.name) if services_ is None else services_:
            await self._restart_one(ctx, service, emit, keep_current=keep_current)

    async def _restart_one(self, ctx: ServiceContext, service: Service, emit: EventSink, *, keep_current: bool) -> None:
        """Restart one service; its progress becomes host events (network I/O)."""

        def on_event(event: ServiceEvent) -> None:
            emit(HostEvent(self.name, str(event), HostPhase.RESTARTING))

        def on_attempt(number: int, result: probes.Attempt, verdict: probes.Verdict) -> None:
            state = "ok" if result.ok else result.message
            emit(HostEvent(self.name, f"{service.name} readiness #{number}: {state}", HostPhase.WAITING_READY))

        check = services.readiness(self.conn, ctx, service, on_attempt=on_attempt)
        if check is not None:
            # Readiness proves the new process works, so a foreground process need not be watched
            # for a grace period first: that wait would be paid on every host.
            ctx = replace(ctx, start_grace=NO_GRACE_SECONDS)
        await services.restart(self.conn, ctx, service, on_event=on_event, check_ready=check, keep_current=keep_current)

    async def _hold(self, spec: ReleaseSpec, release: str, emit: EventSink) -> None:
        """Stay ready for minReadySeconds, re-checking as it goes (network I/O)."""
        hold = spec.strategy.min_ready_seconds
        if hold <= 0:
            return
        emit(HostEvent(self.name, f"ready, holding {hold}s (minReadySeconds)", HostPhase.WAITING_READY))
        ctx = self._context(spec, release)
        loop = asyncio.get_running_loop()
        end = loop.time() + hold
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(HOLD_CHECK_SECONDS, left))
            if not (await self._services_ready(spec.services_for(self.name), ctx, with_liveness=False)).ready:
                raise NotReady(self.name, f"a service stopped being ready during minReadySeconds ({hold}s)")

    # -- helpers ---------------------------------------------------------------------------------

    async def _keep_books(self, spec: ReleaseSpec, message: str, emit: EventSink) -> None:
        """Append the revisions.log line and remove old releases in one script; failures are warnings (network I/O)."""
        try:
            done = await layout.keep_books(self.conn, spec.deploy_path, spec.keep_releases, message)
        except HostError as failed:
            emit(HostEvent(self.name, f"cleanup failed: {failed.message}", warning=True))
            return
        except Exception:
            log.exception("%s: revisions.log and cleanup failed", self.name)
            return
        if not done.logged:
            emit(HostEvent(self.name, "revisions.log failed: the line could not be appended", warning=True))

    async def settle(self) -> None:
        """Wait for the last publish's bookkeeping; a cancelled caller does not cancel it (network I/O)."""
        task = self._bookkeeping
        if task is not None:
            await asyncio.shield(task)
            if self._bookkeeping is task:
                self._bookkeeping = None

    async def _hooks(
        self, spec: ReleaseSpec, hooks: Sequence[Hook], directory: str, emit: EventSink, *, run_once: bool
    ) -> None:
        """Run hooks in a directory, `once` hooks only when asked (network I/O)."""
        for hook in hooks:
            if not self._runs(spec, hook, run_once=run_once):
                continue
            emit(HostEvent(self.name, f"hook {hook.name}"))
            await self._run_hook(spec, hook, directory, emit)

    def _runs(self, spec: ReleaseSpec, hook: Hook, *, run_once: bool) -> bool:
        """Whether a hook runs on this host now: `once` hooks only when asked (pure)."""
        return (run_once or not hook.once) and spec.runs_hook(self.name, hook)

    async def _run_hook(self, spec: ReleaseSpec, hook: Hook, directory: str, emit: EventSink) -> None:
        """Run one hook, each line of its output emitted as it comes (network I/O)."""

        def on_line(line: str) -> None:
            emit(HostEvent(self.name, line, hook=hook.name))

        await hooks.run_hook(
            self.conn,
            hook.name,
            hook.run,
            deploy_to=spec.deploy_path,
            directory=directory,
            on_line=on_line,
            timeout=spec.ssh.command_timeout_seconds,
        )

    async def close(self) -> None:
        """Finish the bookkeeping, then close the SSH connection (network I/O)."""
        await self.settle()
        await self.conn.close()


def underway_of(mark: intent.ActionMark | None) -> Underway | None:
    """The action a host's marker says is under way, if it names one the planner knows (pure)."""
    if mark is None or mark.kind not in set(ActionKind):
        return None
    return Underway(ActionKind(mark.kind), mark.version, mark.previous_release)


def restarted_since(mark: intent.ActionMark | None, found: Sequence[facts.PidFact]) -> bool | None:
    """Whether every live process started after the marker was written; None when unknown (pure)."""
    alive = [f for f in found if f.alive]
    if mark is None or mark.uptime is None or not alive:
        return None
    return all(mark.started_after(f.started) for f in alive)
