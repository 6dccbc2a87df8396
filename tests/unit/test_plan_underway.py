"""A host whose action marker says an action was begun there is resumed first and holds a slot of the budget.

The marker is written on the host before an action touches anything, so after a kill it is there
even when no status save recorded the intent: these tests give the planner a status saved before the
action began (or none for this version at all) and the host's marker.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kapistrano.api.status import HostPhase
from kapistrano.plan import Action, ActionKind, HostObservation, max_unavailable, plan
from kapistrano.plan.model import Underway

from .planfixtures import make_input, make_spec, observe, prev_status
from .test_plan_properties import TOUCHING, assert_within_budget, budgets, observation

PUBLISH_V2 = Underway(ActionKind.PUBLISH, "v2", "rel-v1")
#: Every host fetched v2 and ran v1, ready, when the status was last saved: the action was not in it yet.
SAVED_BEFORE = {f"host-{i}": {"phase": "Updated", "version": "v1", "ready": True} for i in (1, 2, 3)}


def three_hosts_one_marked(marked: HostObservation) -> list[HostObservation]:
    """host-2 as given (with its marker), host-1 and host-3 on v1, ready, v2 fetched."""
    return [observe("host-1", has=True), replace(marked, name="host-2"), observe("host-3", has=True)]


@pytest.mark.parametrize(
    ("what", "marked"),
    [
        ("still looks ready (a quiet signal sent, not yet stopped)", observe("host-2", has=True)),
        ("draining: not ready", observe("host-2", has=True, ready=False)),
        ("current switched, old process gone", observe("host-2", "v2", ready=False, services_running=False)),
        ("current switched, new process ready", observe("host-2", "v2", has=True)),
        ("unreadable services", observe("host-2", has=True, ready=None)),
    ],
)
@pytest.mark.parametrize("saved_version", ["v2", "v1"], ids=["status-of-this-rollout", "status-of-the-last-one"])
def test_a_marked_host_is_resumed_alone_within_a_budget_of_one(
    what: str, marked: HostObservation, saved_version: str
) -> None:
    spec = make_spec(3, strategy={"maxUnavailable": 1})
    observed = three_hosts_one_marked(replace(marked, underway=PUBLISH_V2))
    result = plan(make_input(spec, observed, prev_status(saved_version, hosts=SAVED_BEFORE)))
    assert result.actions == [Action(ActionKind.PUBLISH, "host-2", "resume")], what
    host = result.status.host("host-2")
    assert host is not None
    assert (host.phase, host.action, host.ready) == (HostPhase.PUBLISHING, "Publish", False), what
    assert host.previous_release == "rel-v1"
    assert_within_budget(result, spec)


def test_a_marked_host_that_cannot_be_read_keeps_its_slot_and_nothing_else_starts() -> None:
    spec = make_spec(3, strategy={"maxUnavailable": 1})
    saved = prev_status(hosts=SAVED_BEFORE | {"host-2": {"phase": "Publishing", "action": "Publish", "version": "v1"}})
    observed = three_hosts_one_marked(HostObservation(name="host-2", reachable=False))
    assert plan(make_input(spec, observed, saved)).actions == []


def test_an_interrupted_restart_is_finished_as_a_resume_never_restarted_afresh() -> None:
    """A restart request's restart cut short: the host goes on from where it is (processes on the release are kept)."""
    spec = make_spec(3, strategy={"maxUnavailable": 1})
    done = {"phase": "Ready", "version": "v2", "ready": True}
    saved = prev_status(hosts={"host-1": done, "host-2": done, "host-3": done})
    marked = observe("host-2", "v2", underway=Underway(ActionKind.RESTART, "v2"))
    observed = [observe("host-1", "v2"), marked, observe("host-3", "v2")]
    result = plan(make_input(spec, observed, saved, token="2026-11-28T01:00:00Z"))
    assert result.actions == [Action(ActionKind.PUBLISH, "host-2", "resume")]


def test_a_rollback_begun_means_the_version_failed_there_and_the_rollback_is_finished() -> None:
    spec = make_spec(3, strategy={"maxUnavailable": 1})
    marked = observe("host-1", "v2", ready=False, underway=Underway(ActionKind.ROLLBACK, "v2", "rel-v1"))
    observed = [marked, observe("host-2", has=True), observe("host-3", has=True)]
    result = plan(make_input(spec, observed, prev_status(hosts=SAVED_BEFORE)))
    assert result.actions == [Action(ActionKind.ROLLBACK, "host-1", "new release failed")]
    assert result.status.failed_version == "v2"


def test_a_failure_the_status_recorded_wins_over_the_marker_it_left() -> None:
    """A failed action leaves its marker; the status saved after it says what became of the host."""
    spec = make_spec(3, strategy={"maxUnavailable": 1, "onFailure": "Halt"})
    failed = {"phase": "Failed", "version": "v2", "failedVersion": "v2", "ready": False}
    saved = prev_status(hosts=SAVED_BEFORE | {"host-1": failed})
    marked = observe("host-1", "v2", ready=False, underway=PUBLISH_V2)
    observed = [marked, observe("host-2", has=True), observe("host-3", has=True)]
    result = plan(make_input(spec, observed, saved))
    assert result.actions == []
    host = result.status.host("host-1")
    assert host is not None
    assert host.phase == HostPhase.FAILED


def test_the_engine_own_running_action_is_not_taken_for_an_interrupted_one() -> None:
    """A busy host's marker is the engine's own action: the status it passes in is newer."""
    spec = make_spec(3, strategy={"maxUnavailable": 1})
    saved = prev_status(hosts=SAVED_BEFORE | {"host-2": {"phase": "Ready", "version": "v2", "ready": True}})
    observed = three_hosts_one_marked(observe("host-2", "v2", underway=PUBLISH_V2))
    result = plan(make_input(spec, observed, saved, busy=frozenset({"host-2"})))
    host = result.status.host("host-2")
    assert host is not None
    assert host.action is None
    assert result.actions == []


underway = st.sampled_from(
    [None, PUBLISH_V2, Underway(ActionKind.PUBLISH, "v1"), Underway(ActionKind.RESTART, "v2"),
     Underway(ActionKind.HEAL, "v2"), Underway(ActionKind.ROLLBACK, "v2")]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(n=st.integers(1, 10), budget=budgets, data=st.data(), token=st.sampled_from([None, "r1"]))
def test_marked_hosts_hold_the_budget_and_are_never_restarted_afresh(
    n: int, budget: int | str, data: st.DataObject, token: str | None
) -> None:
    spec = make_spec(n, strategy={"maxUnavailable": budget})
    observed = [replace(data.draw(observation), name=h.name) for h in spec.hosts]
    # A host read is a host whose marker was read.
    observed = [replace(o, underway=data.draw(underway)) if o.reachable else o for o in observed]
    saved_version = data.draw(st.sampled_from(["v1", "v2"]))
    entries = {o.name: {"phase": data.draw(st.sampled_from(["Ready", "Updated"])), "version": "v1"} for o in observed}
    result = plan(make_input(spec, observed, prev_status(saved_version, hosts=entries), token=token))
    limit = max_unavailable(spec.strategy.max_unavailable, n)
    marked = {o.name for o in observed if o.underway is not None}
    touched = {a.host for a in result.actions if a.kind in TOUCHING}
    # A marked host counts as acted on: together with the hosts acted on now, within the budget.
    assert len(marked | touched) <= max(limit, len(marked)), (limit, marked, touched)
    # Whatever it was, an interrupted action is finished by resuming it, never by a fresh restart.
    for action in result.actions:
        if action.host in marked:
            assert action.kind in (ActionKind.UPDATE, ActionKind.PUBLISH, ActionKind.ROLLBACK), action
            assert action.kind == ActionKind.UPDATE or action.reason in ("resume", "new release failed"), action
    # And a marked host never serves in the status the plan writes, until its action is resumed and ends.
    assert not any(h.ready for h in result.status.hosts if h.name in marked)
    if len(marked) <= limit:
        assert_within_budget(result, spec)


@pytest.mark.parametrize(
    ("restarted", "kind"),
    [(True, ActionKind.PUBLISH), (None, ActionKind.PUBLISH), (False, ActionKind.RESTART)],
    ids=["replaced-kept", "unknown-kept", "not-replaced-restarted"],
)
def test_a_restart_cut_short_is_made_again_only_where_it_had_not_replaced_the_processes(
    restarted: bool | None, kind: ActionKind
) -> None:
    spec = make_spec(3, strategy={"maxUnavailable": 1})
    on_v2 = {f"host-{i}": {"phase": "Ready", "version": "v2", "ready": True} for i in (1, 2, 3)}
    marked = observe("host-2", "v2", underway=Underway(ActionKind.RESTART, "v2"), restarted_since_mark=restarted)
    observed = [observe("host-1", "v2"), marked, observe("host-3", "v2")]
    result = plan(make_input(spec, observed, prev_status("v2", hosts=on_v2), token="r1"))
    assert result.actions == [Action(kind, "host-2", "resume")]
    assert_within_budget(result, spec)


def test_a_restart_cut_short_before_a_new_version_was_pushed_is_a_publish_of_that_version() -> None:
    spec = make_spec(3, strategy={"maxUnavailable": 1})  # v2, pushed while a restart of v1 was under way
    on_v1 = {f"host-{i}": {"phase": "Ready", "version": "v1", "ready": True} for i in (1, 2, 3)}
    marked = observe("host-2", "v1", has=True, underway=Underway(ActionKind.RESTART, "v1"), restarted_since_mark=False)
    observed = [observe("host-1", "v1", has=True), marked, observe("host-3", "v1", has=True)]
    result = plan(make_input(spec, observed, prev_status("v1", hosts=on_v1), token="r1"))
    assert [a.kind for a in result.actions] == [ActionKind.PUBLISH], "one restart for both"
    assert_within_budget(result, spec)
