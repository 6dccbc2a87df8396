"""The status recorder saves what changed and nothing else."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from kapistrano.api.status import HostPhase, HostStatus, ReleaseStatus
from kapistrano.engine.events import HostEvent
from kapistrano.engine.store import FileStatusStore, StatusRecorder
from kapistrano.plan import ActionKind
from kapistrano.plan.outcomes import ActionStarted


def clock() -> datetime:
    return datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


async def test_a_status_that_did_not_change_is_not_saved_again(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    recorder = StatusRecorder(FileStatusStore(path), ReleaseStatus(hosts=[HostStatus(name="h1")]), clock)
    await recorder.flush()
    path.unlink()  # a second save would write the file again
    await recorder.flush()
    await recorder.replace(ReleaseStatus(hosts=[HostStatus(name="h1")]))  # equal, though another object
    assert (recorder.saves, recorder.skipped) == (1, 2)
    assert not path.exists()

    recorder.apply(HostEvent("h1", "switching current", HostPhase.PUBLISHING))
    await recorder.flush()
    assert recorder.saves == 2
    assert json.loads(path.read_text())["hosts"][0]["phase"] == "Publishing"


async def test_an_action_outcome_reaches_the_saved_status(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    host = HostStatus(name="h1", phase=HostPhase.READY, version="v1", release="rel-v1", ready=True)
    recorder = StatusRecorder(FileStatusStore(path), ReleaseStatus(hosts=[host]), clock)
    started = ActionStarted(ActionKind.PUBLISH, "v2")
    assert recorder.apply(HostEvent("h1", "publish starting", HostPhase.PUBLISHING, outcome=started))
    await recorder.flush()
    saved = json.loads(path.read_text())["hosts"][0]
    assert {k: saved[k] for k in ("phase", "action", "ready", "attempts", "previousRelease", "message")} == {
        "phase": "Publishing",
        "action": "Publish",
        "ready": False,
        "attempts": 1,
        "previousRelease": "rel-v1",
        "message": "publish starting",
    }
    assert saved["lastTransitionTime"] == "2026-11-28T02:00:00Z"
    assert host.phase == "Ready", "the entry the status held before is left as it was"


class GatedStore:
    """A store whose first save takes a snapshot at once and lands only when the test opens the gate.

    That is what a save through a worker thread or a slow API server does: the status it writes was
    read at one moment, and it may land after a later save.
    """

    def __init__(self, *, snapshot_at_once: bool) -> None:
        self.snapshot_at_once = snapshot_at_once
        self.landed: list[str] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def load(self) -> ReleaseStatus | None:
        return None

    async def save(self, status: ReleaseStatus) -> None:
        first = not self.entered.is_set()
        self.entered.set()
        taken = status.message if self.snapshot_at_once else None
        if first:
            await self.gate.wait()
        self.landed.append(taken if taken is not None else status.message)


async def a_save_held_at_the_gate(store: GatedStore, message: str) -> tuple[StatusRecorder, asyncio.Task[None]]:
    """A recorder of a status with `message`, and its first save, started and held by the store."""
    recorder = StatusRecorder(store, ReleaseStatus(message=message), clock)
    saving = asyncio.create_task(recorder.flush())
    await store.entered.wait()
    return recorder, saving


async def test_a_slow_save_never_lands_after_a_newer_one() -> None:
    store = GatedStore(snapshot_at_once=True)
    recorder, first = await a_save_held_at_the_gate(store, "older")
    recorder.status.message = "newer"
    second = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0)  # one turn of the loop: enough for the second save to land, were it not held back
    store.gate.set()
    await asyncio.gather(first, second)
    assert store.landed[-1] == "newer", store.landed
    assert store.landed == ["older", "newer"]


async def test_a_save_writes_the_status_as_it_was_when_it_was_asked_for() -> None:
    store = GatedStore(snapshot_at_once=False)
    recorder, saving = await a_save_held_at_the_gate(store, "asked")
    recorder.status.message = "changed later"
    store.gate.set()
    await saving
    assert store.landed == ["asked"]


async def test_a_save_whose_caller_was_cancelled_still_lands_before_the_next_one() -> None:
    """A run stopped mid-save (the flush loop cancelled) ends with its last status on disk, not an older one."""
    store = GatedStore(snapshot_at_once=True)
    recorder, cut = await a_save_held_at_the_gate(store, "older")
    cut.cancel()
    recorder.status.message = "final"
    final = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0)  # one turn of the loop: enough for the final save to land, were it not held back
    store.gate.set()
    await final
    assert store.landed == ["older", "final"]
