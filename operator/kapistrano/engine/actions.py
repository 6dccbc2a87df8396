"""Carrying out one plan's actions on hosts, and writing their outcome into the status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from kapistrano.api.status import HostPhase, HostStatus, Reason
from kapistrano.engine.driver import HostDriver
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.engine.store import StatusRecorder
from kapistrano.hosts.errors import HostError, as_host_error
from kapistrano.plan import Action, ActionKind, HostObservation
from kapistrano.plan.model import Underway
from kapistrano.plan.outcomes import (
    INTENT_PHASE,
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    outcome_phase,
    stopped_note,
)

if TYPE_CHECKING:
    from kapistrano.engine.rollout import Desired

UPDATE_CONCURRENCY = 10


class ActionRunner:
    """Runs the actions of one plan and records each host's outcome."""

    def __init__(
        self,
        desired: Desired,
        recorder: StatusRecorder,
        emit: EventSink,
        clock: Callable[[], datetime],
        *,
        owner: str = "",
    ) -> None:
        self.desired = desired
        #: Who the actions' markers on the hosts name (the Release uid).
        self.owner = owner
        self.spec = desired.spec
        self.recorder = recorder
        self.emit = emit
        self.clock = clock
        #: Hosts whose action ended by verifying their state (a successful publish): what it found.
        self.verified: dict[str, HostObservation] = {}
        #: Hosts whose release for spec.version was fetched (nothing else on them changed).
        self.updated: set[str] = set()
        #: Hosts whose restart (a restart request) was cut short and is resumed now.
        self.finishing_restart: set[str] = set()

    def host(self, name: str) -> HostStatus:
        """The status entry of a host (the planner wrote one for every host)."""
        entry = self.recorder.status.host(name)
        assert entry is not None, name
        return entry

    def record_intent(self, actions: list[Action]) -> None:
        """Write what is about to happen on each host before doing it (changes status in memory)."""
        for action in actions:
            if action.kind not in INTENT_PHASE:
                continue
            if self.host(action.host).action == ActionKind.RESTART.value:
                self.finishing_restart.add(action.host)  # resumed: it completes the restart request
            started = ActionStarted(action.kind, self.spec.version)
            message = f"{action.kind.value.lower()} starting"
            self.recorder.apply(HostEvent(action.host, message, outcome_phase(started), outcome=started))

    def once_first(self, actions: list[Action]) -> Action | None:
        """The publish that must run `once` hooks alone before any other host publishes, if any (pure).

        That is the primary host's first publish of a version no host runs yet, when there are `once` hooks.
        """
        if not any(h.once for h in (*self.spec.hooks.before_publish, *self.spec.hooks.after_publish)):
            return None
        if any(h.version == self.spec.version for h in self.recorder.status.hosts):
            return None
        primary = self.spec.primary_host
        return next((a for a in actions if a.kind == ActionKind.PUBLISH and a.host == primary), None)

    async def run_one(
        self, action: Action, driver: HostDriver, *, run_once_hooks: bool = False, began: str | None = None
    ) -> None:
        """Run one action and record its outcome; host errors are recorded, not raised (network I/O).

        `began` is the token of the action marker already written (with the lock's confirmation).
        """
        try:
            await self._dispatch(action, driver, run_once_hooks, began)
        except Exception as exc:  # one host's unexpected error fails that host, not the rollout
            self._failed(action, as_host_error(action.host, exc))

    async def _dispatch(self, action: Action, driver: HostDriver, run_once_hooks: bool, began: str | None) -> None:
        """Mark the action on its host, call the driver method for it and record success (network I/O)."""
        if action.kind not in INTENT_PHASE:
            await self._act(action, driver, run_once_hooks)
            return
        token = began if began is not None else await driver.begin_action(self.owner, self.underway(action))
        await self._act(action, driver, run_once_hooks)
        # The host's marker goes once the status recording this success is saved: in between, a run
        # started after a kill resumes the action, which finds the host done, rather than redo it.
        self.recorder.after_next_save(lambda: driver.end_action(self.owner, token))

    def underway(self, action: Action) -> Underway:
        """What the host's marker says of an action about to start (pure)."""
        return Underway(action.kind, self.spec.version, self.host(action.host).previous_release)

    async def _act(self, action: Action, driver: HostDriver, run_once_hooks: bool) -> None:
        """Call the driver method for an action and record success (network I/O)."""
        name, spec = action.host, self.spec
        if action.kind == ActionKind.UPDATE:
            self.emit(HostEvent(name, f"fetching {spec.version}", HostPhase.UPDATING))
            release = await driver.update(spec, self.emit)
            self.emit(HostEvent(name, f"release {release} ready", HostPhase.UPDATED))
            self.updated.add(name)
        elif action.kind == ActionKind.PUBLISH:
            found = self.verified[name] = await driver.publish(spec, self.emit, run_once_hooks=run_once_hooks)
            token = self.desired.restart_token if name in self.finishing_restart else None
            done = f"ready on {spec.version}"
            self._ready(name, done, action.kind, version=spec.version, restarted_for=token, stopped=found.stopped)
        elif action.kind == ActionKind.ROLLBACK:
            release = await driver.rollback(spec, self.emit, release=self.host(name).previous_release)
            # The release rolled back to may hold any earlier version: the next reading says which.
            self._ready(name, f"rolled back to release {release}", action.kind, version=None)
        else:
            stopped = await driver.restart(spec, self.emit, keep_running=action.kind == ActionKind.HEAL)
            token = self.desired.restart_token if action.kind == ActionKind.RESTART else None
            done = "services restarted"
            self._ready(name, done, action.kind, version=spec.version, restarted_for=token, stopped=stopped or ())

    def _ready(
        self,
        name: str,
        message: str,
        kind: ActionKind,
        *,
        version: str | None,
        restarted_for: str | None = None,
        stopped: tuple[str, ...] = (),
    ) -> None:
        """Record that a host finished an action and is ready (changes status in memory)."""
        outcome = ActionSucceeded(kind, self.clock(), version=version, restarted_for=restarted_for, stopped=stopped)
        if stopped:
            message += f"; {stopped_note(stopped)}"
        self.emit(HostEvent(name, message, outcome_phase(outcome), reason=Reason.HOST_READY, outcome=outcome))

    def _failed(self, action: Action, exc: HostError) -> None:
        """Record a failed action: transient errors leave the intent for a retry (changes status in memory)."""
        # Whether to retry is said by the error's type, never by its reason.
        outcome = ActionFailed(action.kind, self.spec.version, transient=exc.transient)
        phase = outcome_phase(outcome)
        self.emit(HostEvent(action.host, exc.message, phase, reason=exc.reason, warning=True, outcome=outcome))
