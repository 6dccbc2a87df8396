"""Where the Release status lives between steps: a local file for the CLI, the resource for the operator.

The recorder keeps the status in memory, applies host events to it, and saves it coalesced: at most
one save per `min_interval` (1 s) per Release, whatever happens in between, plus the final save a run
makes when it ends (done, stalled, paused or stopped). A save takes a copy of the status as it is
when it starts, so what changes while it is in flight goes into the next one. Nothing the engine does
on a host waits for a save: the intent of an action is written on the host itself (hosts/intent.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from kapistrano.api.status import ReleaseStatus, format_time
from kapistrano.engine.events import HostEvent
from kapistrano.plan.outcomes import apply_outcome, apply_progress


class StatusStore(Protocol):
    """Loads and saves a Release status."""

    async def load(self) -> ReleaseStatus | None:
        """The last saved status, or None."""
        ...

    async def save(self, status: ReleaseStatus) -> None:
        """Persist the whole status."""
        ...


class FileStatusStore:
    """Status kept in a JSON file, in the same shape as the resource status (camelCase)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> ReleaseStatus | None:
        """Read the file if it exists (reads the file)."""
        return await asyncio.to_thread(self.load_sync)

    async def save(self, status: ReleaseStatus) -> None:
        """Write the file atomically (writes the file)."""
        await asyncio.to_thread(self.save_sync, status)

    def load_sync(self) -> ReleaseStatus | None:
        """Read the file if it exists (reads the file)."""
        if not self.path.exists():
            return None
        return ReleaseStatus.model_validate(json.loads(self.path.read_text()))

    def save_sync(self, status: ReleaseStatus) -> None:
        """Write the file atomically, so a kill at any instant leaves the old or the new status (writes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        with os.fdopen(fd, "w") as out:
            # No fsync: the rename is atomic against a killed process, which is what resuming needs;
            # an fsync per status save would cost more than a whole step between two hosts.
            json.dump(status.wire(), out, indent=2)
        Path(tmp).replace(self.path)


class StatusRecorder:
    """The live status of one rollout: applies events, saves through a store, coalescing writes."""

    def __init__(
        self,
        store: StatusStore,
        status: ReleaseStatus,
        clock: Callable[[], datetime],
        min_interval: float = 1.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.status = status
        self.clock = clock
        self.min_interval = min_interval
        self._sleep = sleep
        self._changed = asyncio.Event()
        self._after_save: list[Callable[[], None]] = []
        self._last_save: datetime | None = None
        self._dirty = False
        self._saved: dict[str, object] | None = None
        self.saves = 0
        self.skipped = 0
        self._saving = asyncio.Lock()
        self._inflight: asyncio.Future[None] | None = None

    def replace(self, status: ReleaseStatus) -> None:
        """Take a whole new status (from the planner), saved with the next coalesced save (changes the status)."""
        self.status = status
        self._mark()

    def _mark(self) -> None:
        """Note an unsaved change and wake the saver (changes recorder state)."""
        self._dirty = True
        self._changed.set()

    def apply(self, event: HostEvent) -> bool:
        """Apply a host event to the in-memory status; True when the host's phase changed (changes the status)."""
        if event.hook is not None:
            return False  # a line of a hook's output: for live displays, kept on the host
        index = next((i for i, h in enumerate(self.status.hosts) if h.name == event.host), None)
        if index is None:
            return False
        host = self.status.hosts[index]
        now = self.clock()
        self.status.message = f"{event.host}: {event.message}"
        changed = event.phase is not None and event.phase != host.phase
        if changed:
            self.status.last_progress_time = format_time(now)
        host = apply_progress(host, event.message, event.phase, now)
        if event.outcome is not None:
            host = apply_outcome(host, event.outcome)
        self.status.hosts[index] = host
        self._mark()
        return changed

    def due_in(self) -> float:
        """Seconds until the next save may start: min_interval after the last one (reads the clock)."""
        if self._last_save is None:
            return 0.0
        return max(0.0, self.min_interval - (self.clock() - self._last_save).total_seconds())

    async def maybe_flush(self) -> None:
        """Save if there are unsaved changes and the last save is old enough (writes)."""
        if self._dirty and self.due_in() <= 0:
            await self.flush()

    async def keep_saving(self) -> None:
        """Save changes as they come, never two saves within min_interval; runs until cancelled (writes).

        A change after a quiet spell is saved at once; changes that follow within min_interval wait
        for one save that takes them all.
        """
        while True:
            await self._changed.wait()
            wait = self.due_in()
            if wait > 0:
                await self._sleep(wait)
            self._changed.clear()
            await self.flush()

    async def flush(self) -> None:
        """Save now, unless the status is what was last saved (writes).

        A step that changes nothing (a long wait, a Release left drifted under driftPolicy Report)
        then costs no write: for the operator, no PATCH of the resource.
        """
        # One save at a time, each of a copy taken now: a slow save (a worker thread, the API
        # server) can neither land after a newer one nor write changes made while it runs. A save
        # whose caller was cancelled goes on (a thread cannot be stopped): the next one waits for it.
        async with self._saving:
            if self._inflight is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._inflight)
            wire = self.status.wire()
            self._dirty = False  # before the await: an event applied meanwhile marks it dirty again
            covered, self._after_save = self._after_save, []
            if wire == self._saved:
                self.skipped += 1
                self._run(covered)  # what was saved last is this very status
                return
            try:
                self._inflight = asyncio.ensure_future(self.store.save(self.status.model_copy(deep=True)))
                await asyncio.shield(self._inflight)
            except BaseException:
                self._after_save[:0] = covered  # not known to have landed: the next save covers them
                raise
            self._inflight = None
            self._saved = wire
            self.saves += 1
            self._last_save = self.clock()
            self._run(covered)

    def after_next_save(self, callback: Callable[[], None]) -> None:
        """Call `callback` once a save of the status as it is now (or newer) has landed (changes recorder state)."""
        self._after_save.append(callback)
        self._changed.set()

    @staticmethod
    def _run(callbacks: list[Callable[[], None]]) -> None:
        """Call each callback (side effects: theirs)."""
        for callback in callbacks:
            callback()
