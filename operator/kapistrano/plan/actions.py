"""Which hosts to act on next, within the unavailability budget (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kapistrano.api.spec import DriftPolicy, OnFailure, ReleaseSpec
from kapistrano.plan.budget import max_unavailable, surges
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

    A rollback restarts processes, so it takes a slot of the budget like any other restart (the slot
    its failed publish just gave back). One that was interrupted after switching `current` back is
    finished: its processes may still run the failed release.
    """
    if spec.strategy.on_failure != OnFailure.ROLLBACK:
        return []
    candidates = [
        v
        for v in views
        if v.failed and v.actionable and _left_on_failed_release(v) and not (v.prev and v.prev.rollback_failed)
    ]
    return [Action(ActionKind.ROLLBACK, v.name, "new release failed") for v in within_budget(spec, views, candidates)]


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
    """On the version but a service process is gone: drift (pure).

    Only a dead process is healed (and processes the spec no longer names are stopped). A process
    that is alive but fails readiness is reported and left alone, as a kubelet removes an unready
    pod from service without restarting it: a shared dependency going down must not restart every
    worker of the fleet.
    """
    settled = v.actionable and v.on_desired and not v.in_flight and not v.failed
    return settled and (v.obs.services_running is False or bool(v.obs.orphans))


@dataclass
class _Pool:
    """One budget: the hosts it covers, how many may be acted on, and how many are acted on or down."""

    hosts: frozenset[str]
    budget: int
    acting: int
    down: int

    def admits(self, c: HostView) -> bool:
        """Whether acting on `c` keeps this pool within its budget (pure)."""
        if c.name not in self.hosts:
            return True
        return self.acting < self.budget and (not c.ready or self.down < self.budget)

    def take(self, c: HostView) -> None:
        """Count `c` as acted on (changes the pool only)."""
        if c.name in self.hosts:
            self.acting += 1
            self.down += c.ready and c.available  # a ready host not yet available is already counted


def _holding(v: HostView, taken: frozenset[str], candidates: frozenset[str]) -> bool:
    """The host holds a budget slot: its action runs, was just chosen, or was begun and is not resumed now (pure)."""
    return v.busy or v.name in taken or (v.in_flight and v.name not in candidates)


def _pools(spec: ReleaseSpec, views: list[HostView], taken: frozenset[str], candidates: frozenset[str]) -> list[_Pool]:
    """The Release's budget and one per role with a budget of its own (pure)."""
    groups = [(frozenset(v.name for v in views), spec.strategy.max_unavailable)]
    for role, strategy in spec.strategy.roles.items():
        members = frozenset(v.name for v in views if role in v.roles)
        if members:
            groups.append((members, strategy.max_unavailable))
    return [
        _Pool(
            hosts,
            max_unavailable(value, len(hosts)),
            sum(_holding(v, taken, candidates) for v in views if v.name in hosts),
            sum(v.unavailable or v.name in taken for v in views if v.name in hosts),
        )
        for hosts, value in groups
    ]


def within_budget(
    spec: ReleaseSpec, views: list[HostView], candidates: list[HostView], taken: frozenset[str] = frozenset()
) -> list[HostView]:
    """Candidates that may start now, hosts already chosen in this plan (`taken`) counted (pure).

    Two bounds, whatever the probes say: no more than maxUnavailable hosts are acted on at once (an
    action stops, restarts or rolls back live processes), and no more than maxUnavailable hosts are
    unavailable; both for the Release and for each role with a budget of its own. A host that is
    not ready is already unavailable, so it goes first (as Kubernetes replaces unhealthy pods first)
    and costs only its action slot. A ready host inside minReadySeconds does serve: taking it down
    needs room like any other. With StartFirst services a host keeps serving while it is replaced:
    maxSurge alone bounds how many go at once. A host whose action was begun and cut short (a run
    killed) holds its slot until that action is resumed.
    """
    candidates = [c for c in candidates if not c.busy]  # its action runs: it has its slot
    named = frozenset(c.name for c in candidates)
    if surges(spec):
        room = max_unavailable(spec.strategy.max_surge, len(views)) - sum(_holding(v, taken, named) for v in views)
        return candidates[: max(0, room)]
    pools = _pools(spec, views, taken, named)
    chosen = []
    for c in sorted(candidates, key=lambda c: c.ready):  # stable: spec order within each group
        if all(pool.admits(c) for pool in pools):
            for pool in pools:
                pool.take(c)
            chosen.append(c)
    return chosen


def publishes(
    spec: ReleaseSpec, views: list[HostView], gate: Gate, taken: frozenset[str] = frozenset()
) -> list[Action]:
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
    if spec.once_hooks and not any(v.on_desired or v.in_flight for v in views):
        # The migrations run on the primary host, before any other host restarts.
        fresh = [v for v in fresh if v.name == spec.primary_host]
    chosen = within_budget(spec, views, interrupted + fresh, taken)
    return [Action(_resumed_as(v), v.name, "resume" if v.in_flight else "publish") for v in chosen]


def _resumed_as(v: HostView) -> ActionKind:
    """How a host's action is carried on: a restart cut short before it replaced every process it
    judges is made again (a resume keeps what runs from the release); anything else is published (pure)."""
    restart = v.in_flight and v.on_desired and v.prev is not None and v.prev.action == ActionKind.RESTART.value
    # A host not on the spec's version is published to it: that restarts it once, for both.
    return ActionKind.RESTART if restart and v.obs.restarted_since_mark is False else ActionKind.PUBLISH


def heals(spec: ReleaseSpec, views: list[HostView], busy: set[str], taken: frozenset[str]) -> list[Action]:
    """Hosts whose services died on the current version, when the policy is Heal (pure)."""
    if spec.drift_policy != DriftPolicy.HEAL:
        return []
    candidates = [v for v in views if _needs_heal(v) and v.name not in busy]
    chosen = within_budget(spec, views, candidates, taken)
    return [Action(ActionKind.HEAL, v.name, "orphans" if v.obs.orphans else "service down") for v in chosen]


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
