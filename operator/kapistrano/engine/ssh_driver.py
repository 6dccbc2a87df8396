"""The HostDriver over SSH: Capistrano layout, source fetch, hooks, service restarts and readiness."""

from __future__ import annotations

import asyncio
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from kapistrano.api.spec import Hook, Host, ReleaseSpec, Service
from kapistrano.api.status import HostPhase
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.engine.rollout import DriverFactory
from kapistrano.hosts import fetch, layout, lock, probes, services
from kapistrano.hosts.errors import HostError, NotReady, SourceError
from kapistrano.hosts.services import ServiceContext, ServiceEvent
from kapistrano.hosts.shell import cmd, user_command
from kapistrano.hosts.ssh import SshConnection, target_for_host
from kapistrano.plan import HostObservation

log = logging.getLogger(__name__)

#: Start grace for services with a readiness probe: just long enough to catch a command that fails at once.
NO_GRACE_SECONDS = 0.02
#: Readiness is re-checked this often while a host holds minReadySeconds.
HOLD_CHECK_SECONDS = 1.0


def driver_factory(private_key: bytes | Path, known_hosts: bytes | str | Path | None) -> DriverFactory:
    """A factory of SSH drivers that share one set of credentials (pure)."""

    def make(spec: ReleaseSpec, host: Host) -> SshHostDriver:
        target = target_for_host(spec, host, private_key, known_hosts)
        return SshHostDriver(SshConnection(target), spec.deploy_path, target.user)

    return make


class SshHostDriver:
    """Carries out plan actions on one host over one multiplexed SSH connection."""

    def __init__(self, connection: SshConnection, deploy_to: str, user: str) -> None:
        self.conn = connection
        self.name = connection.name
        self.deploy_to = deploy_to
        #: Who revisions.log says deployed (Capistrano writes its local user there).
        self.user = user
        #: The last publish's bookkeeping (revisions.log, cleanup), finished off the critical path.
        self._bookkeeping: asyncio.Task[None] | None = None

    # -- reading ---------------------------------------------------------------------------------

    async def observe(self, spec: ReleaseSpec) -> HostObservation:
        """Where current points, whether the release for spec.version exists, whether services are ready."""
        await self.settle()
        deploy_to = spec.deploy_path
        current, desired = await asyncio.gather(
            layout.read_current(self.conn, deploy_to),
            layout.find_release_for_version(self.conn, deploy_to, spec.version),
        )
        if current is None or not current.exists:
            return HostObservation(name=self.name, has_desired_release=desired is not None, ready=False)
        ctx = self._context(spec, current.release)
        ready, on_current = await self._services_ready(spec, ctx)
        return HostObservation(
            name=self.name,
            version=current.version,
            release=current.release,
            has_desired_release=desired is not None,
            ready=ready,
            services_on_current=on_current,
        )

    async def _services_ready(self, spec: ReleaseSpec, ctx: ServiceContext) -> tuple[bool, bool | None]:
        """(every service runs and passes one probe attempt, its processes run from current) (network I/O)."""
        if not spec.services:
            return True, None
        states = await asyncio.gather(*(services.status(self.conn, ctx, s) for s in spec.services))
        if not all(state.running is not False for state in states):
            return False, None
        attempts = [probes.attempt(self.conn, ctx, s.readiness) for s in spec.services if s.readiness is not None]
        ready = all(a.ok for a in await asyncio.gather(*attempts))
        pids = [pid for state in states for pid in state.pids]
        return ready, await self._run_from(pids, ctx.current)

    async def _run_from(self, pids: Sequence[int], release_dir: str) -> bool | None:
        """Whether the processes' working directories are the release dir; None when unknowable (network I/O)."""
        if not pids:
            return None
        command = cmd("readlink", "-e", "--", *(f"/proc/{pid}/cwd" for pid in pids))
        result = await self.conn.run(command, check=False)
        cwds = {line for line in result.stdout.splitlines() if line}
        releases_dir = posixpath.dirname(release_dir)
        if cwds == {release_dir}:
            return True
        if any(posixpath.dirname(c) == releases_dir and c != release_dir for c in cwds):
            return False  # a process still runs from an older release: it was never restarted
        return None  # daemons that chdir elsewhere (e.g. "/") cannot be told apart

    # -- locking ---------------------------------------------------------------------------------

    async def lock(self, owner: str, ttl_seconds: int) -> None:
        """Take or refresh the host lock (network I/O)."""
        await self.settle()
        await lock.acquire_lock(self.conn, self.deploy_to, owner, ttl_seconds)

    async def unlock(self, owner: str) -> None:
        """Release the host lock if we hold it, once the bookkeeping is done (network I/O)."""
        await self.settle()
        await lock.release_lock(self.conn, self.deploy_to, owner)

    # -- updating --------------------------------------------------------------------------------

    async def update(self, spec: ReleaseSpec, emit: EventSink) -> str:
        """Fetch and link the release (or reuse one) and run its afterUpdate hooks (network I/O).

        The hooks run before the release is marked complete: one cut short (a timeout, a lost
        connection, a killed kapistrano) leaves no release that a later run would reuse unhooked.
        """
        await self.settle()

        async def hooks(release_dir: str) -> None:
            await self._hooks(spec, spec.hooks.after_update, release_dir, emit, run_once=True)

        result = await fetch.update_host(self.conn, fetch.UpdateInputs.from_spec(spec), before_complete=hooks)
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
        deploy_to = spec.deploy_path
        target = await layout.find_release_for_version(self.conn, deploy_to, spec.version)
        if target is None:
            raise SourceError(self.name, f"no release for version {spec.version} on the host")
        release_dir = layout.Paths(deploy_to).release(target.name)
        await self._hooks(spec, spec.hooks.before_publish, release_dir, emit, run_once=run_once_hooks)
        emit(HostEvent(self.name, f"switching current to {target.name}", HostPhase.PUBLISHING))
        await layout.publish(self.conn, deploy_to, target.name)
        await self._restart_all(spec, target.name, emit)
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
            services_on_current=True if spec.services else None,
        )

    async def rollback(self, spec: ReleaseSpec, emit: EventSink, *, release: str | None) -> str:
        """Switch back to `release` (or the one before current), restart, prove ready (network I/O)."""
        await self.settle()
        deploy_to = spec.deploy_path
        target = release or await self._rollback_target(spec)
        if target is None:
            raise SourceError(self.name, "no previous release to roll back to")
        emit(HostEvent(self.name, f"rolling back to {target}", HostPhase.PUBLISHING))
        await layout.publish(self.conn, deploy_to, target)
        await self._restart_all(spec, target, emit)
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

    async def restart(self, spec: ReleaseSpec, emit: EventSink) -> None:
        """Restart every service on the current release and wait until ready (network I/O)."""
        await self.settle()
        current = await layout.read_current(self.conn, spec.deploy_path)
        if current is None:
            raise SourceError(self.name, "nothing is published on the host")
        await self._restart_all(spec, current.release, emit)

    async def _restart_all(self, spec: ReleaseSpec, release: str, emit: EventSink) -> None:
        """Restart each service in spec order and wait for its readiness (network I/O)."""
        ctx = self._context(spec, release)
        for service in spec.services:
            await self._restart_one(ctx, service, emit)

    async def _restart_one(self, ctx: ServiceContext, service: Service, emit: EventSink) -> None:
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
        await services.restart(self.conn, ctx, service, on_event=on_event, check_ready=check)

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
            ready, _ = await self._services_ready(spec, ctx)
            if not ready:
                raise NotReady(self.name, f"a service stopped being ready during minReadySeconds ({hold}s)")

    # -- helpers ---------------------------------------------------------------------------------

    async def _keep_books(self, spec: ReleaseSpec, message: str, emit: EventSink) -> None:
        """Append the revisions.log line and remove old releases; a failure is a warning (network I/O)."""
        done = await asyncio.gather(
            layout.append_revision_log(self.conn, spec.deploy_path, message),
            layout.cleanup(self.conn, spec.deploy_path, spec.keep_releases),
            return_exceptions=True,
        )
        for what, outcome in zip(("revisions.log", "cleanup"), done, strict=True):
            if isinstance(outcome, HostError):
                emit(HostEvent(self.name, f"{what} failed: {outcome.message}", warning=True))
            elif isinstance(outcome, BaseException):
                log.error("%s: %s failed", self.name, what, exc_info=outcome)

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
            if hook.once and not run_once:
                continue
            emit(HostEvent(self.name, f"hook {hook.name}"))
            await self.conn.run(user_command(directory, hook.run), timeout=spec.ssh.command_timeout_seconds)

    def _context(self, spec: ReleaseSpec, release: str) -> ServiceContext:
        """The service context for a release of this host (pure)."""
        paths = layout.Paths(spec.deploy_path)
        return ServiceContext(
            deploy_to=spec.deploy_path,
            current_dir=paths.release(release),
            command_timeout=float(spec.ssh.command_timeout_seconds),
        )

    async def close(self) -> None:
        """Finish the bookkeeping, then close the SSH connection (network I/O)."""
        await self.settle()
        await self.conn.close()
