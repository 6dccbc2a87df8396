"""Which hosts to act on next, within the unavailability budget (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kapistrano.api.spec import DriftPolicy, OnFailure, ReleaseSpec
from kapistrano.plan.budget import max_unavailable
from kapistrano.plan.hosts import HostView
from kapistrano.plan.model import Action, ActionKind


@dataclass(frozen=True)
class Gate:
    """What holds the rollout back: pause, canary, a failed version."""

    paused: bool
    canary_reached: bool
    failed: bool

    @property
    def holds_new_hosts(self) -> bool:
        """No new host may start (pure)."""
        return self.paused or self.canary_reached or self.failed


def rollbacks(spec: ReleaseSpec, views: list[HostView]) -> list[Action]:
    """Failed hosts that still run (or half-run) the failed version go back, unless that failed too (pure).

    A rollback never costs budget: the host is already unavailable. One that was interrupted after
    switching `current` back is finished: its processes may still run the failed release.
    """
    if spec.strategy.on_failure != OnFailure.ROLLBACK:
        return []
    return [
        Action(ActionKind.ROLLBACK, v.name, "new release failed")
        for v in views
        if v.failed and v.actionable and _left_on_failed_release(v) and not (v.prev and v.prev.rollback_failed)
    ]


def _left_on_failed_release(v: HostView) -> bool:
    """The host may still run the failed release: current, its processes or an unfinished rollback (pure)."""
    return v.on_desired or not v.ready or v.rolling_back or v.obs.services_on_current is False


def updates(views: list[HostView]) -> list[Action]:
    """Hosts that need the release fetched: all of them at once, it disturbs nothing (pure)."""
    return [
        Action(ActionKind.UPDATE, v.name, "fetch release")
        for v in views
        if v.actionable and not v.on_desired and not v.obs.has_desired_release and not v.failed
    ]


def _needs_publish(v: HostView) -> bool:
    """The host must be (re)published: not on the version, or interrupted mid-publish (pure)."""
    if not v.actionable or v.failed:
        return False
    stale_processes = v.on_desired and v.obs.services_on_current is False
    return (not v.on_desired and v.obs.has_desired_release) or v.in_flight or stale_processes


def _needs_heal(v: HostView) -> bool:
    """On the version but a service is down: drift (pure)."""
    return v.actionable and v.on_desired and not v.in_flight and not v.failed and v.obs.ready is False


def within_budget(spec: ReleaseSpec, views: list[HostView], candidates: list[HostView]) -> list[HostView]:
    """Candidates that may start now without more than maxUnavailable hosts down (pure).

    Hosts already unavailable are counted against the budget. Acting on one that is not ready costs
    nothing more, so it may always proceed (like Kubernetes replacing an unhealthy pod first). One
    that is ready but still inside minReadySeconds does serve: taking it down needs room in the
    budget like any other, or a fleet that just became ready would be restarted all at once.
    """
    budget = max_unavailable(spec.strategy.max_unavailable, len(views))
    down = sum(v.unavailable for v in views)
    chosen = []
    for c in candidates:
        if not c.ready:
            chosen.append(c)
        elif down < budget:
            down += c.available  # a ready host not yet available is already counted
            chosen.append(c)
    return chosen


def publishes(spec: ReleaseSpec, views: list[HostView], gate: Gate) -> list[Action]:
    """Hosts to publish now, in spec order, within the budget and the canary limit (pure)."""
    if any(a.kind == ActionKind.UPDATE for a in updates(views)):
        return []  # updating runs on every host before any restart
    interrupted = [v for v in views if v.in_flight and _needs_publish(v)]
    fresh = [v for v in views if not v.in_flight and _needs_publish(v)]
    if gate.holds_new_hosts:
        fresh = []
    limit = spec.strategy.pause_after_hosts
    if limit is not None:
        started = sum(v.on_desired or v.in_flight for v in views)
        fresh = fresh[: max(0, limit - started)]
    chosen = within_budget(spec, views, interrupted + fresh)
    return [Action(ActionKind.PUBLISH, v.name, "resume" if v.in_flight else "publish") for v in chosen]


def heals(spec: ReleaseSpec, views: list[HostView], busy: set[str]) -> list[Action]:
    """Hosts whose services died on the current version, when the policy is Heal (pure)."""
    if spec.drift_policy != DriftPolicy.HEAL:
        return []
    candidates = [v for v in views if _needs_heal(v) and v.name not in busy]
    return [Action(ActionKind.HEAL, v.name, "service down") for v in within_budget(spec, views, candidates)]


def restarts(spec: ReleaseSpec, views: list[HostView], token: str | None) -> list[Action]:
    """Rolling restart without a version change, for a restart request (pure)."""
    if token is None:
        return []
    candidates = [v for v in views if v.done and v.actionable and (v.prev is None or v.prev.restarted_for != token)]
    return [Action(ActionKind.RESTART, v.name, "restart requested") for v in within_budget(spec, views, candidates)]


def next_wake(spec: ReleaseSpec, views: list[HostView], now: datetime) -> float | None:
    """Seconds until a ready host becomes available (minReadySeconds), if any is waiting (pure)."""
    waits = [
        (v.ready_since - now).total_seconds() + spec.strategy.min_ready_seconds
        for v in views
        if v.ready and not v.available and v.ready_since is not None
    ]
    return max(0.0, min(waits)) if waits else None
