"""The status recorder saves what changed and nothing else."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
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
    recorder.replace(ReleaseStatus(hosts=[HostStatus(name="h1")]))  # equal, though another object
    await recorder.flush()
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


# -- coalescing: at most one save per min_interval, nothing lost --------------------------------------


class FakeTime:
    """A clock the test moves by hand; sleepers wake once it reaches their time (no real waiting)."""

    def __init__(self) -> None:
        self.now = clock()
        self._sleepers: list[tuple[datetime, asyncio.Event]] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.Event()
        self._sleepers.append((self.now + timedelta(seconds=seconds), woken))
        await woken.wait()

    async def advance(self, seconds: float) -> None:
        """Move the clock, wake who is due and let every task run until it waits again."""
        self.now += timedelta(seconds=seconds)
        for when, woken in list(self._sleepers):
            if when <= self.now:
                self._sleepers.remove((when, woken))
                woken.set()
        await settle()


async def settle() -> None:
    """Let every ready task run until it waits for something (a few turns of the loop)."""
    for _ in range(20):
        await asyncio.sleep(0)


class TimedStore:
    """Keeps every saved status with the fake time it was saved at."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.saved: list[tuple[datetime, ReleaseStatus]] = []

    async def load(self) -> ReleaseStatus | None:
        return None

    async def save(self, status: ReleaseStatus) -> None:
        self.saved.append((self.time(), status))


HOSTS = [f"h{i}" for i in range(10)]
PHASES = [HostPhase.PUBLISHING, HostPhase.RESTARTING, HostPhase.WAITING_READY, HostPhase.READY]


def fleet() -> ReleaseStatus:
    return ReleaseStatus(hosts=[HostStatus(name=name) for name in HOSTS])


async def test_many_transitions_within_one_second_make_one_save_and_the_final_save_has_them_all() -> None:
    time = FakeTime()
    store = TimedStore(time)
    recorder = StatusRecorder(store, fleet(), time, sleep=time.sleep)
    saver = asyncio.create_task(recorder.keep_saving())
    # 40 phase transitions (every host through four phases) within 0.8 s.
    for n, (phase, name) in enumerate((p, h) for p in PHASES for h in HOSTS):
        assert recorder.apply(HostEvent(name, f"event {n}", phase))
        await time.advance(0.02)
    assert len(store.saved) == 1, "the first change is saved at once, the others wait for the next second"
    await time.advance(0.25)  # past a second after the first save (made at 0.02 s)
    assert len(store.saved) == 2
    saver.cancel()
    await recorder.flush()  # the final save of a run: nothing is left to write
    assert len(store.saved) == 2
    last = store.saved[-1][1]
    assert [h.phase for h in last.hosts] == [HostPhase.READY] * len(HOSTS)
    assert last.message == "h9: event 39"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1.5), st.integers(0, 39)), min_size=1, max_size=60))
def test_saves_are_a_second_apart_whatever_comes_and_the_last_save_is_the_status(
    steps: list[tuple[float, int]],
) -> None:
    async def run() -> None:
        time = FakeTime()
        store = TimedStore(time)
        recorder = StatusRecorder(store, fleet(), time, sleep=time.sleep)
        saver = asyncio.create_task(recorder.keep_saving())
        for gap, n in steps:
            await time.advance(gap)
            recorder.apply(HostEvent(HOSTS[n % 10], f"event {n}", PHASES[n // 10]))
            await settle()
        saver.cancel()
        await asyncio.gather(saver, return_exceptions=True)
        await recorder.flush()
        times = [when for when, _ in store.saved]
        # Only the final save (when the run ends) may come sooner than a second after the last.
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times[:-1])]
        assert all(gap >= recorder.min_interval for gap in gaps), gaps
        assert store.saved[-1][1] == recorder.status

    asyncio.run(run())


async def test_changes_made_while_a_save_is_in_flight_go_into_the_next_save() -> None:
    time = FakeTime()
    store = GatedStore(snapshot_at_once=True)
    recorder = StatusRecorder(store, ReleaseStatus(message="first"), time, sleep=time.sleep)
    recorder.replace(ReleaseStatus(message="first"))
    saver = asyncio.create_task(recorder.keep_saving())
    await store.entered.wait()  # the first save is in flight, held by the store
    recorder.replace(ReleaseStatus(message="second"))
    store.gate.set()
    await settle()
    await time.advance(recorder.min_interval)
    assert store.landed == ["first", "second"]
    saver.cancel()
