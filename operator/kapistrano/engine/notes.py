"""Requests acted on, written to every host's revisions.log the way Capistrano logs a rollback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.api.status import HistoryEntry
from kapistrano.engine.driver import HostDriver
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.hosts.errors import HostError


def request_line(entry: HistoryEntry) -> str:
    """The revisions.log line of a request: who asked, what, why and what it did (pure)."""
    why = f" ({entry.reason})" if entry.reason else ""
    return f"{entry.requested_by or 'unknown'} requested {entry.request} of {entry.version}{why}: {entry.message}"


async def note_requests(
    spec: ReleaseSpec,
    entries: list[HistoryEntry],
    driver: Callable[[ReleaseSpec, Host], HostDriver],
    emit: EventSink,
) -> None:
    """Append each request's line on every host; a host that fails is a warning (network I/O, emits)."""
    if not entries:
        return

    async def one(host: Host) -> None:
        try:
            for entry in entries:
                await driver(spec, host).note(spec, request_line(entry))
        except HostError as exc:
            emit(HostEvent(host.name, f"revisions.log failed: {exc.message}", warning=True))

    await asyncio.gather(*(one(host) for host in spec.hosts))
