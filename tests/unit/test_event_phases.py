"""Events announce each phase of a host once per action, however many services pass through it."""

from __future__ import annotations

from typing import Any

from kapistrano.api.status import HostPhase
from kapistrano.engine.events import HostEvent
from kapistrano.k8s.events import event_sink

P = HostPhase


def posted_reasons(events: list[HostEvent]) -> list[str]:
    """The reasons of the Events a sequence of host events posts (pure)."""
    posted: list[str] = []

    def post(body: Any, type_: str, reason: str, message: str) -> None:
        posted.append(reason)

    sink = event_sink({}, post)
    for event in events:
        sink(event)
    return posted


def test_three_services_restarted_on_a_host_make_one_event_per_phase() -> None:
    phases = [P.UPDATING, P.UPDATED, P.PUBLISHING] + [P.RESTARTING, P.WAITING_READY] * 3 + [P.READY]
    events = [HostEvent("h1", f"step {n}", phase) for n, phase in enumerate(phases)]
    assert posted_reasons(events) == [
        "HostUpdating", "HostUpdated", "HostPublishing", "HostRestarting", "HostWaitingReady", "HostReady",
    ]  # fmt: skip


def test_a_later_action_on_the_same_host_is_announced_again_and_warnings_always_are() -> None:
    phases = [P.PUBLISHING, P.RESTARTING, P.READY, P.READY, P.RESTARTING, P.WAITING_READY, P.READY]
    events = [HostEvent("h1", "x", phase) for phase in phases]
    events.insert(3, HostEvent("h1", "revisions.log failed", warning=True, reason="HostWarning"))
    assert posted_reasons(events) == [
        "HostPublishing", "HostRestarting", "HostReady", "HostWarning", "HostRestarting", "HostWaitingReady",
        "HostReady",
    ]  # fmt: skip


def test_hosts_are_counted_apart() -> None:
    events = [HostEvent(h, "x", phase) for phase in (P.PUBLISHING, P.READY) for h in ("h1", "h2")]
    assert posted_reasons(events) == ["HostPublishing", "HostPublishing", "HostReady", "HostReady"]
