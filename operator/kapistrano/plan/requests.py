"""Requests of an operator on duty (pause, resume, promote, abort): acted on once, recorded, never spec edits (pure).

Each request is an annotation on the Release, so a GitOps sync of the unchanged manifest leaves it in place.
take() records a new request in the status (and its history entry); effective() is the spec as the
requests in effect make it (paused, canary stop lifted, version back to the abort target); settle()
says, once an abort is done, that the rollout stopped there (Stalled, reason Aborted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kapistrano.api.spec import ReleaseSpec
from kapistrano.api.status import ConditionType, HistoryEntry, Phase, Reason, ReleaseStatus, RequestKind, format_time
from kapistrano.plan.conditions import FALSE, TRUE, Wanted, merge_conditions, stalled_conditions

#: Status fields the requests keep, carried from one status to the next.
CARRIED = ("paused_for", "promoted_for", "promoted_version", "aborted_for", "aborted_version", "abort_target")


@dataclass(frozen=True)
class Request:
    """One request: the annotation's value, who set it and why."""

    token: str
    by: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Requests:
    """The requests on the Release as last read; `resume` is who removed the pause and why (token unused)."""

    pause: Request | None = None
    promote: Request | None = None
    abort: Request | None = None
    resume: Request = field(default_factory=lambda: Request(""))
    #: The retry request's value: a new one also ends an abort, so the aborted version is rolled out again.
    retry: str | None = None


def carried(status: ReleaseStatus) -> dict[str, Any]:
    """The request fields of a status, to carry into the next one (pure)."""
    return {name: getattr(status, name) for name in CARRIED}


def _entry(kind: RequestKind, request: Request, version: str, now: datetime, message: str) -> HistoryEntry:
    """The history entry of a request acted on (pure)."""
    return HistoryEntry(
        version=version,
        completed_at=format_time(now),
        request=kind,
        token=request.token or None,
        requested_by=request.by or None,
        reason=request.reason or None,
        message=message,
    )


def _pause(spec: ReleaseSpec, status: ReleaseStatus, requests: Requests, now: datetime) -> list[HistoryEntry]:
    """A new pause request, or the pause request gone (a resume), as history entries (pure)."""
    asked = requests.pause
    if asked is not None and asked.token != status.paused_for:
        return [_entry(RequestKind.PAUSE, asked, spec.version, now, "no further host starts publishing")]
    if asked is None and status.paused_for is not None:
        return [_entry(RequestKind.RESUME, requests.resume, spec.version, now, "hosts start publishing again")]
    return []


def _promote(spec: ReleaseSpec, status: ReleaseStatus, request: Request, now: datetime) -> HistoryEntry:
    """The history entry of a new promote request (pure)."""
    limit = spec.strategy.pause_after_hosts
    said = f"past the stop after {limit} host(s)" if limit is not None else "no pauseAfterHosts stop to go past"
    return _entry(RequestKind.PROMOTE, request, spec.version, now, f"version {spec.version} promoted: {said}")


def _abort(spec: ReleaseSpec, status: ReleaseStatus, request: Request, now: datetime) -> tuple[dict[str, Any], str]:
    """The status update and message of a new abort request (pure)."""
    target = status.current_version
    update: dict[str, Any] = {"aborted_for": request.token}
    if target is None or target == spec.version:
        return update, f"nothing to abort: no rollout from an earlier version of {spec.version} is under way"
    update |= {"aborted_version": spec.version, "abort_target": target}
    return update, f"version {spec.version} aborted: hosts on it go back to {target}"


def take(
    spec: ReleaseSpec, status: ReleaseStatus, requests: Requests, now: datetime
) -> tuple[ReleaseStatus, list[HistoryEntry]]:
    """The status with new requests recorded, and the history entries they add (pure)."""
    entries = _pause(spec, status, requests, now)
    update: dict[str, Any] = {"paused_for": requests.pause.token if requests.pause else None}
    if requests.promote is not None and requests.promote.token != status.promoted_for:
        update |= {"promoted_for": requests.promote.token, "promoted_version": spec.version}
        entries.append(_promote(spec, status, requests.promote, now))
    if requests.abort is not None and requests.abort.token != status.aborted_for:
        changes, message = _abort(spec, status, requests.abort, now)
        update |= changes
        entries.append(_entry(RequestKind.ABORT, requests.abort, spec.version, now, message))
    if requests.retry is not None and requests.retry != status.retried_for and aborting(spec, status):
        update |= {"aborted_version": None, "abort_target": None}
    elif not entries and update["paused_for"] == status.paused_for:
        return status, []
    history = trimmed([*reversed(entries), *status.history], spec.revision_history_limit)
    return status.model_copy(update={**update, "history": history}), entries


def trimmed(history: list[HistoryEntry], limit: int) -> list[HistoryEntry]:
    """The newest `limit` rollouts and newest `limit` requests, in order: requests never push out versions (pure)."""
    kept: dict[bool, int] = {True: 0, False: 0}
    out = []
    for entry in history:
        kind = entry.request is not None
        if kept[kind] < limit:
            kept[kind] += 1
            out.append(entry)
    return out


def aborting(spec: ReleaseSpec, status: ReleaseStatus) -> bool:
    """An abort of spec.version is in effect (pure)."""
    return status.aborted_version == spec.version and status.abort_target is not None


def effective(spec: ReleaseSpec, status: ReleaseStatus) -> ReleaseSpec:
    """The spec as the requests in effect make it (pure)."""
    update: dict[str, Any] = {}
    if status.paused_for is not None:
        update["paused"] = True
    going_back = aborting(spec, status)
    if (going_back or status.promoted_version == spec.version) and spec.strategy.pause_after_hosts is not None:
        update["strategy"] = spec.strategy.model_copy(update={"pause_after_hosts": None})
    if going_back:
        assert status.abort_target is not None
        update |= {"version": status.abort_target, "paused": False}  # no stop on the way back
        git = spec.source.git
        if git is not None and git.ref == spec.version:  # a ref pinned to the version moves with it
            update["source"] = spec.source.model_copy(update={"git": git.model_copy(update={"ref": None})})
    return spec.model_copy(update=update) if update else spec


def settle(spec: ReleaseSpec, status: ReleaseStatus, complete: bool, now: datetime, generation: int) -> ReleaseStatus:
    """During an abort of spec.version: the status says so, and Stalled once every host is back (pure)."""
    if not aborting(spec, status):
        return status
    message = f"version {spec.version} aborted: " + (
        f"every host is back on {status.abort_target}; change spec.version to go on"
        if complete
        else f"rolling hosts back to {status.abort_target} ({status.message})"
    )
    if complete:
        wanted = [*stalled_conditions(Reason.ABORTED, message)]
        wanted.append(Wanted(ConditionType.PROGRESSING, FALSE, Reason.ABORTED, message))
        phase = Phase.DEGRADED
    else:
        wanted = [
            Wanted(ConditionType.READY, FALSE, Reason.ABORTED, message),
            Wanted(ConditionType.RECONCILING, TRUE, Reason.ABORTED, message),
        ]
        phase = Phase.PROGRESSING
    kept = [c for c in status.conditions if c.type not in {w.type for w in wanted}]
    merged = merge_conditions(status.conditions, wanted, generation, now)
    conditions = [*merged, *kept]
    return status.model_copy(update={"message": message, "phase": phase, "conditions": conditions})
