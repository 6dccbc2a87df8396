"""Property tests of the planner: the budget is never exceeded, rollouts converge, failures stall."""

from __future__ import annotations

import ast
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import ReleaseStatus, format_time, parse_time
from kapistrano.plan import ActionKind, HostObservation, Plan, max_unavailable, plan

from .planfixtures import NOW, ago, make_input, make_spec, prev_status

DISRUPTIVE = {ActionKind.PUBLISH, ActionKind.RESTART, ActionKind.REVIVE}
#: Every action that stops, restarts or rolls back live processes.
TOUCHING = {ActionKind.PUBLISH, ActionKind.RESTART, ActionKind.HEAL, ActionKind.ROLLBACK, ActionKind.REVIVE}
#: A service with a liveness check, so that stuck hosts may be restarted too.
LIVE_WORKER = {
    "name": "worker",
    "pidfile": {"path": "tmp/pids/w.{index}.pid", "start": "python3 worker.py"},
    "liveness": {"exec": {"command": "true"}},
}
budgets = st.one_of(st.integers(1, 5), st.sampled_from(["1%", "25%", "34%", "50%", "100%"]))


def held_down(result: Plan, spec: ReleaseSpec, now: datetime) -> set[str]:
    """Hosts the status counts as unavailable: not ready, or ready for less than minReadySeconds."""
    min_ready = spec.strategy.min_ready_seconds
    return {
        h.name
        for h in result.status.hosts
        if not h.ready or (h.ready_since is not None and (now - parse_time(h.ready_since)).total_seconds() < min_ready)
    }


def assert_within_budget(
    result: Plan, spec: ReleaseSpec, now: datetime = NOW, busy: frozenset[str] = frozenset()
) -> None:
    """Starting the chosen actions never takes more than maxUnavailable hosts down.

    Neither counted as unavailable (minReadySeconds included) nor as not serving at all: a host
    that is ready inside its minReadySeconds still serves. And whatever the probes say, no more than
    maxUnavailable hosts are acted on at once (`busy`: actions already running).
    """
    budget = max_unavailable(spec.strategy.max_unavailable, len(spec.hosts))
    down = held_down(result, spec, now)
    acted_on = {a.host for a in result.actions if a.kind in DISRUPTIVE}
    newly_down = acted_on - down
    assert len(newly_down) <= max(0, budget - len(down)), (budget, down, newly_down)
    not_serving = {h.name for h in result.status.hosts if not h.ready}
    assert len(not_serving | acted_on) <= max(budget, len(not_serving)), (budget, not_serving, acted_on)
    touched = {a.host for a in result.actions if a.kind in TOUCHING}
    assert len(touched | busy) <= budget, ("hosts acted on at once", budget, touched, busy)


observation = st.builds(
    HostObservation,
    name=st.just(""),
    reachable=st.booleans(),
    version=st.sampled_from(["v1", "v2", None]),
    has_desired_release=st.booleans(),
    ready=st.sampled_from([True, False, None]),
    services_running=st.sampled_from([True, False, None]),
    services_on_current=st.sampled_from([True, False, None]),
    services_live=st.sampled_from([True, False, None]),
    orphans=st.sampled_from([(), ("mailer[0] pid 1 (release 20260101000000)",)]),
)


@settings(max_examples=400, deadline=None)
@given(
    n=st.integers(1, 12), budget=budgets, data=st.data(), policy=st.sampled_from(["Heal", "Report"]), live=st.booleans()
)
def test_hosts_acted_on_at_once_never_exceed_the_budget_whatever_the_probes_and_the_recorded_state(
    n: int, budget: int | str, data: st.DataObject, policy: str, live: bool
) -> None:
    services = [LIVE_WORKER] if live else []
    spec = make_spec(n, strategy={"maxUnavailable": budget}, driftPolicy=policy, services=services)
    observed = [replace(data.draw(observation), name=h.name) for h in spec.hosts]
    names = [h.name for h in spec.hosts]
    busy = frozenset(data.draw(st.lists(st.sampled_from(names), max_size=n, unique=True)))
    phases = st.sampled_from(["Publishing", "Restarting", "Failed", "Ready", "Updated"])
    revived = st.sampled_from([{}, {"livenessRestarts": 1, "livenessRestartedAt": ago(60)}])
    recorded = {
        name: {"phase": data.draw(phases), "version": data.draw(st.sampled_from(["v1", "v2"]))}
        | data.draw(st.sampled_from([{}, {"action": "Publish"}, {"action": "Revive"}, {"failedVersion": "v2"}]))
        | data.draw(revived)
        for name in names
    }
    result = plan(make_input(spec, observed, prev_status(hosts=recorded), busy=busy))
    if len(busy) <= max_unavailable(spec.strategy.max_unavailable, n):
        assert_within_budget(result, spec, busy=busy)


@settings(max_examples=400, deadline=None)
@given(n=st.integers(1, 12), budget=budgets, data=st.data(), min_ready=st.sampled_from([0, 30]))
def test_budget_is_never_exceeded_from_any_observed_state(
    n: int, budget: int | str, data: st.DataObject, min_ready: int
) -> None:
    spec = make_spec(n, strategy={"maxUnavailable": budget, "minReadySeconds": min_ready})
    observed = [replace(data.draw(observation), name=h.name) for h in spec.hosts]
    result = plan(make_input(spec, observed))
    assert_within_budget(result, spec)


@settings(max_examples=400, deadline=None)
@given(n=st.integers(1, 12), budget=budgets, data=st.data())
def test_budget_is_never_exceeded_while_hosts_hold_min_ready_seconds(
    n: int, budget: int | str, data: st.DataObject
) -> None:
    spec = make_spec(n, strategy={"maxUnavailable": budget, "minReadySeconds": 30})
    observed = [replace(data.draw(observation), name=h.name) for h in spec.hosts]
    # Seconds each host has been ready for, as the previous status says (None: no entry).
    since = data.draw(st.lists(st.sampled_from([None, 5, 40]), min_size=n, max_size=n))
    entries = {
        o.name: {"phase": "Ready", "version": o.version, "ready": True, "readySince": ago(s)}
        for o, s in zip(observed, since, strict=True)
        if s is not None
    }
    result = plan(make_input(spec, observed, prev_status(hosts=entries)))
    assert_within_budget(result, spec)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 12), data=st.data())
def test_ready_is_true_iff_every_host_is_updated_and_ready(n: int, data: st.DataObject) -> None:
    spec = make_spec(n)
    observed = [replace(data.draw(observation), name=h.name) for h in spec.hosts]
    result = plan(make_input(spec, observed, generation=4))
    ready = result.status.condition("Ready")
    assert ready is not None
    assert ready.observed_generation == 4 == result.status.observed_generation
    everything_done = all(
        o.reachable and o.version == "v2" and o.ready and o.services_on_current is not False for o in observed
    )
    assert (ready.status == "True") == everything_done


class Fleet:
    """A simulated fleet the planner drives: every action completes at once, as the engine reports it."""

    def __init__(self, spec: ReleaseSpec, fail: str | None = None) -> None:
        self.spec = spec
        self.fail = fail
        self.state = {h.name: {"version": "v1", "has": False, "ready": True} for h in spec.hosts}
        self.status = ReleaseStatus()
        self.now = NOW
        self.publishes: list[str] = []

    def observe(self) -> list[HostObservation]:
        return [HostObservation(name=n, version=str(s["version"]), release=f"r-{s['version']}", ready=bool(s["ready"]),
                                has_desired_release=bool(s["has"])) for n, s in self.state.items()]  # fmt: skip

    def step(self) -> Plan:
        result = plan(make_input(self.spec, self.observe(), self.status, now=self.now))
        assert_within_budget(result, self.spec, self.now)
        self.status = result.status
        for action in result.actions:
            self.apply(action.kind, action.host)
        self.now += timedelta(seconds=max(1.0, result.wait_seconds or 0.0))
        return result

    def apply(self, kind: ActionKind, host: str) -> None:
        s, entry = self.state[host], self.status.host(host)
        assert entry is not None
        if kind == ActionKind.UPDATE:
            s["has"] = True
        elif kind == ActionKind.PUBLISH:
            self.publishes.append(host)
            s["version"] = "v2"
            s["ready"] = host != self.fail
            entry.phase, entry.version, entry.ready = (
                ("Failed", "v2", False) if host == self.fail else ("Ready", "v2", True)
            )
            entry.failed_version = "v2" if host == self.fail else None
            entry.ready_since = None if host == self.fail else format_time(self.now)
        elif kind == ActionKind.ROLLBACK:
            s["version"], s["ready"] = "v1", True
            entry.phase, entry.version, entry.ready, entry.ready_since = "RolledBack", "v1", True, format_time(self.now)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 15), budget=budgets, min_ready=st.sampled_from([0, 5]))
def test_when_every_action_succeeds_every_host_reaches_the_version(n: int, budget: int | str, min_ready: int) -> None:
    spec = make_spec(n, strategy={"maxUnavailable": budget, "minReadySeconds": min_ready})
    fleet = Fleet(spec)
    for _ in range(4 * n + 10):
        if fleet.step().complete:
            break
    assert all(s["version"] == "v2" and s["ready"] for s in fleet.state.values())
    assert sorted(fleet.publishes) == sorted(h.name for h in spec.hosts), "each host published exactly once"
    assert fleet.status.condition("Ready").status == "True"  # type: ignore[union-attr]
    assert fleet.status.current_version == "v2"


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 10), data=st.data())
def test_a_failing_host_is_rolled_back_and_the_rollout_stalls(n: int, data: st.DataObject) -> None:
    spec = make_spec(n)
    fail = data.draw(st.sampled_from([h.name for h in spec.hosts]))
    fleet = Fleet(spec, fail=fail)
    for _ in range(4 * n + 10):
        fleet.step()
    assert fleet.state[fail] == {"version": "v1", "has": True, "ready": True}, "the failed host serves v1 again"
    order = [h.name for h in spec.hosts]
    after = order[order.index(fail) + 1 :]
    assert all(fleet.state[h]["version"] == "v1" for h in after), "hosts after the failure never left v1"
    assert fleet.status.failed_version == "v2"
    stalled = fleet.status.condition("Stalled")
    assert stalled is not None
    assert (stalled.status, stalled.reason) == ("True", "HostFailed")
    assert fleet.status.condition("Ready").status == "False"  # type: ignore[union-attr]


def test_a_canary_stops_after_its_hosts_until_raised() -> None:
    spec = make_spec(5, strategy={"pauseAfterHosts": 2, "maxUnavailable": 5})
    fleet = Fleet(spec)
    for _ in range(10):
        fleet.step()
    assert sum(s["version"] == "v2" for s in fleet.state.values()) == 2
    assert fleet.status.phase == "Paused"
    fleet.spec = make_spec(5, strategy={"maxUnavailable": 5})
    for _ in range(5):
        fleet.step()
    assert all(s["version"] == "v2" for s in fleet.state.values())


PLAN_DIR = Path(__file__).resolve().parents[2] / "operator" / "kapistrano" / "plan"
FORBIDDEN_MODULES = {"asyncssh", "kopf", "kubernetes", "asyncio", "subprocess", "socket", "time", "os", "random"}


def test_the_planner_does_no_io_and_reads_no_clock() -> None:
    files = sorted(PLAN_DIR.glob("*.py"))
    assert files
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                called = node.func.attr
                assert called not in {"now", "utcnow", "today", "open", "sleep", "time"}, f"{path.name} calls .{called}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"open", "print", "input"}, f"{path.name} calls {node.func.id}"
