"""Table-driven planner cases: observed state in, actions and status out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import ReleaseStatus
from kapistrano.plan import HostObservation, plan

from .planfixtures import NOW, ago, make_input, make_spec, observe, prev_status

H1, H2, H3, H4 = "host-1", "host-2", "host-3", "host-4"


@dataclass
class Case:
    """One planner case: what it sees and what it must decide."""

    id: str
    spec: ReleaseSpec
    observed: list[HostObservation]
    actions: list[tuple[str, str]]
    status: ReleaseStatus | None = None
    expect: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    generation: int = 1
    token: str | None = None
    busy: frozenset[str] = frozenset()


def on(version: str, *names: str, **kw: Any) -> list[HostObservation]:
    """Observations of several hosts on one version."""
    return [observe(n, version, **kw) for n in names]


S3 = make_spec(3)
UPDATED = on("v1", H1, H2, H3, has=True)
DONE3 = on("v2", H1, H2, H3)
ROLLING = {"Ready": ("False", "RollingOut"), "Reconciling": ("True", "RollingOut"), "Stalled": ("False", "AsExpected")}
FAILED = {"Ready": ("False", "HostFailed"), "Stalled": ("True", "HostFailed"), "Reconciling": ("False", "HostFailed")}
ROLLING_BACK = {
    "Ready": ("False", "RollingBack"),
    "Stalled": ("False", "AsExpected"),
    "Reconciling": ("True", "RollingBack"),
}

CASES = [
    Case(
        "fresh rollout updates every host at once",
        S3,
        on("v1", H1, H2, H3),
        [("Update", H1), ("Update", H2), ("Update", H3)],
        expect={"phase": "Progressing", "ready": "0/3"},
        conditions=ROLLING | {"Progressing": ("True", "NewRollout")},
    ),
    Case(
        "no restart while any reachable host is still updating",
        S3,
        [*on("v1", H1, H2, has=True), observe(H3)],
        [("Update", H3)],
    ),
    Case(
        "after updating, one host is published with maxUnavailable 1",
        S3,
        UPDATED,
        [("Publish", H1)],
        expect={"hosts_updated": 0},
    ),
    Case(
        "maxUnavailable 2 publishes two hosts in spec order",
        make_spec(3, strategy={"maxUnavailable": 2}),
        UPDATED,
        [("Publish", H1), ("Publish", H2)],
    ),
    Case(
        "50% of 4 hosts is 2",
        make_spec(4, strategy={"maxUnavailable": "50%"}),
        on("v1", H1, H2, H3, H4, has=True),
        [("Publish", H1), ("Publish", H2)],
    ),
    Case(
        "10% of 3 hosts rounds down to 0 and is raised to 1",
        make_spec(3, strategy={"maxUnavailable": "10%"}),
        UPDATED,
        [("Publish", H1)],
    ),
    Case(
        "100% restarts every host at once",
        make_spec(3, strategy={"maxUnavailable": "100%"}),
        UPDATED,
        [("Publish", H1), ("Publish", H2), ("Publish", H3)],
    ),
    Case(
        "a done host lets the next one start",
        S3,
        [observe(H1, "v2"), *on("v1", H2, H3, has=True)],
        [("Publish", H2)],
        expect={"ready": "1/3", "hosts_updated": 1, "hosts_ready": 3},
    ),
    Case(
        "minReadySeconds holds the next host",
        make_spec(3, strategy={"minReadySeconds": 30}),
        [observe(H1, "v2"), *on("v1", H2, H3, has=True)],
        [],
        status=prev_status(hosts={H1: {"phase": "Ready", "version": "v2", "ready": True, "readySince": ago(10)}}),
        expect={"wait_seconds": 20.0, "hosts_available": 2},
    ),
    Case(
        "after minReadySeconds the next host starts",
        make_spec(3, strategy={"minReadySeconds": 30}),
        [observe(H1, "v2"), *on("v1", H2, H3, has=True)],
        [("Publish", H2)],
        status=prev_status(hosts={H1: {"phase": "Ready", "version": "v2", "ready": True, "readySince": ago(31)}}),
    ),
    Case(
        "hosts ready but inside minReadySeconds are not restarted together: the rollout waits",
        make_spec(3, strategy={"minReadySeconds": 30}),
        UPDATED,
        [],
        status=prev_status(
            hosts={n: {"phase": "Ready", "version": "v1", "ready": True, "readySince": ago(5)} for n in (H1, H2, H3)}
        ),
        expect={"wait_seconds": 25.0, "hosts_available": 0, "hosts_ready": 3},
    ),
    Case(
        "an unreachable host uses up the budget",
        S3,
        [*on("v1", H1, H3, has=True), HostObservation(name=H2, reachable=False)],
        [],
        expect={"host_phases": ["Updated", "Unreachable", "Updated"]},
    ),
    Case(
        "a host that is already down is published without using budget",
        S3,
        [observe(H1, "v1", has=True), observe(H2, "v1", ready=False, has=True), observe(H3, "v1", has=True)],
        [("Publish", H2)],
    ),
    Case(
        "unreachable host does not block publishing when the budget allows",
        make_spec(3, strategy={"maxUnavailable": 2}),
        [*on("v1", H1, H3, has=True), HostObservation(name=H2, reachable=False)],
        [("Publish", H1)],
    ),
    Case(
        "paused starts nothing",
        make_spec(3, paused=True),
        UPDATED,
        [],
        expect={"phase": "Paused"},
        conditions={"Reconciling": ("True", "Paused"), "Ready": ("False", "Paused")},
    ),
    Case("paused does not fetch either", make_spec(3, paused=True), on("v1", H1, H2, H3), []),
    Case(
        "canary stops after pauseAfterHosts",
        make_spec(3, strategy={"pauseAfterHosts": 1}),
        [observe(H1, "v2"), *on("v1", H2, H3, has=True)],
        [],
        expect={"phase": "Paused"},
        conditions={"Reconciling": ("True", "Paused")},
    ),
    Case(
        "canary limits a wide budget",
        make_spec(3, strategy={"pauseAfterHosts": 2, "maxUnavailable": 3}),
        UPDATED,
        [("Publish", H1), ("Publish", H2)],
    ),
    Case(
        "canary of 0 starts no host",
        make_spec(3, strategy={"pauseAfterHosts": 0}),
        UPDATED,
        [],
        expect={"phase": "Paused"},
    ),
    Case(
        "a failed host is rolled back and nothing else starts; not Stalled before the rollback",
        S3,
        [observe(H1, "v2", ready=False), *on("v1", H2, H3, has=True)],
        [("Rollback", H1)],
        status=prev_status(
            hosts={H1: {"phase": "Failed", "version": "v2", "message": "readiness failed", "failedVersion": "v2"}}
        ),
        expect={"failed_version": "v2", "phase": "Progressing", "stalled_reason": None},
        conditions=ROLLING_BACK,
    ),
    Case(
        "nor while the rollback runs",
        S3,
        [observe(H1, "v2", ready=False), *on("v1", H2, H3, has=True)],
        [],
        status=prev_status(
            hosts={H1: {"phase": "Publishing", "version": "v2", "failedVersion": "v2", "action": "Rollback"}}
        ),
        busy=frozenset({H1}),
        expect={"failed_version": "v2", "message": "new version failed: rolling back host-1"},
        conditions=ROLLING_BACK,
    ),
    Case(
        "a rollback interrupted after switching back is finished (the failed version's process still answers)",
        S3,
        [observe(H1, "v1"), *on("v1", H2, H3, has=True)],
        [("Rollback", H1)],
        status=prev_status(
            hosts={H1: {"phase": "Publishing", "version": "v2", "failedVersion": "v2", "action": "Rollback"}}
        ),
        expect={"failed_version": "v2", "stalled_reason": None},
        conditions=ROLLING_BACK,
    ),
    Case(
        "a switched-back host whose processes still run from the failed release is rolled back again",
        S3,
        [observe(H1, "v1", services_on_current=False), *on("v1", H2, H3, has=True)],
        [("Rollback", H1)],
        status=prev_status(hosts={H1: {"phase": "Failed", "version": "v2", "failedVersion": "v2"}}),
        conditions=ROLLING_BACK,
    ),
    Case(
        "a host with an action running counts against the budget and gets no other action",
        S3,
        [observe(H1, "v1", has=True), *on("v1", H2, H3, has=True)],
        [],
        status=prev_status(hosts={H1: {"phase": "Restarting", "version": "v1", "action": "Publish"}}),
        busy=frozenset({H1}),
        expect={"host_phases": ["Restarting", "Updated", "Updated"], "hosts_ready": 2},
        conditions=ROLLING,
    ),
    Case(
        "with a budget of 2, a second host starts while the first one runs",
        make_spec(3, strategy={"maxUnavailable": 2}),
        [observe(H1, "v1", has=True), *on("v1", H2, H3, has=True)],
        [("Publish", H2)],
        status=prev_status(hosts={H1: {"phase": "Restarting", "version": "v1", "action": "Publish"}}),
        busy=frozenset({H1}),
    ),
    Case(
        "a host whose rollback failed is left as it is and the rollout stalls",
        S3,
        [observe(H1, "v2", ready=False), *on("v1", H2, H3, has=True)],
        [],
        status=prev_status(
            hosts={H1: {"phase": "Failed", "version": "v2", "failedVersion": "v2", "rollbackFailed": True}}
        ),
        expect={"failed_version": "v2", "phase": "Failed", "stalled_reason": "HostFailed"},
        conditions=FAILED,
    ),
    Case(
        "onFailure Halt leaves the failed host as it is",
        make_spec(3, strategy={"onFailure": "Halt"}),
        [observe(H1, "v2", ready=False), *on("v1", H2, H3, has=True)],
        [],
        status=prev_status(hosts={H1: {"phase": "Failed", "version": "v2", "failedVersion": "v2"}}),
        expect={"failed_version": "v2"},
        conditions=FAILED,
    ),
    Case(
        "a rolled back host stalls the rollout",
        S3,
        [observe(H1, "v1"), *on("v1", H2, H3, has=True)],
        [],
        status=prev_status(hosts={H1: {"phase": "RolledBack", "version": "v1", "failedVersion": "v2"}}),
        expect={"failed_version": "v2", "host_phases": ["RolledBack", "Updated", "Updated"]},
        conditions=FAILED,
    ),
    Case(
        "failedVersion is not retried",
        S3,
        UPDATED,
        [],
        status=prev_status(failed_version="v2"),
        expect={"failed_version": "v2"},
        conditions=FAILED,
    ),
    Case(
        "a new version clears the failure and starts again",
        make_spec(3, version="v3"),
        on("v1", H1, H2, H3),
        [("Update", H1), ("Update", H2), ("Update", H3)],
        status=prev_status(
            version="v2",
            failed_version="v2",
            hosts={H1: {"phase": "RolledBack", "version": "v1", "failedVersion": "v2"}},
        ),
        expect={"failed_version": None, "version": "v3"},
    ),
    Case(
        "reverting to the old version is complete at once",
        make_spec(3, version="v1"),
        on("v1", H1, H2, H3),
        [],
        status=prev_status(
            version="v2",
            failed_version="v2",
            hosts={H1: {"phase": "RolledBack", "version": "v1", "failedVersion": "v2"}},
        ),
        expect={"complete": True, "phase": "Ready", "failed_version": None},
        conditions={"Ready": ("True", "RolledOut"), "Stalled": ("False", "AsExpected")},
    ),
    Case(
        "an interrupted restart is resumed even though the host looks ready",
        S3,
        [observe(H1, "v2"), *on("v1", H2, H3, has=True)],
        [("Publish", H1)],
        status=prev_status(hosts={H1: {"phase": "Restarting", "version": "v2", "action": "Publish"}}),
    ),
    Case(
        "an interrupted publish before the switch is resumed",
        S3,
        UPDATED,
        [("Publish", H2)],
        status=prev_status(hosts={H2: {"phase": "Publishing", "version": "v1", "action": "Publish"}}),
    ),
    Case(
        "processes from an older release are restarted",
        S3,
        [observe(H1, "v2", services_on_current=False), *on("v1", H2, H3, has=True)],
        [("Publish", H1)],
    ),
    Case(
        "complete rollout: no actions, Ready, history",
        S3,
        DONE3,
        [],
        status=prev_status(current_version="v1"),
        expect={"complete": True, "current_version": "v2", "history": ["v2"], "ready": "3/3", "phase": "Ready"},
        conditions={
            "Ready": ("True", "RolledOut"),
            "Reconciling": ("False", "RolledOut"),
            "Progressing": ("True", "RolloutComplete"),
            "Available": ("True", "MinimumHostsAvailable"),
        },
    ),
    Case(
        "history is trimmed to revisionHistoryLimit",
        make_spec(3, revisionHistoryLimit=2),
        DONE3,
        [],
        status=prev_status(
            history=[{"version": "v1", "completedAt": ago(60)}, {"version": "v0", "completedAt": ago(99)}]
        ),
        expect={"history": ["v2", "v1"]},
    ),
    Case(
        "no progress past the deadline stalls",
        make_spec(3, progressDeadlineSeconds=600),
        [*on("v1", H1, H3, has=True), HostObservation(name=H2, reachable=False)],
        [],
        status=prev_status(
            last_progress_time=ago(700),
            hosts={
                H1: {"phase": "Updated", "version": "v1", "ready": True},
                H2: {"phase": "Unreachable"},
                H3: {"phase": "Updated", "version": "v1", "ready": True},
            },
        ),
        expect={"phase": "Degraded"},
        conditions={
            "Progressing": ("False", "ProgressDeadlineExceeded"),
            "Stalled": ("True", "ProgressDeadlineExceeded"),
        },
    ),
    Case(
        "the deadline does not apply while paused",
        make_spec(3, paused=True, progressDeadlineSeconds=60),
        UPDATED,
        [],
        status=prev_status(
            last_progress_time=ago(700),
            hosts={n: {"phase": "Updated", "version": "v1", "ready": True} for n in (H1, H2, H3)},
        ),
        conditions={"Stalled": ("False", "AsExpected")},
    ),
    Case(
        "a dead service is healed",
        S3,
        [observe(H1, "v2"), observe(H2, "v2", ready=False, services_running=False), observe(H3, "v2")],
        [("Heal", H2)],
        expect={"phase": "Progressing", "message": "healing host-2"},
        conditions={
            "Drifted": ("True", "ServiceDown"),
            "Reconciling": ("True", "Healing"),
            "Ready": ("False", "Healing"),
        },
    ),
    Case(
        "a live service that fails readiness is reported and never restarted",
        S3,
        [observe(H1, "v2", ready=False, services_running=True), *on("v2", H2, H3)],
        [],
        expect={"phase": "Degraded"},
        conditions={"Drifted": ("True", "NotReady")},
    ),
    Case(
        "a shared dependency down on every host restarts nothing",
        S3,
        [observe(h, "v2", ready=False, services_running=True) for h in (H1, H2, H3)],
        [],
        expect={"phase": "Degraded"},
    ),
    Case(
        "driftPolicy Report only reports",
        make_spec(3, driftPolicy="Report"),
        [observe(H1, "v2"), observe(H2, "v2", ready=False, services_running=False), observe(H3, "v2")],
        [],
        expect={"phase": "Degraded", "message": "services down on host-2"},
        conditions={
            "Drifted": ("True", "ServiceDown"),
            "Ready": ("False", "Drifted"),
            "Stalled": ("True", "Drifted"),
            "Reconciling": ("False", "Drifted"),
        },
    ),
    Case(
        "healing takes one budget slot at a time, dead hosts or not",
        S3,
        [
            observe(H1, "v2", ready=False, services_running=False),
            observe(H2, "v2", ready=False, services_running=False),
            HostObservation(name=H3, reachable=False),
        ],
        [("Heal", H1)],
    ),
    Case(
        "a changed host key stalls with HostKeyMismatch; others go on",
        S3,
        [*on("v1", H1, H2), HostObservation(name=H3, error_reason="HostKeyMismatch", error_message="key changed")],
        [("Update", H1), ("Update", H2)],
        expect={"phase": "Failed", "host_phases": ["Pending", "Pending", "Failed"]},
        conditions={"Stalled": ("True", "HostKeyMismatch")},
    ),
    Case(
        "a lock held by another Release is a Conflict",
        S3,
        [HostObservation(name=H1, error_reason="Conflict", error_message="locked by other"), *on("v1", H2, H3)],
        [("Update", H2), ("Update", H3)],
        expect={"host_phases": ["Conflict", "Pending", "Pending"]},
        conditions={"Stalled": ("True", "Conflict")},
    ),
    Case("a restart request restarts one host at a time", S3, DONE3, [("Restart", H1)], token="t1"),
    Case(
        "the restart moves on to the next host",
        S3,
        DONE3,
        [("Restart", H2)],
        token="t1",
        status=prev_status(hosts={H1: {"phase": "Ready", "version": "v2", "ready": True, "restartedFor": "t1"}}),
    ),
    Case(
        "a completed restart is recorded",
        S3,
        DONE3,
        [],
        token="t1",
        status=prev_status(
            hosts={n: {"phase": "Ready", "version": "v2", "ready": True, "restartedFor": "t1"} for n in (H1, H2, H3)}
        ),
        expect={"restarted_at": "t1"},
    ),
    Case(
        "rollout order is spec order, not name order",
        make_spec(names=["zeta", "alpha", "mid"]),
        on("v1", "zeta", "alpha", "mid", has=True),
        [("Publish", "zeta")],
    ),
    Case(
        "too few hosts available flips Available",
        S3,
        [
            observe(H1, "v2", ready=False, services_running=False),
            observe(H2, "v1", ready=False, has=True),
            observe(H3, "v1", has=True),
        ],
        [("Publish", H2)],
        conditions={"Available": ("False", "MinimumHostsUnavailable")},
    ),
    Case(
        "observedGeneration is written on the status and every condition",
        S3,
        DONE3,
        [],
        generation=7,
        expect={"observed_generation": 7},
    ),
]


def _check_expect(case: Case, result: Any) -> None:
    status = result.status
    for key, want in case.expect.items():
        got: Any
        if key == "host_phases":
            got = [h.phase for h in status.hosts]
        elif key == "history":
            got = [h.version for h in status.history]
        elif key in ("wait_seconds", "complete", "stalled_reason"):
            got = getattr(result, key)
        else:
            got = getattr(status, key)
        assert got == want, f"{key}: expected {want!r}, got {got!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_planner_decides(case: Case) -> None:
    result = plan(
        make_input(case.spec, case.observed, case.status, generation=case.generation, token=case.token, busy=case.busy)
    )
    assert [(str(a.kind), a.host) for a in result.actions] == case.actions
    _check_expect(case, result)
    by_type = {c.type: c for c in result.status.conditions}
    for type_, (status, reason) in case.conditions.items():
        assert (by_type[type_].status, by_type[type_].reason) == (status, reason), type_
    assert all(c.observed_generation == case.generation for c in result.status.conditions)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30


def test_last_transition_time_changes_only_when_status_flips() -> None:
    first = plan(make_input(S3, UPDATED))
    later = NOW.replace(minute=5)
    second = plan(make_input(S3, UPDATED, first.status, now=later))
    assert second.status.condition("Ready").last_transition_time == first.status.condition("Ready").last_transition_time  # type: ignore[union-attr]
    done = plan(make_input(S3, DONE3, second.status, now=later))
    assert done.status.condition("Ready").status == "True"  # type: ignore[union-attr]
    assert done.status.condition("Ready").last_transition_time == "2026-11-28T02:05:00Z"  # type: ignore[union-attr]
    assert (
        done.status.condition("Stalled").last_transition_time == first.status.condition("Stalled").last_transition_time
    )  # type: ignore[union-attr]


def test_a_new_generation_moves_every_condition_to_it() -> None:
    old = plan(make_input(S3, DONE3, generation=2)).status
    status = plan(make_input(S3, DONE3, old, generation=3)).status
    assert status.observed_generation == 3
    assert {c.observed_generation for c in status.conditions} == {3}, "a condition kept an old generation"
    ready = status.condition("Ready")
    assert ready is not None
    assert ready.status == "True"
    assert ready.last_transition_time == old.condition("Ready").last_transition_time  # type: ignore[union-attr]


def test_attempts_count_the_current_version_only() -> None:
    earlier = prev_status(version="v1", hosts={H1: {"phase": "Ready", "version": "v1", "ready": True, "attempts": 3}})
    fresh = plan(make_input(S3, UPDATED, earlier)).status.host(H1)
    assert fresh is not None
    assert fresh.attempts == 0
    same = prev_status(hosts={H1: {"phase": "Updated", "version": "v1", "ready": True, "attempts": 2}})
    kept = plan(make_input(S3, UPDATED, same)).status.host(H1)
    assert kept is not None
    assert kept.attempts == 2


def test_skipping_host_key_checks_is_a_false_host_keys_verified_condition_and_status_field() -> None:
    observed = [observe(f"host-{i}", "v2") for i in (1, 2, 3)]
    for insecure, expected in ((False, ("True", "KnownHosts")), (True, ("False", "InsecureSkipHostKeyCheck"))):
        result = plan(make_input(make_spec(ssh={"insecureSkipHostKeyCheck": insecure}), observed))
        verified = result.status.condition("HostKeysVerified")
        assert verified is not None
        assert (verified.status, verified.reason) == expected
        assert result.status.host_keys_verified is (not insecure)
    assert result.complete, "skipping host key checks is loud, but it does not stop the rollout"
