"""The planner: observed hosts + spec + previous status -> next actions + status to write (pure).

No I/O, no clock reads, no SSH or Kubernetes imports: the engine (and tests) pass everything in.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import (
    ConditionType,
    HistoryEntry,
    HostPhase,
    Phase,
    Reason,
    ReleaseStatus,
    format_time,
    parse_time,
)
from kapistrano.plan import actions as act
from kapistrano.plan import conditions, liveness, requests
from kapistrano.plan.budget import available_required, max_unavailable
from kapistrano.plan.conditions import FALSE, TERMINAL_REASONS, TRUE, Wanted, merge_conditions, stalled_conditions
from kapistrano.plan.hosts import TERMINAL_HOST_ERRORS, HostView, host_status, view_hosts
from kapistrano.plan.model import Action, ActionKind, Plan, PlanInput
from kapistrano.plan.retry import with_retry

#: Why the rollout cannot go on by itself, and the message saying so.
Stall = tuple[Reason, str]


def _failed_version(spec: ReleaseSpec, status: ReleaseStatus, views: list[HostView]) -> str | None:
    """spec.version when a host failed on it in this rollout; a failure of another version is forgotten (pure)."""
    if status.failed_version == spec.version or any(v.failed for v in views):
        return spec.version
    return None


def _stall(views: list[HostView], failed: str | None) -> Stall | None:
    """(reason, message) of a problem that needs a human, or None (pure)."""
    if failed is not None:
        bad = [v for v in views if v.failed]
        detail = "; ".join(f"{v.name}: {v.prev.message if v.prev else ''}".rstrip(": ") for v in bad)
        return Reason.HOST_FAILED, f"version {failed} failed and was not rolled out further" + (
            f" ({detail})" if detail else ""
        )
    for v in views:
        reason = v.obs.error_reason
        if reason is not None and reason in TERMINAL_HOST_ERRORS | {Reason.CONFLICT}:
            return reason, f"{v.name}: {v.obs.error_message}"
    return None


def _progress_time(inp: PlanInput, statuses: dict[str, tuple[str, str | None, bool]]) -> datetime:
    """When a host last moved: now if anything changed since the previous status (pure)."""
    prev = inp.status
    before = {h.name: (str(h.phase), h.version, h.ready) for h in prev.hosts}
    if prev.last_progress_time is None or prev.observed_generation != inp.generation or before != statuses:
        return inp.now
    return parse_time(prev.last_progress_time)


def _history(
    spec: ReleaseSpec, status: ReleaseStatus, complete: bool, now: datetime
) -> tuple[str | None, list[HistoryEntry]]:
    """currentVersion and history, with spec.version added once it is complete everywhere (pure)."""
    if not complete or status.current_version == spec.version:
        return status.current_version, status.history
    entry = HistoryEntry(version=spec.version, completed_at=format_time(now))
    history = [entry, *[h for h in status.history if h.version != spec.version or h.request is not None]]
    return spec.version, requests.trimmed(history, spec.revision_history_limit)


def _choose_actions(inp: PlanInput, views: list[HostView], gate: act.Gate) -> list[Action]:
    """All actions to run now, at most one per host (pure)."""
    chosen = act.rollbacks(inp.spec, views)
    if not gate.failed and not gate.paused:
        chosen += act.updates(views)
    chosen += act.publishes(inp.spec, views, gate, _disruptive(chosen))
    busy = {a.host for a in chosen}
    if not gate.failed:
        chosen += act.heals(inp.spec, views, busy, _disruptive(chosen))
        busy |= {a.host for a in chosen}
        chosen += liveness.revives(inp.spec, views, busy, _disruptive(chosen), inp.now)
    if not chosen and all(v.done for v in views) and not gate.paused:
        chosen += act.restarts(inp.spec, views, inp.restart_token)
    order = {v.name: i for i, v in enumerate(views)}
    return sorted(chosen, key=lambda a: order[a.host])


def _disruptive(chosen: list[Action]) -> frozenset[str]:
    """Hosts whose chosen action touches live processes (all but fetching a release) (pure)."""
    return frozenset(a.host for a in chosen if a.kind != ActionKind.UPDATE)


def _canary_reached(spec: ReleaseSpec, views: list[HostView]) -> bool:
    """pauseAfterHosts hosts are on the version and more remain (pure)."""
    limit = spec.strategy.pause_after_hosts
    on = sum(v.on_desired for v in views)
    return limit is not None and on >= limit and on < len(views)


def _holding(spec: ReleaseSpec, views: list[HostView], now: datetime) -> str:
    """Which unreachable hosts the rollout waits for, and whether they use the budget; "" when none (pure)."""
    away = [v for v in views if v.phase == HostPhase.UNREACHABLE]
    if not away:
        return ""
    since = [v.prev.last_transition_time if v.prev and v.prev.phase == HostPhase.UNREACHABLE else None for v in away]
    said = ", ".join(
        f"{v.name} unreachable since {parse_time(t).strftime('%H:%M:%S') if t else now.strftime('%H:%M:%S')}"
        for v, t in zip(away, since, strict=True)
    )
    budget = max_unavailable(spec.strategy.max_unavailable, len(views))
    others = sum(v.unavailable for v in views) - len(away)
    if others + len(away) < budget:
        return said
    uses = "it uses" if len(away) == 1 else "they use"
    return f"{said}: {uses} the budget of {budget}" + (f" with {others} more host(s) down" if others else "")


def _message(
    views: list[HostView], complete: bool, stall: Stall | None, gate: act.Gate, rolling_back: list[str]
) -> str:
    """One line saying what is going on (pure)."""
    updated = sum(v.on_desired for v in views)
    if stall:
        return stall[1]
    if rolling_back:
        return f"new version failed: rolling back {', '.join(rolling_back)}"
    if complete:
        return f"{len(views)}/{len(views)} hosts ready"
    if gate.paused:
        return f"paused: {updated}/{len(views)} hosts updated"
    if gate.canary_reached:
        return f"paused after {updated} hosts (pauseAfterHosts): raise or clear it to go on"
    return f"{updated}/{len(views)} hosts updated"


def plan(inp: PlanInput) -> Plan:
    """Decide the next actions and the status to write (pure)."""
    inp = with_retry(inp)
    spec, now = inp.spec, inp.now
    views = view_hosts(spec, inp.status, inp.observations, now, inp.busy)
    failed = _failed_version(spec, inp.status, views)
    gate = act.Gate(paused=spec.paused, canary_reached=_canary_reached(spec, views), failed=failed is not None)
    chosen = [a for a in _choose_actions(inp, views, gate) if a.host not in inp.busy]
    complete = all(v.done for v in views)
    stall = _stall(views, failed)
    rolling_back = _rolling_back(inp, views, chosen)
    if stall is not None and stall[0] == Reason.HOST_FAILED and rolling_back:
        stall = None  # Stalled means failed AND rolled back: nothing is left to do but wait for a human
    stall = stall or _drift_stall(views, chosen, inp.busy)
    hosts = [host_status(v, now) for v in views]
    progress = _progress_time(inp, {h.name: (str(h.phase), h.version, h.ready) for h in hosts})
    deadline_hit = (
        not complete and not gate.holds_new_hosts and now - progress > timedelta(seconds=spec.progress_deadline_seconds)
    )
    held = _holding(spec, views, now)
    if stall is None and deadline_hit:
        why = f"no host progressed for {spec.progress_deadline_seconds}s" + (f": {held}" if held else "")
        stall = (Reason.PROGRESS_DEADLINE_EXCEEDED, why)
    current_version, history = _history(spec, inp.status, complete, now)
    insecure = spec.ssh.insecure_skip_host_key_check
    counts = _counts(views)
    healing = _healing(inp, views, chosen)
    message = _message(views, complete, stall, gate, rolling_back) if not healing else "healing " + ", ".join(healing)
    if held and stall is None and not complete:
        message += f"; {held}"  # what the rollout waits for
    wanted = _conditions(
        inp, views=views, complete=complete, stall=stall, gate=gate, message=message, rolling_back=bool(rolling_back)
    )
    if healing and stall is None:
        wanted[:2] = [replace(w, reason=Reason.HEALING) for w in wanted[:2]]  # Ready and Reconciling
    status = ReleaseStatus(
        observed_generation=inp.generation,
        phase=_phase(views, complete, stall, gate),
        version=spec.version,
        current_version=current_version,
        failed_version=failed,
        hosts_total=len(views),
        hosts_updated=counts[0],
        hosts_ready=counts[1],
        hosts_available=counts[2],
        ready=f"{sum(v.on_desired and v.ready for v in views)}/{len(views)}",
        message=message,
        last_progress_time=format_time(progress),
        restarted_at=_restarted_at(inp, views),
        retries=inp.status.retries,
        retried_for=inp.status.retried_for,
        **requests.carried(inp.status),
        hosts=hosts,
        conditions=merge_conditions(
            inp.status.conditions, [*wanted, conditions.host_keys_condition(insecure)], inp.generation, now
        ),
        host_keys_verified=not insecure,
        history=history,
    )
    return Plan(
        actions=chosen,
        status=status,
        wait_seconds=act.next_wake(spec, views, now),
        complete=complete,
        stalled_reason=stall[0] if stall and stall[0] in TERMINAL_REASONS | {Reason.CONFLICT} else None,
    )


def _rolling_back(inp: PlanInput, views: list[HostView], chosen: list[Action]) -> list[str]:
    """Failed hosts whose rollback is about to run or running (pure)."""
    starting = {a.host for a in chosen if a.kind == ActionKind.ROLLBACK}
    return [v.name for v in views if v.name in starting or (v.failed and v.name in inp.busy)]


def _healing(inp: PlanInput, views: list[HostView], chosen: list[Action]) -> list[str]:
    """Hosts whose heal is about to run or running (pure)."""
    starting = {a.host for a in chosen if a.kind == ActionKind.HEAL}
    running = {v.name for v in views if v.name in inp.busy and v.prev is not None and v.prev.action == ActionKind.HEAL}
    return [v.name for v in views if v.name in starting | running]


def _counts(views: list[HostView]) -> tuple[int, int, int]:
    """(updated, ready, available) host counts (pure)."""
    return sum(v.on_desired for v in views), sum(v.ready for v in views), sum(v.available for v in views)


def _restarted_at(inp: PlanInput, views: list[HostView]) -> str | None:
    """The restart request once every host completed it (pure)."""
    token = inp.restart_token
    if token is not None and all(v.prev is not None and v.prev.restarted_for == token for v in views):
        return token
    return inp.status.restarted_at


def _phase(views: list[HostView], complete: bool, stall: Stall | None, gate: act.Gate) -> Phase:
    """The Release phase (pure)."""
    if stall is not None:
        return Phase.FAILED if stall[0] in TERMINAL_REASONS else Phase.DEGRADED
    if complete:
        return Phase.READY
    if gate.paused or gate.canary_reached:
        return Phase.PAUSED
    if not any(v.obs.reachable for v in views):
        return Phase.PENDING
    return Phase.PROGRESSING  # drift nobody acts on is a stall (Drifted); drift being healed progresses


def _available(spec: ReleaseSpec, views: list[HostView]) -> Wanted:
    """The Available condition: enough hosts serve for the maxUnavailable budget (pure)."""
    required = available_required(spec.strategy.max_unavailable, len(views))
    available = sum(v.available for v in views)
    counted = f"{available}/{len(views)} hosts available"
    if available >= required:
        return Wanted(ConditionType.AVAILABLE, TRUE, Reason.MINIMUM_HOSTS_AVAILABLE, counted)
    return Wanted(ConditionType.AVAILABLE, FALSE, Reason.MINIMUM_HOSTS_UNAVAILABLE, counted)


def _drift_stall(views: list[HostView], chosen: list[Action], busy: frozenset[str]) -> Stall | None:
    """Drift that no action is fixing (driftPolicy Report, or live but unready services) (pure)."""
    drift = _drifted(views)
    if drift.status != TRUE or chosen or busy:
        return None
    return Reason.DRIFTED, drift.message


def _drifted(views: list[HostView]) -> Wanted:
    """The Drifted condition: processes the spec no longer names, or a service down on the version (pure)."""
    orphaned = [f"{v.name}: {', '.join(v.obs.orphans)}" for v in views if v.obs.orphans]
    if orphaned:
        message = "processes the spec no longer names run on " + "; ".join(orphaned)
        return Wanted(ConditionType.DRIFTED, TRUE, Reason.ORPHANS_RUNNING, message)
    drifted = [
        v for v in views if v.actionable and v.on_desired and v.obs.ready is False and not v.in_flight and not v.failed
    ]
    if not drifted or not all(v.on_desired for v in views):
        return Wanted(ConditionType.DRIFTED, FALSE, Reason.AS_EXPECTED)
    dead = [v.name for v in drifted if v.obs.services_running is False]
    if dead:
        return Wanted(ConditionType.DRIFTED, TRUE, Reason.SERVICE_DOWN, "services down on " + ", ".join(dead))
    unready = ", ".join(v.name for v in drifted)
    return Wanted(ConditionType.DRIFTED, TRUE, Reason.NOT_READY, "services running but not ready on " + unready)


def _conditions(
    inp: PlanInput,
    *,
    views: list[HostView],
    complete: bool,
    stall: Stall | None,
    gate: act.Gate,
    message: str,
    rolling_back: bool = False,
) -> list[Wanted]:
    """The kstatus conditions for this status (pure)."""
    spec = inp.spec
    avail, drift = _available(spec, views), liveness.drifted(spec, views, inp.now) or _drifted(views)
    if stall is not None:
        progressing = Wanted(ConditionType.PROGRESSING, FALSE, stall[0])
        return [*stalled_conditions(stall[0], stall[1]), progressing, avail, drift]
    if complete:
        everywhere = f"version {spec.version} is on every host"
        return [
            Wanted(ConditionType.READY, TRUE, Reason.ROLLED_OUT, message),
            Wanted(ConditionType.RECONCILING, FALSE, Reason.ROLLED_OUT),
            Wanted(ConditionType.STALLED, FALSE, Reason.AS_EXPECTED),
            Wanted(ConditionType.PROGRESSING, TRUE, Reason.ROLLOUT_COMPLETE, everywhere),
            avail,
            drift,
        ]
    held = gate.paused or gate.canary_reached
    reason = Reason.ROLLING_BACK if rolling_back else Reason.PAUSED if held else Reason.ROLLING_OUT
    progress = Reason.HOST_UPDATED if any(v.on_desired for v in views) else Reason.NEW_ROLLOUT
    return [
        Wanted(ConditionType.READY, FALSE, reason, message),
        Wanted(ConditionType.RECONCILING, TRUE, reason, message),
        Wanted(ConditionType.STALLED, FALSE, Reason.AS_EXPECTED),
        Wanted(ConditionType.PROGRESSING, TRUE, progress),
        avail,
        drift,
    ]
