"""One verdict per Release: the planner's PHASE, kstatus's rules and Argo CD's health script always agree.

Each case runs the real planner, then reads its status three ways: the PHASE column, kstatus (computed
here from its documented rules for custom resources) and manifests/argocd/health.lua run in Lua 5.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import Phase, ReleaseStatus
from kapistrano.plan import HostObservation, plan

from .planfixtures import ago, make_input, make_spec, observe, prev_status
from .test_argocd_lua import HEALTH, run

H1, H2, H3 = "host-1", "host-2", "host-3"

#: The verdict each phase stands for: (kstatus status, Argo CD health).
PHASE_VERDICT = {
    Phase.PENDING: ("InProgress", "Progressing"),
    Phase.PROGRESSING: ("InProgress", "Progressing"),
    Phase.PAUSED: ("InProgress", "Suspended"),
    Phase.READY: ("Current", "Healthy"),
    Phase.DEGRADED: ("Failed", "Degraded"),
    Phase.FAILED: ("Failed", "Degraded"),
}


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's verdict for a custom resource (pure).

    Its rules, in its order: observedGeneration behind metadata.generation -> InProgress; then the first
    of Reconciling=True -> InProgress, Stalled=True -> Failed; otherwise Current.
    """
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return "InProgress"
    for condition in status.get("conditions", []):
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed"
    return "Current"


@dataclass
class Case:
    """What the planner sees, and the one verdict every reader must give."""

    id: str
    spec: ReleaseSpec
    observed: list[HostObservation]
    status: ReleaseStatus | None
    phase: Phase


def dead(name: str) -> HostObservation:
    """A host on v2 whose service process is gone."""
    return observe(name, "v2", ready=False, services_running=False)


def unready(name: str) -> HostObservation:
    """A host on v2 whose service runs but fails readiness."""
    return observe(name, "v2", ready=False, services_running=True)


REPORT = make_spec(3, driftPolicy="Report")
FAILED_HOST = {H1: {"phase": "RolledBack", "version": "v1", "failedVersion": "v2"}}
STUCK = {h: {"phase": "Updated", "version": "v1", "ready": True} for h in (H1, H3)} | {H2: {"phase": "Unreachable"}}

CASES = [
    Case(
        "pending: no host reachable yet",
        make_spec(3),
        [HostObservation(name=h, reachable=False) for h in (H1, H2, H3)],
        None,
        Phase.PENDING,
    ),
    Case("progressing: fresh rollout", make_spec(3), [observe(h, "v1") for h in (H1, H2, H3)], None, Phase.PROGRESSING),
    Case(
        "progressing: last host on the version, unreachable",
        make_spec(3),
        [observe(H1, "v2"), observe(H2, "v2"), HostObservation(name=H3, reachable=False)],
        prev_status(hosts={H3: {"phase": "Ready", "version": "v2", "ready": True}}),
        Phase.PROGRESSING,
    ),
    Case(
        "progressing: a dead service being healed",
        make_spec(3),
        [observe(H1, "v2"), dead(H2), observe(H3, "v2")],
        None,
        Phase.PROGRESSING,
    ),
    Case("ready: every host on the version", make_spec(3), [observe(h, "v2") for h in (H1, H2, H3)], None, Phase.READY),
    Case(
        "ready: paused once every host is done",
        make_spec(3, paused=True),
        [observe(h, "v2") for h in (H1, H2, H3)],
        None,
        Phase.READY,
    ),
    Case(
        "paused: spec.paused mid-rollout",
        make_spec(3, paused=True),
        [observe(h, "v1", has=True) for h in (H1, H2, H3)],
        None,
        Phase.PAUSED,
    ),
    Case(
        "paused: canary stop",
        make_spec(3, strategy={"pauseAfterHosts": 1}),
        [observe(H1, "v2"), observe(H2, "v1", has=True), observe(H3, "v1", has=True)],
        None,
        Phase.PAUSED,
    ),
    Case(
        "degraded: no progress past the deadline",
        make_spec(3),
        [observe(H1, "v1", has=True), HostObservation(name=H2, reachable=False), observe(H3, "v1", has=True)],
        prev_status(last_progress_time=ago(700), hosts=STUCK),
        Phase.DEGRADED,
    ),
    Case(
        "degraded: drift reported (service down)",
        REPORT,
        [observe(H1, "v2"), dead(H2), observe(H3, "v2")],
        None,
        Phase.DEGRADED,
    ),
    Case(
        "degraded: drift reported (not ready)",
        REPORT,
        [unready(H1), observe(H2, "v2"), observe(H3, "v2")],
        None,
        Phase.DEGRADED,
    ),
    Case(
        "degraded: live but unready services are never restarted",
        make_spec(3),
        [unready(H1), unready(H2), unready(H3)],
        None,
        Phase.DEGRADED,
    ),
    Case(
        "failed: a rolled back host",
        make_spec(3),
        [observe(H1, "v1"), observe(H2, "v1", has=True), observe(H3, "v1", has=True)],
        prev_status(hosts=FAILED_HOST),
        Phase.FAILED,
    ),
    Case(
        "failed: a changed host key",
        make_spec(3),
        [
            observe(H1, "v1"),
            observe(H2, "v1"),
            HostObservation(name=H3, error_reason="HostKeyMismatch", error_message="key changed"),
        ],
        None,
        Phase.FAILED,
    ),
]


def release_with(status: ReleaseStatus, spec: ReleaseSpec) -> dict[str, Any]:
    """The Release as kstatus and Argo CD read it from the API server."""
    return {
        "apiVersion": "kapistrano.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "app", "namespace": "deploy", "generation": 1},
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "status": status.wire(),
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_phase_kstatus_and_argocd_agree(case: Case) -> None:
    status = plan(make_input(case.spec, case.observed, case.status)).status
    obj = release_with(status, case.spec)
    assert status.phase == case.phase, status.message
    assert (kstatus(obj), run(HEALTH, obj)["status"]) == PHASE_VERDICT[Phase(status.phase)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reconciling_and_stalled_are_never_both_true(case: Case) -> None:
    status = plan(make_input(case.spec, case.observed, case.status)).status
    true = {c.type for c in status.conditions if c.status == "True"}
    assert not {"Reconciling", "Stalled"} <= true
    assert ("Ready" in true) == (kstatus(release_with(status, case.spec)) == "Current")


def test_a_heal_under_way_stays_progressing_with_reason_healing() -> None:
    healing = prev_status(hosts={H2: {"phase": "Restarting", "version": "v2", "action": "Heal"}})
    observed = [observe(H1, "v2"), dead(H2), observe(H3, "v2")]
    status = plan(make_input(make_spec(3), observed, healing, busy=frozenset({H2}))).status
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert (status.phase, status.message) == ("Progressing", "healing host-2")
    assert conditions["Reconciling"] == ("True", "Healing")
    assert run(HEALTH, release_with(status, make_spec(3)))["status"] == "Progressing"


def test_every_phase_is_covered() -> None:
    assert {c.phase for c in CASES} == set(Phase)


@pytest.mark.parametrize(
    ("observed", "drifted"),
    [
        pytest.param(
            [observe(H1, "v2"), dead(H2), observe(H3, "v2")],
            ("ServiceDown", "services down on host-2"),
            id="service-down",
        ),
        pytest.param(
            [unready(H1), observe(H2, "v2"), observe(H3, "v2")],
            ("NotReady", "services running but not ready on host-1"),
            id="not-ready",
        ),
    ],
)
def test_drift_under_report_is_stalled_at_once(observed: list[HostObservation], drifted: tuple[str, str]) -> None:
    status = plan(make_input(REPORT, observed)).status
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions["Ready"] == ("False", "Drifted")
    assert conditions["Stalled"] == ("True", "Drifted")
    assert conditions["Reconciling"] == ("False", "Drifted")
    assert conditions["Drifted"] == ("True", drifted[0])
    assert status.message == drifted[1]
    assert run(HEALTH, release_with(status, REPORT)) == {"status": "Degraded", "message": drifted[1]}
