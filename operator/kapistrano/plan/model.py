"""Inputs and outputs of the planner: what was observed, what to do next.

Everything here is plain data. The planner never reads a clock or a host; the engine gathers
observations, passes `now`, and carries out the actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import Reason, ReleaseStatus


@dataclass(frozen=True)
class HostObservation:
    """What the engine last saw on one host. Hosts are the source of truth; status only caches this."""

    name: str
    reachable: bool = True
    #: Version `current` points at (from .kapistrano-version), None when unknown or no release yet.
    version: str | None = None
    #: Release directory `current` points at.
    release: str | None = None
    #: A release directory for spec.version exists on the host (fetched, linked).
    has_desired_release: bool = False
    #: Every service passes readiness. None when not checked (e.g. unreachable).
    ready: bool | None = None
    #: Every service process is alive (liveness, apart from readiness). None when not checked.
    services_running: bool | None = None
    #: False when a service's liveness check failed failureThreshold times in a row (alive but stuck).
    services_live: bool | None = None
    #: Running service processes belong to the `current` release (None when it cannot be told).
    services_on_current: bool | None = None
    #: The readiness probes that judged the host: those recorded with the release it runs.
    probe: str | None = None
    #: Live processes kapistrano started that the host's release no longer names (orphans).
    orphans: tuple[str, ...] = ()
    #: Orphans the action that made this observation stopped.
    stopped: tuple[str, ...] = ()
    #: CamelCase reason of the last error on this host (Unreachable, HostKeyMismatch, Conflict...).
    error_reason: Reason | None = None
    error_message: str = ""
    #: An action of this Release begun on the host and not ended (the host's action marker).
    underway: Underway | None = None
    #: With an action marker that says when it was written: whether every live process the host is
    #: judged by started after it (a restart that got that far); None when unknown.
    restarted_since_mark: bool | None = None


@dataclass(frozen=True)
class PlanInput:
    """Everything the planner decides from."""

    spec: ReleaseSpec
    generation: int
    status: ReleaseStatus
    observations: dict[str, HostObservation]
    now: datetime
    #: Value of the restart request (kubectl kapistrano restart); None when there is none.
    restart_token: str | None = None
    #: Value of the retry request (kubectl kapistrano retry, apply --retry); None when there is none.
    retry_token: str | None = None
    #: Hosts with an action running right now: unavailable, and given no other action.
    busy: frozenset[str] = frozenset()


class ActionKind(StrEnum):
    """What the engine can do to a host."""

    UPDATE = "Update"  # fetch + link the release for spec.version (parallel, non-disruptive)
    PUBLISH = "Publish"  # hooks, switch current, restart services, readiness, minReady, hooks
    ROLLBACK = "Rollback"  # switch back to the previous release and restart, prove ready
    RESTART = "Restart"  # rolling restart without a version change (restart request)
    HEAL = "Heal"  # restart dead services on the current release (drift)
    REVIVE = "Revive"  # restart the services of a host whose liveness check fails (alive but stuck)


@dataclass(frozen=True)
class Underway:
    """An action of this Release that the host says was begun and has not ended (its action marker).

    Written on the host before the action touches anything, so it is there even when the deployer
    was killed before any status save said so.
    """

    kind: ActionKind
    #: spec.version the action was carried out for.
    version: str
    #: The release `current` pointed at before the action, when known (the rollback target).
    previous_release: str | None = None


@dataclass(frozen=True)
class Action:
    """One step for one host."""

    kind: ActionKind
    host: str
    reason: str = ""


@dataclass
class Plan:
    """The planner's answer: actions to run now, and the status to write."""

    actions: list[Action]
    status: ReleaseStatus
    #: When there is nothing to do now but time will change that (minReadySeconds), seconds to wait.
    wait_seconds: float | None = None
    #: The rollout of spec.version is complete on every host.
    complete: bool = False
    #: A terminal problem stops the rollout until the spec changes (HostFailed, InvalidSpec...).
    stalled_reason: Reason | None = None
