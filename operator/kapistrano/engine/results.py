"""What a rollout reconciles toward (Desired) and how a run of it ended (Result, Outcome)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import Reason, ReleaseStatus
from kapistrano.plan.requests import Requests


@dataclass(frozen=True)
class Desired:
    """The spec to reconcile toward, as last read."""

    spec: ReleaseSpec
    generation: int = 1
    restart_token: str | None = None
    retry_token: str | None = None
    #: Pause, promote and abort requests (annotations) as last read.
    requests: Requests = field(default_factory=Requests)
    #: The spec as written, when `spec` is what the requests in effect make of it.
    asked: ReleaseSpec | None = None


class Result(StrEnum):
    """Why a run returned."""

    READY = "Ready"
    STALLED = "Stalled"
    PAUSED = "Paused"
    DEADLINE = Reason.PROGRESS_DEADLINE_EXCEEDED.value
    DRIFTED = Reason.DRIFTED.value


#: Stalled reasons that the hosts themselves may clear (unlike a failed version): checked again later.
WAITS_FOR_HOSTS = frozenset({Result.DEADLINE.value, Result.DRIFTED.value})


@dataclass(frozen=True)
class Outcome:
    """How a run ended, with the last status."""

    result: Result
    message: str
    status: ReleaseStatus
