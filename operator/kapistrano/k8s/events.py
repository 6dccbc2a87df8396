"""Kubernetes Events on a Release for host transitions and failures.

Only phase changes and failures become Events (progress messages go to the status), each phase of a
host once per action, so a rollout of n hosts posts a bounded handful of Events per host (about six:
updating, updated, publishing, restarting, waiting ready, ready), however many services it restarts
and however long it takes. Messages pass through redact(): no key material or secret value leaves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import kopf

from kapistrano.api.status import HistoryEntry, HostPhase
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.redaction import redact

#: Host phase -> Event reason for Normal events.
PHASE_REASONS = {
    HostPhase.UPDATING: "HostUpdating",
    HostPhase.UPDATED: "HostUpdated",
    HostPhase.PUBLISHING: "HostPublishing",
    HostPhase.RESTARTING: "HostRestarting",
    HostPhase.WAITING_READY: "HostWaitingReady",
    HostPhase.READY: "HostReady",
    HostPhase.ROLLED_BACK: "HostRolledBack",
}

Poster = Callable[[Any, str, str, str], None]


def camel(reason: str, default: str) -> str:
    """A CamelCase Event reason: `reason` if it is one, else `default` (pure)."""
    return reason if re.fullmatch(r"[A-Z][A-Za-z0-9]*", reason or "") else default


def describe(event: HostEvent) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event for a host event, or None for mere progress (pure)."""
    message = redact(f"{event.host}: {event.message}")[:1024]
    if event.warning:
        return "Warning", camel(event.reason, "HostFailed"), message
    if event.phase is None:
        return None
    reason = PHASE_REASONS.get(HostPhase(event.phase))
    if reason is None:
        return "Warning", f"Host{HostPhase(event.phase).value}", message
    return "Normal", reason, message


def _kopf_post(body: Any, type_: str, reason: str, message: str) -> None:
    """Queue an Event through kopf's poster (side effect: an Event is posted)."""
    kopf.event(body, type=type_, reason=reason, message=message)


#: Phases that end what is done to a host: the next phase begins another action, announced afresh.
SETTLED_PHASES = frozenset({HostPhase.READY, HostPhase.ROLLED_BACK, HostPhase.FAILED, HostPhase.UNREACHABLE})


def announced(posted: dict[str, list[HostPhase]], event: HostEvent) -> bool:
    """Whether a host event's phase is to be announced; notes it when so (changes `posted`).

    Each phase of a host is announced once per action, however many services go through it
    (stopping and readiness alternate per service): `posted` holds, per host, the phases announced
    since its last settled phase (Ready, RolledBack, Failed, Unreachable), which starts afresh.
    Warnings are always announced.
    """
    if event.phase is None or event.warning:
        return True
    phase = HostPhase(event.phase)
    seen = posted.setdefault(event.host, [])
    if seen and seen[-1] == phase:
        return False
    if phase in SETTLED_PHASES:
        seen.clear()
    elif phase in seen:
        return False
    seen.append(phase)
    return True


def event_sink(body: Any, post: Poster = _kopf_post) -> EventSink:
    """A HostEvent sink posting Kubernetes Events on `body`, each host phase once per action (side effects: Events)."""
    posted: dict[str, list[HostPhase]] = {}

    def emit(event: HostEvent) -> None:
        if not announced(posted, event):
            return
        found = describe(event)
        if found is not None:
            post(body, *found)

    return emit


def post(body: Any, type_: str, reason: str, message: str) -> None:
    """Post one Event on the Release (side effect: an Event), with the message redacted."""
    _kopf_post(body, type_, camel(reason, "ReleaseEvent"), redact(message)[:1024])


def post_request(body: Any, entry: HistoryEntry) -> None:
    """Post the Event of a request acted on, saying who asked and why (side effect: an Event)."""
    who = entry.requested_by or "unknown"
    why = f" ({entry.reason})" if entry.reason else ""
    post(body, "Normal", f"{entry.request}Requested", f"{entry.message}; asked by {who}{why}")
