"""How the planner sees each host: its phase, readiness, availability and what it needs (pure)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import HostPhase, HostStatus, Reason, ReleaseStatus, format_time, parse_time
from kapistrano.plan.budget import surges
from kapistrano.plan.model import ActionKind, HostObservation, Underway
from kapistrano.plan.outcomes import INTENT_PHASE, ActionStarted, apply_outcome, apply_progress, stopped_note

#: Actions the engine records before acting (in the status, and on the host as its action marker);
#: seeing one on a fresh start means the action was interrupted and the host must be published again.
RESUMABLE_ACTIONS = frozenset({ActionKind.PUBLISH, ActionKind.RESTART, ActionKind.HEAL, ActionKind.REVIVE})
FAILED_PHASES = frozenset({HostPhase.FAILED, HostPhase.ROLLED_BACK})
#: Host errors that retrying will not fix; they stall the Release.
TERMINAL_HOST_ERRORS = frozenset({Reason.HOST_KEY_MISMATCH, Reason.AUTH_FAILED, Reason.INTERNAL_ERROR})
#: A host whose liveness check kept passing this long after a liveness restart counts from zero again.
LIVENESS_RESET_SECONDS = 600.0


@dataclass(frozen=True)
class HostView:
    """One host as the planner reasons about it."""

    name: str
    obs: HostObservation
    prev: HostStatus | None
    phase: HostPhase
    on_desired: bool
    ready: bool
    ready_since: datetime | None
    available: bool
    in_flight: bool
    failed: bool
    #: The previous status described the rollout of this same spec.version.
    same_rollout: bool = True
    #: A rollback of this failed host was recorded as started and has not ended (it was interrupted).
    rolling_back: bool = False
    #: An action runs on the host right now: it holds a slot of the budget.
    busy: bool = False
    #: The host's roles, from the spec.
    roles: tuple[str, ...] = ()

    @property
    def actionable(self) -> bool:
        """The host can be acted on now (pure)."""
        return self.obs.reachable and self.obs.error_reason is None

    @property
    def unavailable(self) -> bool:
        """Counts against the maxUnavailable budget (pure)."""
        return not self.available

    @property
    def done(self) -> bool:
        """On spec.version, ready, and nothing left half-done (pure)."""
        return self.on_desired and self.ready and not self.in_flight and self.obs.services_on_current is not False


def _phase(obs: HostObservation, prev: HostStatus | None, keep_recorded: bool, on_desired: bool) -> HostPhase:
    """The host's phase from what was observed and what was recorded (pure)."""
    if not obs.reachable or obs.error_reason == Reason.UNREACHABLE:
        return HostPhase.UNREACHABLE
    if obs.error_reason == Reason.CONFLICT:
        return HostPhase.CONFLICT
    if obs.error_reason is not None:
        return HostPhase.FAILED
    if prev is not None and keep_recorded:
        return HostPhase(prev.phase)
    if on_desired:
        return HostPhase.READY if obs.ready else HostPhase.WAITING_READY
    return HostPhase.UPDATED if obs.has_desired_release else HostPhase.PENDING


def _ready_since(obs: HostObservation, prev: HostStatus | None, now: datetime) -> datetime | None:
    """Since when the host is ready on its version; None when ready since before we knew it (pure)."""
    if prev is None or (prev.ready and prev.version == obs.version and prev.ready_since is None):
        return None  # first sight of a ready host: it counts as available, like a long-running pod
    if prev.ready and prev.version == obs.version and prev.ready_since:
        return parse_time(prev.ready_since)
    return now


def view_host(
    spec: ReleaseSpec,
    obs: HostObservation,
    prev: HostStatus | None,
    same_rollout: bool,
    now: datetime,
    *,
    busy: bool = False,
    keeps_serving: bool = False,
) -> HostView:
    """Build the planner's view of one host; one acted on (busy, or an action begun) is not ready (pure).

    Unless `keeps_serving`: a host whose new instances start beside the old ones (StartFirst) serves
    all the while. An action the host says is under way (its marker) counts as recorded, whatever
    the status says: it was begun, so it is resumed, and the host holds a slot of the budget.
    """
    # A busy host's action is the engine's own, which the status it passes in records as it goes.
    underway = obs.underway if obs.reachable and not busy else None
    if underway is not None:
        prev = with_underway(prev, obs.name, underway, now)
        same_rollout = same_rollout or underway.version == spec.version
    if not obs.reachable and prev is not None:
        # An unreachable host keeps what we last knew of it, but cannot count as ready.
        obs = HostObservation(
            name=obs.name, reachable=False, version=prev.version, release=prev.release, probe=prev.probe,
            ready=False, error_reason=obs.error_reason or Reason.UNREACHABLE, error_message=obs.error_message,
        )  # fmt: skip
    on_desired = obs.version == spec.version
    failed = same_rollout and prev is not None and prev.failed_version == spec.version
    recorded = same_rollout and prev is not None and prev.action in RESUMABLE_ACTIONS
    in_flight = (recorded or underway is not None) and not failed
    rolling_back = failed and prev is not None and prev.action == ActionKind.ROLLBACK.value
    if (busy or in_flight or rolling_back) and not keeps_serving:
        obs = replace(obs, ready=False)  # its last reading predates the action, or the action was cut short
    phase = _phase(obs, prev, failed or in_flight, on_desired)
    ready = bool(obs.ready) and obs.reachable
    since = _ready_since(obs, prev, now) if ready else None
    min_ready = timedelta(seconds=spec.strategy.min_ready_seconds)
    available = ready and (since is None or since + min_ready <= now)
    return HostView(
        name=obs.name,
        obs=obs,
        prev=prev,
        phase=phase,
        on_desired=on_desired,
        ready=ready,
        ready_since=since,
        available=available,
        in_flight=in_flight,
        failed=failed,
        same_rollout=same_rollout,
        rolling_back=rolling_back,
        busy=busy,
    )


def with_underway(prev: HostStatus | None, name: str, underway: Underway, now: datetime) -> HostStatus:
    """The host's last status with the action its marker says was begun, as if its intent had been saved (pure).

    A rollback begun means the version failed on the host. A status that already records the action,
    or the failure of its version on the host (a failed action leaves its marker), is kept as it is.
    """
    base = prev or HostStatus(name=name)
    if base.action == underway.kind.value or base.failed_version == underway.version:
        return base
    message = f"{underway.kind.value.lower()} of {underway.version} was cut short"
    host = apply_progress(base, message, INTENT_PHASE[underway.kind], now)
    host = apply_outcome(host, ActionStarted(underway.kind, underway.version))
    if underway.kind == ActionKind.ROLLBACK:
        host = host.model_copy(update={"failed_version": underway.version})
    if underway.previous_release and base.action is None:
        host = host.model_copy(update={"previous_release": underway.previous_release})
    return host


def view_hosts(
    spec: ReleaseSpec,
    status: ReleaseStatus,
    observations: dict[str, HostObservation],
    now: datetime,
    busy: frozenset[str] = frozenset(),
) -> list[HostView]:
    """Views of every host in spec order (pure).

    Spec order is the rollout order: it is deterministic across restarts (so a resumed rollout picks
    the same next host) and it lets users put a canary first.
    """
    same_rollout = status.version == spec.version
    serving = surges(spec)
    views = []
    entries = {h.name: h for h in reversed(status.hosts)}  # as status.host(), which per host is quadratic
    for host in spec.hosts:
        obs = observations.get(host.name) or HostObservation(name=host.name, reachable=False)
        prev = entries.get(host.name)
        view = view_host(spec, obs, prev, same_rollout, now, busy=host.name in busy, keeps_serving=serving)
        views.append(replace(view, roles=tuple(host.roles)))
    return views


def restarts_in_a_row(prev_restarts: int, restarted_at: str | None, obs: HostObservation, now: datetime) -> int:
    """The liveness restarts in a row to record: reset once the check kept passing long enough (pure)."""
    if obs.services_live is not True or restarted_at is None:
        return prev_restarts
    return 0 if now - parse_time(restarted_at) >= timedelta(seconds=LIVENESS_RESET_SECONDS) else prev_restarts


def host_status(view: HostView, now: datetime) -> HostStatus:
    """The status entry to write for a host (pure)."""
    prev = view.prev
    changed = prev is None or prev.phase != view.phase
    stopped = prev.stopped if prev and view.same_rollout else []
    # A ready host's message is cleared, except for what its publish stopped.
    settled = stopped_note(stopped) if stopped else ""
    message = view.obs.error_message or (settled if prev is None or view.phase == HostPhase.READY else prev.message)
    return HostStatus(
        name=view.name,
        phase=view.phase,
        version=view.obs.version,
        release=view.obs.release,
        ready=view.ready,
        probe=view.obs.probe,
        stopped=stopped,
        orphans=list(view.obs.orphans) if view.obs.reachable else (prev.orphans if prev else []),
        ready_since=format_time(view.ready_since) if view.ready_since else None,
        attempts=prev.attempts if prev and view.same_rollout else 0,
        restarts=prev.restarts if prev else 0,
        liveness_restarts=restarts_in_a_row(prev.liveness_restarts, prev.liveness_restarted_at, view.obs, now)
        if prev
        else 0,
        liveness_restarted_at=prev.liveness_restarted_at if prev else None,
        restarted_for=prev.restarted_for if prev else None,
        action=prev.action if prev and (view.in_flight or view.rolling_back) else None,
        failed_version=prev.failed_version if prev and view.failed else None,
        rollback_failed=bool(prev and view.failed and prev.rollback_failed),
        previous_release=prev.previous_release if prev else None,
        roles=list(view.roles),
        message=message,
        last_transition_time=format_time(now) if changed or prev is None else prev.last_transition_time,
    )
