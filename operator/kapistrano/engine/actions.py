"""Carrying out one plan's actions on hosts, and writing their outcome into the status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from kapistrano.api.status import HostPhase, HostStatus, format_time
from kapistrano.engine.driver import HostDriver
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.engine.store import StatusRecorder
from kapistrano.hosts.errors import HostError, as_host_error
from kapistrano.plan import Action, ActionKind, HostObservation

if TYPE_CHECKING:
    from kapistrano.engine.rollout import Desired

#: The phase recorded before each disruptive action starts (Rule 2: intent before action).
INTENT_PHASE = {
    ActionKind.PUBLISH: HostPhase.PUBLISHING,
    ActionKind.ROLLBACK: HostPhase.PUBLISHING,
    ActionKind.RESTART: HostPhase.RESTARTING,
    ActionKind.HEAL: HostPhase.RESTARTING,
}
UPDATE_CONCURRENCY = 10


class ActionRunner:
    """Runs the actions of one plan and records each host's outcome."""

    def __init__(
        self, desired: Desired, recorder: StatusRecorder, emit: EventSink, clock: Callable[[], datetime]
    ) -> None:
        self.desired = desired
        self.spec = desired.spec
        self.recorder = recorder
        self.emit = emit
        self.clock = clock
        #: Hosts whose action ended by verifying their state (a successful publish): what it found.
        self.verified: dict[str, HostObservation] = {}
        #: Hosts whose release for spec.version was fetched (nothing else on them changed).
        self.updated: set[str] = set()

    def host(self, name: str) -> HostStatus:
        """The status entry of a host (the planner wrote one for every host)."""
        entry = self.recorder.status.host(name)
        assert entry is not None, name
        return entry

    def record_intent(self, actions: list[Action]) -> None:
        """Write what is about to happen on each host before doing it (changes status in memory)."""
        for action in actions:
            phase = INTENT_PHASE.get(action.kind)
            if phase is None:
                continue
            entry = self.host(action.host)
            # The host stops counting as ready the moment its restart may begin.
            fields: dict[str, object] = {"action": action.kind.value, "ready": False}
            if action.kind == ActionKind.PUBLISH:
                fields["attempts"] = entry.attempts + 1
                if entry.version != self.spec.version and entry.action is None:
                    fields["previous_release"] = entry.release
            self.recorder.apply(HostEvent(action.host, f"{action.kind.value.lower()} starting", phase, fields=fields))

    def once_first(self, actions: list[Action]) -> Action | None:
        """The publish that must run `once` hooks alone before any other host publishes, if any (pure).

        That is the first publish of a version no host runs yet, when there are `once` hooks.
        """
        hooks = self.spec.hooks
        if not any(h.once for h in (*hooks.before_publish, *hooks.after_publish)):
            return None
        if any(h.version == self.spec.version for h in self.recorder.status.hosts):
            return None
        return next((a for a in actions if a.kind == ActionKind.PUBLISH), None)

    async def run_one(self, action: Action, driver: HostDriver, *, run_once_hooks: bool = False) -> None:
        """Run one action and record its outcome; host errors are recorded, not raised (network I/O)."""
        try:
            await self._dispatch(action, driver, run_once_hooks)
        except Exception as exc:  # one host's unexpected error fails that host, not the rollout
            self._failed(action, as_host_error(action.host, exc))

    async def _dispatch(self, action: Action, driver: HostDriver, run_once_hooks: bool) -> None:
        """Call the driver method for an action and record success."""
        name, spec = action.host, self.spec
        if action.kind == ActionKind.UPDATE:
            self.emit(HostEvent(name, f"fetching {spec.version}", HostPhase.UPDATING))
            release = await driver.update(spec, self.emit)
            self.emit(HostEvent(name, f"release {release} ready", HostPhase.UPDATED))
            self.updated.add(name)
        elif action.kind == ActionKind.PUBLISH:
            self.verified[name] = await driver.publish(spec, self.emit, run_once_hooks=run_once_hooks)
            self._ready(name, spec.version, f"ready on {spec.version}")
        elif action.kind == ActionKind.ROLLBACK:
            release = await driver.rollback(spec, self.emit, release=self.host(name).previous_release)
            self._ready(name, None, f"rolled back to release {release}", phase=HostPhase.ROLLED_BACK)
        else:
            await driver.restart(spec, self.emit)
            token = self.desired.restart_token if action.kind == ActionKind.RESTART else None
            self._ready(name, spec.version, "services restarted", restarted_for=token)

    def _ready(
        self,
        name: str,
        version: str | None,
        message: str,
        *,
        phase: HostPhase = HostPhase.READY,
        restarted_for: str | None = None,
    ) -> None:
        """Record that a host finished an action and is ready (changes status in memory)."""
        entry = self.host(name)
        fields: dict[str, object] = {
            "action": None,
            "ready": True,
            "ready_since": format_time(self.clock()),
            "restarts": entry.restarts + 1,
        }
        if version is not None:
            fields["version"] = version
        if restarted_for is not None:
            fields["restarted_for"] = restarted_for
        self.emit(HostEvent(name, message, phase, reason="HostReady", fields=fields))

    def _failed(self, action: Action, exc: HostError) -> None:
        """Record a failed action: transient errors leave the intent for a retry (changes status in memory)."""
        name = action.host
        if exc.transient:
            phase = HostPhase.UNREACHABLE
            fields: dict[str, object] = {}
        else:
            phase = HostPhase.FAILED
            fields = {"action": None, "ready": False}
            if action.kind in (ActionKind.UPDATE, ActionKind.PUBLISH):
                # The version itself is broken here (bad source, failing hook, never ready): stop the rollout.
                fields["failed_version"] = self.spec.version
            elif action.kind == ActionKind.ROLLBACK:
                fields["rollback_failed"] = True  # retrying would fail the same way, over and over
        self.emit(HostEvent(name, exc.message, phase, reason=exc.reason, warning=True, fields=fields))
