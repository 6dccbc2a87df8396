"""Restarting the instances of a pidfile service on one host.

Instances restart together by default (instancePolicy Parallel): every old instance is quieted and
stopped at once, the host waits until all have exited, starts all new ones, then checks each one's
readiness, so a host costs its slowest drain plus one start, not the sum of them. OrderedReady
takes one instance at a time, each ready before the next is touched.

With replace StartFirst the new instance starts beside the old one (in `<pidfile>.next`), and the
old one is quieted and stopped only once the new one is ready: by a script detached on the host, so
the host is done as soon as its successors are ready and the old instances drain side by side with
the next host's replacement; the successor takes the instance's pid file once its predecessor is
gone. A host doing so never runs below its capacity. A restart first waits for such handoffs to end,
so a draining process is never signalled twice.

What each instance needs is decided from what runs on the host (`decide`, pure), so a restart cut
short anywhere resumes without stopping a new instance again: one that already runs from the
release is kept (when the caller converges, as a publish or a rollback does), one whose successor
already runs only waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from kapistrano.api.spec import InstancePolicy, PidfileManager, ReplacePolicy, Service
from kapistrano.hosts.managers.base import (
    ID_SUFFIX,
    EventKind,
    EventSink,
    InstanceRestart,
    InstanceState,
    ReadyCheck,
    RestartResult,
    ServiceContext,
    ServiceEvent,
    ignore_event,
    instance_env,
    run_script,
    settings_of,
)
from kapistrano.hosts.managers.pidfile import (
    StopOutcome,
    hand_off,
    launch,
    parse_states,
    pidfiles,
    read_lines,
    start_command,
    stop_budget,
    stop_pid,
    surge_pidfile,
    wait_handoffs_lines,
)
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import quote


class Step(StrEnum):
    """What one instance needs."""

    KEEP = "keep"  # runs from the release already: only its readiness is checked
    START = "start"  # nothing runs: start it
    REPLACE = "replace"  # StopFirst: stop the old process, then start the new one
    SURGE = "surge"  # StartFirst: start the new one beside the old one, stop the old one once it is ready
    ADOPT = "adopt"  # a successor already runs beside the old process (a surge cut short): finish it
    PROMOTE = "promote"  # a successor runs and the old process is gone: give it the instance's pid file


@dataclass(frozen=True)
class Slot:
    """One instance: its pid file, what runs there, and what runs in its StartFirst pid file."""

    index: int
    pidfile: str
    old: InstanceState
    new: InstanceState

    @property
    def successor_ok(self) -> bool:
        """A StartFirst successor runs from the release (pure)."""
        return bool(self.new.alive and self.new.on_current)

    @property
    def stale_successor(self) -> bool:
        """Something runs in the StartFirst pid file from another release: an orphan to stop (pure)."""
        return bool(self.new.alive) and not self.successor_ok


def decide(slot: Slot, *, start_first: bool, keep_current: bool) -> Step:
    """What an instance needs, from what runs on the host (pure).

    `keep_current` (publish, rollback, heal) keeps a process that already runs from the release;
    a restart request replaces it all the same.
    """
    if slot.successor_ok:
        return Step.ADOPT if slot.old.alive else Step.PROMOTE
    if keep_current and slot.old.alive and slot.old.on_current:
        return Step.KEEP
    if not slot.old.alive:
        return Step.START
    return Step.SURGE if start_first else Step.REPLACE


@dataclass
class _Run:
    """One restart of one service on one host: where things are and whom to tell."""

    runner: Runner
    ctx: ServiceContext
    service: Service
    settings: PidfileManager
    on_event: EventSink
    check_ready: ReadyCheck | None

    @property
    def name(self) -> str:
        """The service name (pure)."""
        return self.service.name

    def event(
        self, kind: EventKind, slot: Slot, pid: int | None = None, *, seconds: float | None = None, detail: str = ""
    ) -> None:
        """Report one step of one instance (calls the event sink)."""
        self.on_event(ServiceEvent(kind, self.name, str(slot.index), pid, seconds, detail))

    async def stop(self, slot: Slot, state: InstanceState, pidfile: str) -> StopOutcome:
        """Quiet and stop one process and wait for its exit (side effects: signals on the host)."""
        assert state.pid is not None
        self.event("quieting" if self.settings.quiet_signal else "stopping", slot, state.pid)
        outcome = await stop_pid(
            self.runner, self.ctx, self.name, self.settings, pid=state.pid, pidfile=pidfile, index=slot.index
        )
        if outcome.quiet is not None:
            self.event("drained", slot, state.pid, seconds=outcome.quiet_seconds, detail=f"({outcome.quiet})")
        self.event("killed" if outcome.how == "killed" else "exited", slot, state.pid, seconds=outcome.seconds)
        return outcome

    async def start(self, slot: Slot, *, beside: bool) -> int:
        """Start one instance, in its own pid file or beside the old one (side effects: a process)."""
        pidfile = surge_pidfile(slot.pidfile) if beside else slot.pidfile
        self.event("starting", slot, detail=f"beside pid {slot.old.pid}" if beside else "")
        command = start_command(self.settings.start, slot.index, pidfile)
        pid = await launch(self.runner, self.ctx, self.name, command, pidfile=pidfile, index=slot.index)
        self.event("started", slot, pid)
        return pid

    async def ready(self, slot: Slot, pid: int, pidfile: str) -> None:
        """Wait until one instance passes readiness (side effects: the probe's)."""
        if self.check_ready is not None:
            await self.check_ready(instance_env(slot.index, pidfile, pid))

    async def hand_off(self, slot: Slot, successor: int | None) -> None:
        """Retire the old process of a replaced instance in the background (side effects: a process on the host).

        The host is done once its successors are ready: the predecessors drain on their own, side by
        side with the next host's replacement, and the successor takes the pid file once they are gone.
        """
        assert slot.old.pid is not None
        self.event("handing-over", slot, slot.old.pid, detail=f"to pid {successor}")
        await hand_off(
            self.runner, self.ctx, self.name, self.settings, old=slot.old.pid, pidfile=slot.pidfile, index=slot.index
        )

    async def promote(self, slots: Sequence[Slot], started: dict[int, int]) -> None:
        """Give each successor its instance's pid file, in one round trip (side effects: files on the host)."""
        if not slots:
            return
        lines = []
        for slot in slots:
            new, old = quote(surge_pidfile(slot.pidfile)), quote(slot.pidfile)
            lines.append(f"mv -f {new} {old} && {{ mv -f {new}{ID_SUFFIX} {old}{ID_SUFFIX} 2>/dev/null || true; }}")
        await run_script(self.runner, self.ctx, self.name, [*lines, "true"])
        for slot in slots:
            self.event("promoted", slot, started.get(slot.index, slot.new.pid))


async def _each(items: Sequence[Slot], work: Callable[[Slot], Awaitable[object]]) -> list[object]:
    """Run `work` for every slot at once; the first error is raised once all have ended (side effects: work's)."""
    results = await asyncio.gather(*(work(s) for s in items), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)


async def _converge(run: _Run, slots: Sequence[Slot], steps: dict[int, Step]) -> list[InstanceRestart]:
    """Bring the given instances to the release together, phase by phase (side effects: processes)."""
    await _each([s for s in slots if s.stale_successor], lambda s: run.stop(s, s.new, surge_pidfile(s.pidfile)))
    by = {step: [s for s in slots if steps[s.index] == step] for step in Step}
    stopped: dict[int, StopOutcome] = {}

    async def stop_old(slot: Slot) -> None:
        stopped[slot.index] = await run.stop(slot, slot.old, slot.pidfile)

    await _each(by[Step.REPLACE], stop_old)
    started: dict[int, int] = {}

    async def start(slot: Slot) -> None:
        if steps[slot.index] == Step.START:
            run.event("not-running", slot, slot.old.pid, detail="stale pid file" if slot.old.pid else "")
        started[slot.index] = await run.start(slot, beside=steps[slot.index] == Step.SURGE)

    await _each([*by[Step.START], *by[Step.REPLACE], *by[Step.SURGE]], start)
    beside = [*by[Step.SURGE], *by[Step.ADOPT]]
    try:
        await _each(slots, lambda s: _ready(run, s, steps[s.index], started))
    except BaseException:
        await _retire_successors(run, beside, started)  # the old instances keep working
        raise
    await _each(beside, lambda s: run.hand_off(s, started.get(s.index, s.new.pid)))
    await run.promote(by[Step.PROMOTE], started)
    return [_result(s, steps[s.index], started, stopped.get(s.index)) for s in slots]


async def _ready(run: _Run, slot: Slot, step: Step, started: dict[int, int]) -> None:
    """Readiness of one instance as it runs now (side effects: the probe's)."""
    if step in (Step.SURGE, Step.ADOPT, Step.PROMOTE):
        pid, pidfile = started.get(slot.index, slot.new.pid), surge_pidfile(slot.pidfile)
    else:
        pid, pidfile = started.get(slot.index, slot.old.pid), slot.pidfile
    if step == Step.KEEP:
        run.event("kept", slot, slot.old.pid, detail="already runs from the release")
    if pid is not None:
        await run.ready(slot, pid, pidfile)


async def _retire_successors(run: _Run, slots: Sequence[Slot], started: dict[int, int]) -> None:
    """Stop the StartFirst successors of a failed restart; the old instances go on (side effects: signals)."""

    async def retire(slot: Slot) -> None:
        pid = started.get(slot.index, slot.new.pid)
        if pid is not None:
            await run.stop(slot, InstanceState(str(slot.index), pid, True), surge_pidfile(slot.pidfile))

    await asyncio.gather(*(retire(s) for s in slots), return_exceptions=True)


def _result(slot: Slot, step: Step, started: dict[int, int], stop: StopOutcome | None) -> InstanceRestart:
    """What restarting one instance did (pure)."""
    new_pid = started.get(slot.index, slot.new.pid if step in (Step.ADOPT, Step.PROMOTE) else slot.old.pid)
    old_pid = None if step in (Step.KEEP, Step.START, Step.PROMOTE) else slot.old.pid
    seconds = stop.seconds if stop else None
    return InstanceRestart(str(slot.index), old_pid, new_pid, seconds, bool(stop and stop.how == "killed"))


async def read_slots(runner: Runner, ctx: ServiceContext, service: Service) -> list[Slot]:
    """Every instance's pid file and successor pid file as they are now, once no handoff of them runs.

    One round trip: the wait for running handoffs (so no draining process is signalled twice) and
    the reading share one script (reads the host).
    """
    files = pidfiles(ctx, service)
    budget = stop_budget(settings_of(service, PidfileManager))
    waits = wait_handoffs_lines(files, budget)
    lines = [*waits, *read_lines([*files, *(surge_pidfile(f) for f in files)], ctx.current)]
    result = await run_script(runner, ctx, service.name, lines, wait=budget)
    states = parse_states(result.stdout, 2 * len(files))
    count = len(files)
    return [Slot(n, files[n], states[n], states[count + n]) for n in range(count)]


async def restart(
    runner: Runner,
    ctx: ServiceContext,
    service: Service,
    *,
    on_event: EventSink = ignore_event,
    check_ready: ReadyCheck | None = None,
    keep_current: bool = False,
) -> RestartResult:
    """Bring every instance to ctx.current and prove it ready (side effects: processes on the host).

    `keep_current` keeps instances that already run from ctx.current (a resumed publish, a rollback
    to a release still running, healing); without it every instance is replaced (a restart request).
    """
    settings = settings_of(service, PidfileManager)
    run = _Run(runner, ctx, service, settings, on_event, check_ready)
    slots = await read_slots(runner, ctx, service)
    start_first = settings.replace == ReplacePolicy.START_FIRST
    steps = {s.index: decide(s, start_first=start_first, keep_current=keep_current) for s in slots}
    if settings.instance_policy == InstancePolicy.ORDERED_READY:
        done = [r for s in slots for r in await _converge(run, [s], steps)]
    else:
        done = await _converge(run, slots, steps)
    return RestartResult(service.name, tuple(done))
