"""The planner on orphaned processes, on what a publish stopped and on what holds a rollout (pure)."""

from __future__ import annotations

from typing import Any

from kapistrano.api.status import HostPhase, HostStatus, Reason
from kapistrano.plan import ActionKind, HostObservation, plan
from kapistrano.plan.outcomes import ActionSucceeded, apply_outcome

from .planfixtures import NOW, ago, make_input, make_spec, observe, prev_status

ORPHAN = "mailer[0] pid 4242 (release 20261128010000)"


def test_orphans_on_a_host_on_the_version_are_healed_and_reported() -> None:
    spec = make_spec(2, version="v2")
    observed = [observe("host-1", "v2"), observe("host-2", "v2", orphans=(ORPHAN,))]
    result = plan(make_input(spec, observed, prev_status("v2")))
    assert [(a.kind, a.host) for a in result.actions] == [(ActionKind.HEAL, "host-2")]
    drifted = result.status.condition("Drifted")
    assert drifted is not None
    assert (drifted.status, drifted.reason) == ("True", Reason.ORPHANS_RUNNING)
    assert ORPHAN in drifted.message
    entry = result.status.host("host-2")
    assert entry is not None
    assert entry.orphans == [ORPHAN]


def test_orphans_are_only_reported_under_drift_policy_report() -> None:
    spec = make_spec(2, version="v2", driftPolicy="Report")
    observed = [observe("host-1", "v2"), observe("host-2", "v2", orphans=(ORPHAN,))]
    result = plan(make_input(spec, observed, prev_status("v2")))
    assert result.actions == []
    drifted = result.status.condition("Drifted")
    assert drifted is not None
    assert drifted.reason == Reason.ORPHANS_RUNNING


def test_a_ready_host_keeps_saying_what_its_publish_stopped() -> None:
    spec = make_spec(1, version="v2")
    done = ActionSucceeded(ActionKind.PUBLISH, NOW, version="v2", stopped=(ORPHAN,))
    entry = apply_outcome(HostStatus(name="host-1", phase=HostPhase.READY), done)
    assert entry.stopped == [ORPHAN]
    before = prev_status("v2", hosts={"host-1": entry.model_dump(exclude={"name"})})
    result = plan(make_input(spec, [observe("host-1", "v2")], before))
    host = result.status.host("host-1")
    assert host is not None
    assert host.message == f"stopped {ORPHAN}: no longer in the spec"


def unreachable_third() -> tuple[list[HostObservation], dict[str, dict[str, Any]]]:
    """Hosts 1 and 2 ready on v1 with v2 fetched, host 3 unreachable since 01:59:30, as last recorded (pure)."""
    observed = [observe("host-1", has=True), observe("host-2", has=True)]
    observed.append(observe("host-3", reachable=False, error_reason=Reason.UNREACHABLE, error_message="timed out"))
    fetched = {"phase": HostPhase.UPDATED, "version": "v1", "release": "rel-v1", "ready": True}
    away = {"phase": HostPhase.UNREACHABLE, "version": "v1", "release": "rel-v1", "last_transition_time": ago(30)}
    return observed, {"host-1": fetched, "host-2": fetched, "host-3": away}


def test_the_message_names_the_unreachable_host_that_uses_the_budget() -> None:
    observed, hosts = unreachable_third()
    result = plan(make_input(make_spec(3), observed, prev_status("v2", hosts=hosts)))
    assert not [a for a in result.actions if a.kind == ActionKind.PUBLISH], "the budget is used by host-3"
    assert result.status.message == "0/3 hosts updated; host-3 unreachable since 01:59:30: it uses the budget of 1"


def test_the_progress_deadline_says_what_held_the_rollout() -> None:
    observed, hosts = unreachable_third()
    result = plan(make_input(make_spec(3), observed, prev_status("v2", hosts=hosts, last_progress_time=ago(700))))
    stalled = result.status.condition("Stalled")
    assert stalled is not None
    assert stalled.reason == Reason.PROGRESS_DEADLINE_EXCEEDED
    assert stalled.message == "no host progressed for 600s: host-3 unreachable since 01:59:30: it uses the budget of 1"


def test_an_unreachable_host_within_a_larger_budget_is_named_without_holding_it() -> None:
    observed, hosts = unreachable_third()
    result = plan(make_input(make_spec(3, strategy={"maxUnavailable": 2}), observed, prev_status("v2", hosts=hosts)))
    assert [a.host for a in result.actions if a.kind == ActionKind.PUBLISH] == ["host-1"]
    assert result.status.message.endswith("; host-3 unreachable since 01:59:30")


def test_the_message_counts_other_hosts_down_that_share_the_budget() -> None:
    observed, hosts = unreachable_third()
    observed[0] = observe("host-1", has=True, ready=False)
    result = plan(make_input(make_spec(3, strategy={"maxUnavailable": 2}), observed, prev_status("v2", hosts=hosts)))
    assert result.status.message.endswith(
        "host-3 unreachable since 01:59:30: it uses the budget of 2 with 1 more host(s) down"
    )
