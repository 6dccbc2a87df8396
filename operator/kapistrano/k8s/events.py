"""Kubernetes Events on a Release for host transitions and failures.

Only phase changes and failures become Events (progress messages go to the status), so a rollout of
n hosts posts a handful of Events per host. Messages pass through redact(): no key material or secret value leaves.
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


def event_sink(body: Any, post: Poster = _kopf_post) -> EventSink:
    """A HostEvent sink that posts Kubernetes Events on `body` (side effects: Events)."""
    last_phase: dict[str, str] = {}

    def emit(event: HostEvent) -> None:
        if event.phase is not None and not event.warning:
            if last_phase.get(event.host) == event.phase:
                return
            last_phase[event.host] = str(event.phase)
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
