"""Pause, resume, promote and abort requests: acted on once, recorded with who and why, applied to the spec."""

from __future__ import annotations

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import HistoryEntry, ReleaseStatus
from kapistrano.plan import HostObservation, Plan, plan
from kapistrano.plan.requests import Request, Requests, aborting, effective, settle, take

from .planfixtures import NOW, make_input, make_spec, observe, prev_status

H1, H2, H3 = "host-1", "host-2", "host-3"
CANARY = make_spec(3, strategy={"pauseAfterHosts": 1})
AT_CANARY = [observe(H1, "v2"), observe(H2, "v1", has=True), observe(H3, "v1", has=True)]
ROLLING = prev_status(current_version="v1")


def step(spec: ReleaseSpec, status: ReleaseStatus, asked: Requests, seen: list[HostObservation]) -> Plan:
    """take(), then the planner on the effective spec, then settle(), as the engine does."""
    status, _ = take(spec, status, asked, NOW)
    result = plan(make_input(effective(spec, status), seen, status))
    result.status = settle(spec, result.status, result.complete, NOW, 1)
    return result


def test_a_canary_stop_holds_until_a_promote_request() -> None:
    held = step(CANARY, ROLLING, Requests(), AT_CANARY)
    assert held.actions == []
    assert held.status.phase == "Paused"
    promoted = step(CANARY, ROLLING, Requests(promote=Request("t1", "kubectl-kapistrano", "looks fine")), AT_CANARY)
    assert [(a.kind.value, a.host) for a in promoted.actions] == [("Publish", H2)]
    assert (promoted.status.promoted_for, promoted.status.promoted_version) == ("t1", "v2")


def test_a_promote_request_is_recorded_once_with_who_and_why() -> None:
    asked = Requests(promote=Request("t1", "argocd-server", "canary healthy"))
    status, entries = take(CANARY, ROLLING, asked, NOW)
    assert [(e.request, e.requested_by, e.reason, e.token) for e in entries] == [
        ("Promote", "argocd-server", "canary healthy", "t1")
    ]
    assert status.history[0].request == "Promote"
    again, more = take(CANARY, status, asked, NOW)
    assert more == []
    assert again is status


def test_a_promotion_is_for_its_version_only() -> None:
    promoted, _ = take(CANARY, ROLLING, Requests(promote=Request("t1")), NOW)
    v3 = CANARY.model_copy(update={"version": "v3"})
    assert effective(v3, promoted).strategy.pause_after_hosts == 1
    assert effective(CANARY, promoted).strategy.pause_after_hosts is None


def test_a_pause_request_holds_new_hosts_and_its_removal_is_a_resume() -> None:
    spec = make_spec(3)
    seen = [observe(H1, "v2"), observe(H2, "v1", has=True), observe(H3, "v1", has=True)]
    paused = step(spec, ROLLING, Requests(pause=Request("p1", "kubectl-kapistrano", "incident")), seen)
    assert paused.actions == []
    assert paused.status.phase == "Paused"
    assert paused.status.paused_for == "p1"
    resumed_status, entries = take(spec, paused.status, Requests(resume=Request("", "kubectl-kapistrano")), NOW)
    assert [e.request for e in entries] == ["Resume"]
    assert resumed_status.paused_for is None
    assert effective(spec, resumed_status).paused is False


def test_an_abort_rolls_the_updated_hosts_back_to_the_current_version() -> None:
    spec = make_spec(3)
    seen = [observe(H1, "v2", has=True), observe(H2, "v1", has=True), observe(H3, "v1", has=True)]
    aborted = step(spec, ROLLING, Requests(abort=Request("a1", "kubectl-kapistrano", "errors up")), seen)
    assert aborting(spec, aborted.status)
    assert aborted.status.abort_target == "v1"
    assert [(a.kind.value, a.host) for a in aborted.actions] == [("Publish", H1)]
    assert aborted.status.condition("Reconciling").reason == "Aborted"  # type: ignore[union-attr]


def test_once_every_host_is_back_an_aborted_rollout_is_stalled_with_reason_aborted() -> None:
    spec = make_spec(3)
    status, _ = take(spec, ROLLING, Requests(abort=Request("a1")), NOW)
    back = step(spec, status, Requests(abort=Request("a1")), [observe(h, "v1", has=True) for h in (H1, H2, H3)])
    assert back.actions == []
    stalled = back.status.condition("Stalled")
    assert stalled is not None
    assert (stalled.status, stalled.reason) == ("True", "Aborted")
    assert back.status.phase == "Degraded"


def test_an_abort_at_a_canary_stop_goes_back_without_stopping() -> None:
    aborted = step(CANARY, ROLLING, Requests(abort=Request("a1")), [observe(H1, "v2", has=True), *AT_CANARY[1:]])
    assert [(a.kind.value, a.host) for a in aborted.actions] == [("Publish", H1)]


def test_a_retry_request_ends_the_abort_and_the_version_rolls_out_again() -> None:
    spec = make_spec(3)
    status, _ = take(spec, ROLLING, Requests(abort=Request("a1")), NOW)
    again, _ = take(spec, status, Requests(abort=Request("a1"), retry="r1"), NOW)
    assert not aborting(spec, again)
    assert effective(spec, again).version == "v2"
    same, _ = take(
        spec, status.model_copy(update={"retried_for": "r1"}), Requests(abort=Request("a1"), retry="r1"), NOW
    )
    assert aborting(spec, same), "a retry request already acted on ends nothing"


def test_a_new_version_ends_the_abort() -> None:
    spec = make_spec(3)
    status, _ = take(spec, ROLLING, Requests(abort=Request("a1")), NOW)
    v3 = spec.model_copy(update={"version": "v3"})
    assert not aborting(v3, status)
    assert effective(v3, status).version == "v3"


def test_an_abort_with_nothing_rolling_out_is_recorded_and_changes_nothing() -> None:
    spec = make_spec(3)
    done = prev_status(current_version="v2")
    status, entries = take(spec, done, Requests(abort=Request("a1")), NOW)
    assert entries[0].message is not None
    assert entries[0].message.startswith("nothing to abort")
    assert status.aborted_for == "a1"
    assert not aborting(spec, status)


def test_a_git_ref_pinned_to_the_aborted_version_moves_back_with_it() -> None:
    spec = make_spec(2, source={"git": {"url": "https://git.example.com/a.git", "ref": "v2"}})
    status, _ = take(spec, ROLLING, Requests(abort=Request("a1")), NOW)
    rolled = effective(spec, status)
    assert rolled.version == "v1"
    assert rolled.source.git is not None
    assert rolled.source.git.ref is None


def test_requests_never_push_rolled_out_versions_out_of_the_history() -> None:
    spec = make_spec(3, revisionHistoryLimit=2)
    status = prev_status(
        current_version="v1", history=[HistoryEntry(version="v1", completed_at="2026-11-27T00:00:00Z")]
    )
    for token in ("p1", "p2", "p3"):
        status, _ = take(spec, status, Requests(pause=Request(token)), NOW)
    assert [(h.request, h.version) for h in status.history] == [("Pause", "v2"), ("Pause", "v2"), (None, "v1")]
