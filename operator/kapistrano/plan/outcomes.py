"""What an action tells the status about its host, and the pure reducer that folds it in.

The engine reports each action as a typed outcome (started, succeeded, failed); `apply_outcome`
turns it into the host's next status entry. Which status fields an outcome changes is decided
here, in one place, so the planner reads back exactly what was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from kapistrano.api.status import HostPhase, HostStatus, format_time
from kapistrano.plan.model import ActionKind

#: The phase recorded before each disruptive action starts (intent before action; the host's marker says it first).
#: An update changes nothing the host serves, so it records no intent.
INTENT_PHASE = {
    ActionKind.PUBLISH: HostPhase.PUBLISHING,
    ActionKind.ROLLBACK: HostPhase.PUBLISHING,
    ActionKind.RESTART: HostPhase.RESTARTING,
    ActionKind.HEAL: HostPhase.RESTARTING,
    ActionKind.REVIVE: HostPhase.RESTARTING,
}


@dataclass(frozen=True)
class ActionStarted:
    """A disruptive action is about to start on the host (recorded before acting)."""

    kind: ActionKind
    #: spec.version the action is carried out for.
    version: str


@dataclass(frozen=True)
class ActionSucceeded:
    """The action ended with every service of the host ready."""

    kind: ActionKind
    #: When the host became ready.
    ready_since: datetime
    #: The version the host now runs; None when it is not known here (a rollback to an older release).
    version: str | None = None
    #: The restart request this action completed, if it was one.
    restarted_for: str | None = None
    #: Processes the action stopped because the spec no longer names them (orphans).
    stopped: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionFailed:
    """The action ended with an error on the host."""

    kind: ActionKind
    #: spec.version the action was carried out for.
    version: str
    #: Retrying later may help (the error's type says so): the recorded intent is kept for a retry.
    transient: bool


HostOutcome = ActionStarted | ActionSucceeded | ActionFailed


class HostChanges(TypedDict, total=False):
    """The HostStatus fields a host event may change, typed so that a misspelled one fails mypy."""

    action: str | None
    ready: bool
    ready_since: str
    attempts: int
    restarts: int
    version: str
    restarted_for: str
    previous_release: str | None
    stopped: list[str]
    liveness_restarts: int
    liveness_restarted_at: str
    failed_version: str
    rollback_failed: bool
    phase: HostPhase
    last_transition_time: str
    message: str


def stopped_note(stopped: tuple[str, ...] | list[str]) -> str:
    """What an action stopped because the spec no longer names it, in words (pure)."""
    return f"stopped {', '.join(stopped)}: no longer in the spec"


def outcome_phase(outcome: HostOutcome) -> HostPhase:
    """The host phase an outcome leads to (pure)."""
    if isinstance(outcome, ActionStarted):
        return INTENT_PHASE[outcome.kind]
    if isinstance(outcome, ActionSucceeded):
        return HostPhase.ROLLED_BACK if outcome.kind == ActionKind.ROLLBACK else HostPhase.READY
    return HostPhase.UNREACHABLE if outcome.transient else HostPhase.FAILED


def apply_progress(host: HostStatus, message: str, phase: HostPhase | None, now: datetime) -> HostStatus:
    """The host's entry with a progress message and, when it changes, the phase entered `now` (pure)."""
    changes: HostChanges = {"message": message}
    if phase is not None and phase != host.phase:
        changes["phase"] = phase
        changes["last_transition_time"] = format_time(now)
    return host.model_copy(update=dict(changes))


def apply_outcome(host: HostStatus, outcome: HostOutcome) -> HostStatus:
    """The host's status entry with an outcome folded in; `host` itself is left as it was (pure).

    Only the fields the action decides change here; its event's phase and message are applied
    first by apply_progress, as for every other host event.
    """
    if isinstance(outcome, ActionStarted):
        changes = _started(host, outcome)
    elif isinstance(outcome, ActionSucceeded):
        changes = _succeeded(host, outcome)
    else:
        changes = _failed(outcome)
    return host.model_copy(update=dict(changes))


def _started(host: HostStatus, outcome: ActionStarted) -> HostChanges:
    """Fields changed by an action's intent (pure)."""
    # The host stops counting as ready the moment its restart may begin.
    changes: HostChanges = {"action": outcome.kind.value, "ready": False}
    if outcome.kind == ActionKind.PUBLISH:
        changes["attempts"] = host.attempts + 1
        # Remember the release to roll back to, unless the host is already on the version or an
        # interrupted action is resumed: then `current` may already point at the new release.
        if host.version != outcome.version and host.action is None:
            changes["previous_release"] = host.release
    return changes


def _succeeded(host: HostStatus, outcome: ActionSucceeded) -> HostChanges:
    """Fields changed by an action that ended ready (pure)."""
    changes: HostChanges = {
        "action": None,
        "ready": True,
        "ready_since": format_time(outcome.ready_since),
        "restarts": host.restarts + 1,
        "stopped": list(outcome.stopped),
    }
    if outcome.version is not None:
        changes["version"] = outcome.version
    if outcome.restarted_for is not None:
        changes["restarted_for"] = outcome.restarted_for
    if outcome.kind == ActionKind.REVIVE:
        changes["liveness_restarts"] = host.liveness_restarts + 1
        changes["liveness_restarted_at"] = format_time(outcome.ready_since)
    return changes


def _failed(outcome: ActionFailed) -> HostChanges:
    """Fields changed by an action that failed (pure)."""
    if outcome.transient:
        return {}  # a recorded intent stays, so the action is resumed once the host answers
    changes: HostChanges = {"action": None, "ready": False}
    if outcome.kind in (ActionKind.UPDATE, ActionKind.PUBLISH):
        # The version itself is broken here (bad source, failing hook, never ready): stop the rollout.
        changes["failed_version"] = outcome.version
    elif outcome.kind == ActionKind.ROLLBACK:
        changes["rollback_failed"] = True  # retrying would fail the same way, over and over
    return changes
