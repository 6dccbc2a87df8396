"""The planner: observed hosts + spec + previous status -> next actions + status to write (pure).

No I/O, no clock reads, no SSH or Kubernetes imports: the engine (and tests) pass everything in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import HistoryEntry, Phase, ReleaseStatus, format_time, parse_time
from kapistrano.plan import actions as act
from kapistrano.plan import conditions
from kapistrano.plan.budget import available_required
from kapistrano.plan.conditions import FALSE, TERMINAL_REASONS, TRUE, Wanted, merge_conditions, stalled_conditions
from kapistrano.plan.hosts import TERMINAL_HOST_ERRORS, HostView, host_status, view_hosts
from kapistrano.plan.model import Action, ActionKind, Plan, PlanInput


def _failed_version(spec: ReleaseSpec, status: ReleaseStatus, views: list[HostView]) -> str | None:
    """spec.version when a host failed on it in this rollout; a failure of another version is forgotten (pure)."""
    if status.failed_version == spec.version or any(v.failed for v in views):
        return spec.version
    return None


def _stall(views: list[HostView], failed: str | None) -> tuple[str, str] | None:
    """(reason, message) of a problem that needs a human, or None (pure)."""
    if failed is not None:
        bad = [v for v in views if v.failed]
        detail = "; ".join(f"{v.name}: {v.prev.message if v.prev else ''}".rstrip(": ") for v in bad)
        return "HostFailed", f"version {failed} failed and was not rolled out further" + (
            f" ({detail})" if detail else ""
        )
    for v in views:
        if v.obs.error_reason in TERMINAL_HOST_ERRORS | {"Conflict"}:
            return str(v.obs.error_reason), f"{v.name}: {v.obs.error_message}"
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
    history = [entry, *[h for h in status.history if h.version != spec.version]]
    return spec.version, history[: spec.revision_history_limit]


def _choose_actions(inp: PlanInput, views: list[HostView], gate: act.Gate) -> list[Action]:
    """All actions to run now, at most one per host (pure)."""
    chosen = act.rollbacks(inp.spec, views)
    if not gate.failed and not gate.paused:
        chosen += act.updates(views)
    chosen += act.publishes(inp.spec, views, gate)
    busy = {a.host for a in chosen}
    if not gate.failed:
        chosen += act.heals(inp.spec, views, busy)
    if not chosen and all(v.done for v in views) and not gate.paused:
        chosen += act.restarts(inp.spec, views, inp.restart_token)
    order = {v.name: i for i, v in enumerate(views)}
    return sorted(chosen, key=lambda a: order[a.host])


def _canary_reached(spec: ReleaseSpec, views: list[HostView]) -> bool:
    """pauseAfterHosts hosts are on the version and more remain (pure)."""
    limit = spec.strategy.pause_after_hosts
    on = sum(v.on_desired for v in views)
    return limit is not None and on >= limit and on < len(views)


def _message(
    views: list[HostView], complete: bool, stall: tuple[str, str] | None, gate: act.Gate, rolling_back: list[str]
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
    spec, now = inp.spec, inp.now
    views = view_hosts(spec, inp.status, inp.observations, now, inp.busy)
    failed = _failed_version(spec, inp.status, views)
    gate = act.Gate(paused=spec.paused, canary_reached=_canary_reached(spec, views), failed=failed is not None)
    chosen = [a for a in _choose_actions(inp, views, gate) if a.host not in inp.busy]
    complete = all(v.done for v in views)
    stall = _stall(views, failed)
    rolling_back = _rolling_back(inp, views, chosen)
    if stall is not None and stall[0] == "HostFailed" and rolling_back:
        stall = None  # Stalled means failed AND rolled back: nothing is left to do but wait for a human
    hosts = [host_status(v, now) for v in views]
    progress = _progress_time(inp, {h.name: (str(h.phase), h.version, h.ready) for h in hosts})
    deadline_hit = (
        not complete and not gate.holds_new_hosts and now - progress > timedelta(seconds=spec.progress_deadline_seconds)
    )
    if stall is None and deadline_hit:
        stall = ("ProgressDeadlineExceeded", f"no host progressed for {spec.progress_deadline_seconds}s")
    current_version, history = _history(spec, inp.status, complete, now)
    insecure = spec.ssh.insecure_skip_host_key_check
    counts = _counts(views)
    message = _message(views, complete, stall, gate, rolling_back)
    wanted = _conditions(
        inp, views=views, complete=complete, stall=stall, gate=gate, message=message, rolling_back=bool(rolling_back)
    )
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
        stalled_reason=stall[0] if stall and stall[0] in TERMINAL_REASONS | {"Conflict"} else None,
    )


def _rolling_back(inp: PlanInput, views: list[HostView], chosen: list[Action]) -> list[str]:
    """Failed hosts whose rollback is about to run or running (pure)."""
    starting = {a.host for a in chosen if a.kind == ActionKind.ROLLBACK}
    return [v.name for v in views if v.name in starting or (v.failed and v.name in inp.busy)]


def _counts(views: list[HostView]) -> tuple[int, int, int]:
    """(updated, ready, available) host counts (pure)."""
    return sum(v.on_desired for v in views), sum(v.ready for v in views), sum(v.available for v in views)


def _restarted_at(inp: PlanInput, views: list[HostView]) -> str | None:
    """The restart request once every host completed it (pure)."""
    token = inp.restart_token
    if token is not None and all(v.prev is not None and v.prev.restarted_for == token for v in views):
        return token
    return inp.status.restarted_at


def _phase(views: list[HostView], complete: bool, stall: tuple[str, str] | None, gate: act.Gate) -> Phase:
    """The Release phase (pure)."""
    if stall is not None:
        return Phase.FAILED if stall[0] in TERMINAL_REASONS else Phase.DEGRADED
    if complete:
        return Phase.READY
    if gate.paused or gate.canary_reached:
        return Phase.PAUSED
    if not any(v.obs.reachable for v in views):
        return Phase.PENDING
    if all(v.on_desired for v in views):
        return Phase.DEGRADED  # every host is on the version but some service is down: drift
    return Phase.PROGRESSING


def _conditions(
    inp: PlanInput,
    *,
    views: list[HostView],
    complete: bool,
    stall: tuple[str, str] | None,
    gate: act.Gate,
    message: str,
    rolling_back: bool = False,
) -> list[Wanted]:
    """The kstatus conditions for this status (pure)."""
    spec = inp.spec
    required = available_required(spec.strategy.max_unavailable, len(views))
    available = sum(v.available for v in views)
    avail = (
        Wanted("Available", TRUE, "MinimumHostsAvailable", f"{available}/{len(views)} hosts available")
        if available >= required
        else Wanted("Available", FALSE, "MinimumHostsUnavailable", f"{available}/{len(views)} hosts available")
    )
    drifted = [v.name for v in views if v.on_desired and v.obs.ready is False and not v.in_flight and not v.failed]
    drift = (
        Wanted("Drifted", TRUE, "ServiceDown", "services down on " + ", ".join(drifted))
        if drifted and all(v.on_desired for v in views)
        else Wanted("Drifted", FALSE, "AsExpected")
    )
    if stall is not None:
        progressing = Wanted(
            "Progressing", FALSE, "ProgressDeadlineExceeded" if stall[0] == "ProgressDeadlineExceeded" else stall[0]
        )
        return [*stalled_conditions(stall[0], stall[1]), progressing, avail, drift]
    if complete:
        return [
            Wanted("Ready", TRUE, "RolledOut", message),
            Wanted("Reconciling", FALSE, "RolledOut"),
            Wanted("Stalled", FALSE, "AsExpected"),
            Wanted("Progressing", TRUE, "RolloutComplete", f"version {spec.version} is on every host"),
            avail,
            drift,
        ]
    reason = "RollingBack" if rolling_back else "Paused" if gate.paused or gate.canary_reached else "RollingOut"
    return [
        Wanted("Ready", FALSE, reason, message),
        Wanted("Reconciling", TRUE, reason, message),
        Wanted("Stalled", FALSE, "AsExpected"),
        Wanted("Progressing", TRUE, "HostUpdated" if any(v.on_desired for v in views) else "NewRollout"),
        avail,
        drift,
    ]
