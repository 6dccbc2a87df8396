"""Restarting a host whose liveness check fails (alive but stuck): one budget slot at a time, with backoff (pure).

Readiness never restarts anything; liveness does, as a kubelet restarts a container. Each restart in a
row waits twice as long as the one before (backoffSeconds, at most BACKOFF_CAP_SECONDS), and after
maxRestarts in a row the host is left alone and reported (Drifted, reason CrashLoop), so an outage of
a shared dependency does not restart the fleet forever. A host whose check keeps passing long
enough after its last liveness restart counts from zero again (plan.hosts.restarts_in_a_row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kapistrano.api.spec import DriftPolicy, ReleaseSpec
from kapistrano.api.status import ConditionType, Reason, parse_time
from kapistrano.plan.actions import within_budget
from kapistrano.plan.conditions import TRUE, Wanted
from kapistrano.plan.hosts import HostView
from kapistrano.plan.model import Action, ActionKind

BACKOFF_CAP_SECONDS = 300.0


@dataclass(frozen=True)
class Limits:
    """The strictest liveness settings among the spec's services."""

    backoff_seconds: float
    max_restarts: int


def limits(spec: ReleaseSpec) -> Limits | None:
    """The liveness limits of a spec; None when no service has a liveness check (pure)."""
    checks = [s.liveness for s in spec.services if s.liveness is not None]
    if not checks:
        return None
    return Limits(min(c.backoff_seconds for c in checks), min(c.max_restarts for c in checks))


def backoff(limit: Limits, restarts: int) -> timedelta:
    """How long to wait after `restarts` liveness restarts in a row before the next one (pure)."""
    if restarts < 1:
        return timedelta(0)
    return timedelta(seconds=min(BACKOFF_CAP_SECONDS, limit.backoff_seconds * 2 ** (restarts - 1)))


def _stuck(v: HostView) -> bool:
    """On the version, every process alive, and a liveness check failing (pure)."""
    settled = v.actionable and v.on_desired and not v.in_flight and not v.failed and not v.busy
    return settled and v.obs.services_running is not False and v.obs.services_live is False


def _due(limit: Limits, v: HostView, now: datetime) -> bool:
    """A stuck host may be restarted now: tries left and its backoff over (pure)."""
    done = v.prev.liveness_restarts if v.prev else 0
    if done >= limit.max_restarts:
        return False
    last = v.prev.liveness_restarted_at if v.prev else None
    return last is None or parse_time(last) + backoff(limit, done) <= now


def revives(
    spec: ReleaseSpec, views: list[HostView], busy: set[str], taken: frozenset[str], now: datetime
) -> list[Action]:
    """Stuck hosts to restart now, within the budget, when the policy is Heal (pure)."""
    limit = limits(spec)
    if limit is None or spec.drift_policy != DriftPolicy.HEAL:
        return []
    candidates = [v for v in views if v.name not in busy and _stuck(v) and _due(limit, v, now)]
    return [Action(ActionKind.REVIVE, v.name, "liveness failed") for v in within_budget(spec, views, candidates, taken)]


def drifted(spec: ReleaseSpec, views: list[HostView], now: datetime) -> Wanted | None:
    """The Drifted condition for hosts whose liveness check fails; None when none does (pure)."""
    limit = limits(spec)
    stuck = [v for v in views if v.obs.services_live is False]
    if limit is None or not stuck:
        return None
    given_up = [v.name for v in stuck if (v.prev.liveness_restarts if v.prev else 0) >= limit.max_restarts]
    if given_up:
        message = f"liveness still failing after {limit.max_restarts} restarts on {', '.join(given_up)}: left alone"
        return Wanted(ConditionType.DRIFTED, TRUE, Reason.CRASH_LOOP, message)
    waiting = ", ".join(v.name for v in stuck if not _due(limit, v, now))
    message = (
        "liveness failing on " + ", ".join(v.name for v in stuck) + (f" (backing off: {waiting})" if waiting else "")
    )
    return Wanted(ConditionType.DRIFTED, TRUE, Reason.LIVENESS_FAILED, message)
