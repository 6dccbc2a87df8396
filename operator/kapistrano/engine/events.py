"""Progress events the engine emits, for the status writer and for live displays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kapistrano.api.status import HostPhase
from kapistrano.plan.outcomes import HostOutcome


@dataclass(frozen=True)
class HostEvent:
    """Something happened on one host.

    `phase` changes the host's recorded phase; `message` is the one-line progress text
    (e.g. "sneakers stopping (pid 4242)"); `warning` marks failures (Kubernetes Event type Warning);
    `outcome`, on the events that start and end an action, is what the action changed on the host;
    `hook`, on a line of a hook's output (`message`), names the hook: such lines are shown, not recorded.
    """

    host: str
    message: str
    phase: HostPhase | None = None
    reason: str = ""
    warning: bool = False
    outcome: HostOutcome | None = None
    hook: str | None = None


EventSink = Callable[[HostEvent], None]


def fan_out(*sinks: EventSink) -> EventSink:
    """One sink that forwards every event to all of `sinks` (pure)."""

    def emit(event: HostEvent) -> None:
        for sink in sinks:
            sink(event)

    return emit
