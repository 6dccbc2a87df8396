"""Action outcomes folded into a host's status: each outcome changes exactly the fields it should."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kapistrano.api.status import HostPhase, HostStatus, format_time
from kapistrano.plan import ActionKind
from kapistrano.plan.outcomes import (
    ActionFailed,
    ActionStarted,
    ActionSucceeded,
    HostChanges,
    HostOutcome,
    apply_outcome,
    apply_progress,
    outcome_phase,
)

NOW = datetime(2026, 11, 28, 2, 0, 0, tzinfo=UTC)
STAMP = format_time(NOW)
PUBLISH, ROLLBACK, RESTART, HEAL, UPDATE = (
    ActionKind.PUBLISH,
    ActionKind.ROLLBACK,
    ActionKind.RESTART,
    ActionKind.HEAL,
    ActionKind.UPDATE,
)

#: A ready host on v1, as the planner writes it before an action starts.
ON_V1 = HostStatus(
    name="h1",
    phase=HostPhase.READY,
    version="v1",
    release="rel-v1",
    ready=True,
    ready_since=format_time(NOW - timedelta(hours=1)),
    attempts=2,
    restarts=5,
    previous_release="rel-v0",
    message="ready",
    last_transition_time=format_time(NOW - timedelta(hours=1)),
)


@dataclass
class Case:
    """One outcome applied to a host: the fields that must change (every other one stays)."""

    id: str
    outcome: HostOutcome
    changed: dict[str, Any]
    phase: HostPhase
    host: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "a publish leaving v1 counts an attempt and remembers the release to roll back to",
        ActionStarted(PUBLISH, "v2"),
        {"action": "Publish", "ready": False, "attempts": 3, "previous_release": "rel-v1"},
        HostPhase.PUBLISHING,
    ),
    Case(
        "a publish of a host already on the version keeps the rollback target it has",
        ActionStarted(PUBLISH, "v1"),
        {"action": "Publish", "ready": False, "attempts": 3},
        HostPhase.PUBLISHING,
    ),
    Case(
        "a publish resuming an interrupted one keeps the rollback target recorded before it",
        ActionStarted(PUBLISH, "v2"),
        {"ready": False, "attempts": 3},
        HostPhase.PUBLISHING,
        host={"action": "Publish"},
    ),
    Case(
        "a rollback starting is recorded without counting an attempt",
        ActionStarted(ROLLBACK, "v2"),
        {"action": "Rollback", "ready": False},
        HostPhase.PUBLISHING,
    ),
    Case(
        "a requested restart starting takes the host out of the ready ones",
        ActionStarted(RESTART, "v1"),
        {"action": "Restart", "ready": False},
        HostPhase.RESTARTING,
    ),
    Case(
        "a heal starting takes the host out of the ready ones",
        ActionStarted(HEAL, "v1"),
        {"action": "Heal", "ready": False},
        HostPhase.RESTARTING,
    ),
    Case(
        "a publish that ended ready puts the host on the version, ready since now",
        ActionSucceeded(PUBLISH, NOW, version="v2"),
        {"action": None, "ready": True, "ready_since": STAMP, "restarts": 6, "version": "v2"},
        HostPhase.READY,
        host={"action": "Publish", "ready": False},
    ),
    Case(
        "a rollback that ended ready leaves the version to the next reading",
        ActionSucceeded(ROLLBACK, NOW),
        {"action": None, "ready": True, "ready_since": STAMP, "restarts": 6},
        HostPhase.ROLLED_BACK,
        host={"action": "Rollback", "ready": False},
    ),
    Case(
        "a requested restart that ended ready records the request it completed",
        ActionSucceeded(RESTART, NOW, version="v1", restarted_for="token-1"),
        {"action": None, "ready_since": STAMP, "restarts": 6, "restarted_for": "token-1"},
        HostPhase.READY,
        host={"action": "Restart"},
    ),
    Case(
        "a heal that ended ready completes no restart request",
        ActionSucceeded(HEAL, NOW, version="v1"),
        {"action": None, "ready_since": STAMP, "restarts": 6},
        HostPhase.READY,
        host={"action": "Heal", "restarted_for": "token-0"},
    ),
    Case(
        "a publish that failed marks the version failed on the host",
        ActionFailed(PUBLISH, "v2", transient=False),
        {"action": None, "ready": False, "failed_version": "v2"},
        HostPhase.FAILED,
        host={"action": "Publish"},
    ),
    Case(
        "an update that failed marks the version failed on the host",
        ActionFailed(UPDATE, "v2", transient=False),
        {"action": None, "ready": False, "failed_version": "v2"},
        HostPhase.FAILED,
    ),
    Case(
        "a rollback that failed is not tried again",
        ActionFailed(ROLLBACK, "v2", transient=False),
        {"action": None, "ready": False, "rollback_failed": True},
        HostPhase.FAILED,
        host={"action": "Rollback", "failed_version": "v2"},
    ),
    Case(
        "a heal that failed fails the host but not the version",
        ActionFailed(HEAL, "v1", transient=False),
        {"action": None, "ready": False},
        HostPhase.FAILED,
        host={"action": "Heal"},
    ),
    Case(
        "a transient failure keeps the recorded intent, so the action is resumed",
        ActionFailed(PUBLISH, "v2", transient=True),
        {},
        HostPhase.UNREACHABLE,
        host={"action": "Publish", "ready": False},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_an_outcome_changes_exactly_its_fields(case: Case) -> None:
    before = ON_V1.model_copy(update=case.host)
    after = apply_outcome(before, case.outcome)
    assert after.model_dump() == before.model_dump() | case.changed
    assert after.wire() == HostStatus.model_validate(after.wire()).wire(), "the result is a valid status entry"
    assert outcome_phase(case.outcome) == case.phase


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_applying_an_outcome_leaves_the_host_it_was_given_as_it_was(case: Case) -> None:
    before = ON_V1.model_copy(update=case.host)
    snapshot = before.model_dump()
    apply_outcome(before, case.outcome)
    assert before.model_dump() == snapshot


def test_an_update_records_no_intent_of_its_own() -> None:
    """Fetching a release disturbs nothing on the host, so there is no phase to record before it."""
    with pytest.raises(KeyError):
        outcome_phase(ActionStarted(UPDATE, "v2"))


@pytest.mark.parametrize(
    ("phase", "changed"),
    [
        (None, {"message": "sneakers stopping"}),
        (HostPhase.READY, {"message": "sneakers stopping"}),
        (HostPhase.RESTARTING, {"message": "sneakers stopping", "phase": "Restarting", "last_transition_time": STAMP}),
    ],
    ids=["no phase", "the same phase", "a new phase"],
)
def test_progress_changes_the_phase_time_only_when_the_phase_changes(
    phase: HostPhase | None, changed: dict[str, Any]
) -> None:
    after = apply_progress(ON_V1, "sneakers stopping", phase, NOW)
    assert after.model_dump() == ON_V1.model_dump() | changed
    assert ON_V1.message == "ready"


def test_every_field_an_outcome_may_change_is_a_host_status_field() -> None:
    assert set(HostChanges.__annotations__) <= set(HostStatus.model_fields)
