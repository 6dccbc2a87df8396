"""What the rollout loop needs from one host. engine/ssh_driver.py implements it over SSH."""

from __future__ import annotations

from typing import Protocol

from kapistrano.api.spec import ReleaseSpec
from kapistrano.engine.events import EventSink
from kapistrano.plan import HostObservation
from kapistrano.plan.model import Underway


class HostDriver(Protocol):
    """Carries out plan actions on one host. Every method may raise a kapistrano.hosts.errors.HostError."""

    name: str

    async def observe(self, spec: ReleaseSpec, *, lock_for: tuple[str, int] | None = None) -> HostObservation:
        """Read the host: where `current` points, which releases exist, whether services run and are ready.

        With `lock_for` (owner, ttl seconds) the host lock is taken or refreshed in the same round
        trip; LockConflict is raised when another owner holds it."""
        ...

    async def lock(self, owner: str, ttl_seconds: int) -> None:
        """Take or refresh the host lock; raises LockConflict when another owner holds it."""
        ...

    async def unlock(self, owner: str) -> None:
        """Release the host lock if we hold it."""
        ...

    async def begin_action(self, owner: str, underway: Underway, *, lock_ttl: int | None = None) -> str:
        """Write on the host that an action is under way, before it touches anything; returns its token.

        With `lock_ttl` the host lock is confirmed (taken or refreshed) first, in the same round trip;
        LockConflict is raised, and nothing written, when it is not ours."""
        ...

    async def begin_update(self, spec: ReleaseSpec, owner: str, lock_ttl: int) -> None:
        """Confirm the host lock before an update (LockConflict when it is not ours); the driver may
        survey the host for the update in the same round trip."""
        ...

    def end_action(self, owner: str, token: str) -> None:
        """Clear the marker of action `token` in the background (once the status says it ended); never raises."""
        ...

    async def update(self, spec: ReleaseSpec, emit: EventSink) -> str:
        """Fetch and link the release for spec.version (or reuse one); returns the release name."""
        ...

    async def publish(self, spec: ReleaseSpec, emit: EventSink, *, run_once_hooks: bool) -> HostObservation:
        """Hooks, switch `current`, restart services, wait ready, hold minReadySeconds, hooks, finish.

        Returns the host as the publish itself verified it (on spec.version, services ready), so the
        next step need not read it again. The finish (revisions.log, cleanup) may still be running:
        every later call on the driver, close() included, waits for it first."""
        ...

    async def rollback(self, spec: ReleaseSpec, emit: EventSink, *, release: str | None) -> str:
        """Switch back to `release` (or the newest release older than current), restart, prove ready."""
        ...

    async def restart(self, spec: ReleaseSpec, emit: EventSink, *, keep_running: bool = False) -> tuple[str, ...]:
        """Restart every service on the current release and wait until ready (restart request, heal).

        With `keep_running` (heal) live processes that run from the release are left alone. Returns
        the processes it stopped because the spec no longer names them."""
        ...

    async def note(self, spec: ReleaseSpec, message: str) -> None:
        """Append one line to the host's revisions.log (a request acted on)."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...
