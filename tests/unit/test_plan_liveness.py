"""Liveness apart from readiness: stuck hosts restarted one budget slot at a time, with backoff, N tries (pure)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kapistrano.api.status import HostPhase, HostStatus, Reason
from kapistrano.plan import ActionKind, max_unavailable, plan
from kapistrano.plan.outcomes import ActionStarted, ActionSucceeded, apply_outcome

from .planfixtures import NOW, ago, make_input, make_spec, observe, prev_status

WORKER = {
    "name": "worker",
    "pidfile": {"path": "tmp/pids/w.{index}.pid", "start": "python3 worker.py"},
    "liveness": {"exec": {"command": "test ! -e STUCK"}, "backoffSeconds": 10, "maxRestarts": 2},
}


def stuck_spec(**spec: Any) -> Any:
    """Three hosts on v2 whose worker has a liveness check (pure)."""
    return make_spec(3, version="v2", services=[WORKER], **spec)


def live(name: str, ok: bool = True) -> Any:
    """A host on v2, running and ready, whose liveness check passes or fails (pure)."""
    return observe(name, "v2", services_running=True, services_live=ok)


def host(restarts: int, seconds_ago: float) -> dict[str, Any]:
    """A ready host's previous entry after `restarts` liveness restarts, the last `seconds_ago` (pure)."""
    return {"phase": HostPhase.READY, "version": "v2", "release": "rel-v2", "ready": True,
            "liveness_restarts": restarts, "liveness_restarted_at": ago(seconds_ago)}  # fmt: skip


def test_stuck_hosts_are_restarted_one_budget_slot_at_a_time() -> None:
    result = plan(make_input(stuck_spec(), [live("host-1", False), live("host-2", False), live("host-3")]))
    assert [(a.kind, a.host) for a in result.actions] == [(ActionKind.REVIVE, "host-1")]
    drifted = result.status.condition("Drifted")
    assert drifted is not None
    assert (drifted.status, drifted.reason) == ("True", Reason.LIVENESS_FAILED)


def test_a_host_waits_out_its_backoff_which_doubles_with_each_restart() -> None:
    observed = [live("host-1", False), live("host-2"), live("host-3")]
    waiting = plan(make_input(stuck_spec(), observed, prev_status("v2", hosts={"host-1": host(1, 9)})))
    assert waiting.actions == []
    drifted = waiting.status.condition("Drifted")
    assert drifted is not None
    assert "backing off: host-1" in drifted.message
    due = plan(make_input(stuck_spec(), observed, prev_status("v2", hosts={"host-1": host(1, 10)})))
    assert [a.kind for a in due.actions] == [ActionKind.REVIVE]
    doubled = make_spec(3, version="v2", services=[{**WORKER, "liveness": {**WORKER["liveness"], "maxRestarts": 5}}])
    second = plan(make_input(doubled, observed, prev_status("v2", hosts={"host-1": host(2, 15)})))
    assert second.actions == [], "the second restart in a row waits 20 s"


def test_after_max_restarts_a_stuck_host_is_left_alone_and_reported() -> None:
    observed = [live("host-1", False), live("host-2"), live("host-3")]
    result = plan(make_input(stuck_spec(), observed, prev_status("v2", hosts={"host-1": host(2, 3600)})))
    assert result.actions == []
    drifted = result.status.condition("Drifted")
    assert drifted is not None
    assert (drifted.status, drifted.reason) == ("True", Reason.CRASH_LOOP)
    assert "host-1" in drifted.message


def test_drift_policy_report_never_restarts_a_stuck_host() -> None:
    result = plan(make_input(stuck_spec(driftPolicy="Report"), [live("host-1", False), live("host-2"), live("host-3")]))
    assert result.actions == []


def test_a_host_that_keeps_passing_counts_from_zero_again() -> None:
    observed = [live("host-1"), live("host-2"), live("host-3")]
    recent = plan(make_input(stuck_spec(), observed, prev_status("v2", hosts={"host-1": host(2, 60)})))
    long_ago = plan(make_input(stuck_spec(), observed, prev_status("v2", hosts={"host-1": host(2, 600)})))
    assert [h.liveness_restarts for h in (recent.status.hosts[0], long_ago.status.hosts[0])] == [2, 0]


def test_a_revive_is_recorded_before_it_starts_and_counted_when_it_ends() -> None:
    started = apply_outcome(
        HostStatus(name="host-1", phase=HostPhase.READY, ready=True), ActionStarted(ActionKind.REVIVE, "v2")
    )
    assert (started.action, started.ready) == ("Revive", False)
    done = apply_outcome(started, ActionSucceeded(ActionKind.REVIVE, NOW, version="v2"))
    assert (done.action, done.liveness_restarts, done.liveness_restarted_at) == (None, 1, "2026-11-28T02:00:00Z")


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 12), budget=st.sampled_from([1, 2, 3, "50%"]), data=st.data())
def test_stuck_hosts_restarted_at_once_never_exceed_the_budget(n: int, budget: int | str, data: st.DataObject) -> None:
    spec = make_spec(n, version="v2", services=[WORKER], strategy={"maxUnavailable": budget})
    names = [h.name for h in spec.hosts]
    observed = [live(name, data.draw(st.booleans())) for name in names]
    busy = frozenset(data.draw(st.lists(st.sampled_from(names), max_size=n, unique=True)))
    result = plan(make_input(spec, observed, busy=busy))
    limit = max_unavailable(spec.strategy.max_unavailable, n)
    revived = {a.host for a in result.actions if a.kind == ActionKind.REVIVE}
    assert len(revived | busy) <= max(limit, len(busy)), (limit, revived, busy)
    assert not revived & busy
