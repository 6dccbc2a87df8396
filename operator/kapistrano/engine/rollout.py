"""The rollout loop: observe every host, ask the planner, record intent, act, repeat.

Shared by `kapistrano apply` and the operator. It re-reads the desired spec before every step, so a new
version, `paused: true` or a changed strategy take effect at the next step. It keeps no state of its
own between runs: a run started after a crash re-reads the hosts and the saved status and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.api.status import (
    ConditionStatus,
    ConditionType,
    HistoryEntry,
    HostPhase,
    Phase,
    Reason,
    ReleaseStatus,
)
from kapistrano.engine.actions import UPDATE_CONCURRENCY, ActionRunner
from kapistrano.engine.driver import HostDriver
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.engine.freshness import (
    FLEET,
    FULL_OBSERVE_SECONDS,
    reading_period,
    soon_hosts,
)
from kapistrano.engine.notes import note_requests
from kapistrano.engine.results import WAITS_FOR_HOSTS, Desired, Outcome, Result
from kapistrano.engine.store import StatusRecorder, StatusStore
from kapistrano.hosts.errors import HostError, as_host_error
from kapistrano.hosts.lock import hold
from kapistrano.hosts.takeover import ACTION_HEARTBEAT_SECONDS
from kapistrano.plan import Action, ActionKind, HostObservation, Plan, PlanInput, plan
from kapistrano.plan.conditions import first_sight
from kapistrano.plan.outcomes import INTENT_PHASE
from kapistrano.plan.requests import aborting, effective, settle, take

__all__ = [
    "FULL_OBSERVE_SECONDS",
    "Desired",
    "DriverFactory",
    "Outcome",
    "Result",
    "Rollout",
    "SpecSource",
    "lock_ttl",
    "reading_period",
    "utcnow",
]

DriverFactory = Callable[[ReleaseSpec, Host], HostDriver]
SpecSource = Callable[[], Awaitable[Desired]]


log = logging.getLogger(__name__)

#: Host locks last lock_ttl(); they are refreshed this often, far more often than they expire.
LOCK_REFRESH_SECONDS = 30.0
#: Hosts not being acted on are re-read in the background this long before their reading goes
#: stale, so a step between two hosts rarely waits for a read of a third.
REFRESH_AHEAD_SECONDS = 1.0
#: How often the background reader looks for readings about to go stale.
REFRESH_TICK_SECONDS = 0.25


def utcnow() -> datetime:
    """The current time in UTC (reads the clock)."""
    return datetime.now(UTC)


class Rollout:
    """One Release's reconcile loop against its hosts."""

    def __init__(
        self,
        *,
        source: SpecSource,
        drivers: DriverFactory,
        store: StatusStore,
        owner: str,
        emit: EventSink | None = None,
        clock: Callable[[], datetime] = utcnow,
        poll_interval: float = 1.0,
        announce: Callable[[HistoryEntry], None] | None = None,
    ) -> None:
        self.source = source
        self.announce = announce
        self.make_driver = drivers
        self.store = store
        self.owner = owner
        self.user_emit = emit
        self.clock = clock
        self.poll_interval = poll_interval
        self._drivers: dict[tuple[str, str, int, str, str], HostDriver] = {}
        self.recorder: StatusRecorder | None = None
        self._seen: dict[str, tuple[float, HostObservation]] = {}
        self._seen_spec: ReleaseSpec | None = None
        #: The hosts the plan may act on next (engine/freshness.py); None until the first step.
        self._soon: frozenset[str] | None = None
        self._touched: set[str] = set()
        self._acting: set[str] = set()
        #: Hosts this run began an action on: their status entry is newer than their action marker.
        self._acted: set[str] = set()
        #: Hosts whose finished update was learned from already (_updated), not yet taken off _running.
        self._learned: set[str] = set()
        #: Background reads in flight: host -> (the spec it is read for, the task).
        self._reading: dict[str, tuple[ReleaseSpec, asyncio.Task[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._read_gate = asyncio.Semaphore(20)
        #: Background reads of unreachable hosts: few at once, so they never hold the reads of live ones.
        self._retry_gate = asyncio.Semaphore(4)
        #: Actions running now: host -> (task, its runner, its kind), all for _running_spec.
        self._running: dict[str, tuple[asyncio.Task[None], ActionRunner, ActionKind]] = {}
        self._running_spec: ReleaseSpec | None = None
        self._update_gate = asyncio.Semaphore(UPDATE_CONCURRENCY)
        self._locked_at: dict[str, float] = {}
        #: How long a host lock lasts without a refresh; None: lock_ttl(spec).
        self.lock_ttl_seconds: int | None = None

    def emit(self, event: HostEvent) -> None:
        """Record a host event in the status and pass it on (side effects: status, display)."""
        assert self.recorder is not None
        self.recorder.apply(event)
        if self.user_emit is not None:
            self.user_emit(event)

    def driver(self, spec: ReleaseSpec, host: Host) -> HostDriver:
        """The driver for a host, reused while its address stays the same."""
        key = (host.name, host.address, host.port, spec.user_for(host), spec.deploy_path)
        if key not in self._drivers:
            self._drivers[key] = self.make_driver(spec, host)
        return self._drivers[key]

    async def observe(self, spec: ReleaseSpec, host: Host, *, lock: bool = True) -> HostObservation:
        """Lock (unless told not to) and read one host; errors become part of the observation (network I/O)."""
        driver = self.driver(spec, host)
        try:
            now = asyncio.get_running_loop().time()
            if lock and now - self._locked_at.get(host.name, -LOCK_REFRESH_SECONDS) >= LOCK_REFRESH_SECONDS:
                found = await driver.observe(spec, lock_for=(self.owner, self.lock_ttl_seconds or lock_ttl(spec)))
                self._locked_at[host.name] = now
                return found
            return await driver.observe(spec)
        except Exception as failure:  # one host's unexpected error is its observation, not a crash
            exc = as_host_error(host.name, failure)
            return HostObservation(
                name=host.name, reachable=exc.reachable, error_reason=exc.reason, error_message=exc.message
            )

    async def observe_all(
        self, spec: ReleaseSpec, *, lock: bool = True, hosts: list[Host] | None = None
    ) -> dict[str, HostObservation]:
        """Observe every host (or those given) in parallel, at most 20 at once (network I/O)."""
        gate = asyncio.Semaphore(20)

        async def one(host: Host) -> HostObservation:
            async with gate:
                return await self.observe(spec, host, lock=lock)

        found = await asyncio.gather(*(one(h) for h in (spec.hosts if hosts is None else hosts)))
        return {o.name: o for o in found}

    async def observe_due(self, spec: ReleaseSpec) -> dict[str, HostObservation]:
        """Re-read the hosts whose last observation may be stale; reuse the rest (network I/O).

        Every host is read on the first step, after a spec change and at least every
        FULL_OBSERVE_SECONDS; a host we acted on is read again at every step. The background reader
        re-reads idle hosts shortly before they are due, so a step waits only for a read still
        running when the reading is already stale (a slow host), and never for an unreachable host:
        it stays unavailable to the plan until a background read (every RETRY_OBSERVE_SECONDS)
        reaches it. Hosts stay the source of truth while a step costs one host's reads, not all.
        """
        now = asyncio.get_running_loop().time()
        if spec != self._seen_spec:
            self._seen.clear()
            self._seen_spec = spec
            FLEET.join(self, len(spec.hosts))
        due = [h for h in spec.hosts if self._must_read(h.name, now)]
        late = [t for name, (of, t) in self._reading.items() if of == spec and self._must_wait(name, now)]
        for name, found in (await self.observe_all(spec, hosts=due)).items():
            self._remember(spec, name, now, found)
        if late:
            await asyncio.wait(late)  # they ran alongside the reads above
            # A read that failed unexpectedly left its host stale: read it here.
            again = [h for h in spec.hosts if self._must_wait(h.name, now)]
            for name, found in (await self.observe_all(spec, hosts=again)).items():
                self._remember(spec, name, now, found)
        self._touched = set()
        return {h.name: self._seen[h.name][1] for h in spec.hosts}

    def _must_read(self, name: str, now: float) -> bool:
        """Whether a step has to read a host itself before planning (pure)."""
        if name not in self._seen:
            return True
        if name in self._acting:
            return False  # its action says what it finds when it ends; a reading now would be stale then
        if name in self._touched:
            return True
        if not self._up(name):
            return False  # the background reader retries it: a dead host's connect timeout holds no step
        reading = self._reading.get(name)
        return (reading is None or reading[0] != self._seen_spec) and self._is_due(name, now)

    def _remember(self, spec: ReleaseSpec, name: str, started: float, found: HostObservation) -> None:
        """Keep a reading unless it is for another spec or a newer one is kept (changes the cache)."""
        seen = self._seen.get(name)
        if spec == self._seen_spec and (seen is None or started >= seen[0]):
            self._seen[name] = (started, found)

    def _up(self, name: str) -> bool:
        """Whether a host's last reading reached it (pure)."""
        return (seen := self._seen.get(name)) is None or seen[1].reachable

    def _must_wait(self, name: str, now: float) -> bool:
        """Whether a step waits for a stale reading of a host; never for an unreachable one (pure)."""
        return self._up(name) and self._is_due(name, now)

    def _is_due(self, name: str, now: float) -> bool:
        """Whether a host's last reading is too old at `now` (pure)."""
        seen = self._seen.get(name)
        if seen is None:
            return True
        soon = self._soon is None or name in self._soon
        return now - seen[0] >= reading_period(seen[1], self._seen_spec, soon=soon, fleet=FLEET.hosts)

    async def step(self, desired: Desired) -> Plan:
        """Observe, plan and take the planned status; the saver writes it (network I/O, changes status)."""
        assert self.recorder is not None
        observations = self._own_actions_known(await self.observe_due(desired.spec))
        self._soon = soon_hosts(desired.spec, observations)
        result = plan(
            PlanInput(
                spec=desired.spec,
                generation=desired.generation,
                status=self.recorder.status,
                observations=observations,
                now=self.clock(),
                restart_token=desired.restart_token,
                retry_token=desired.retry_token,
                busy=frozenset(self._running),
            )
        )
        result = self._settled(desired, result)
        before = self.recorder.status
        self.recorder.replace(result.status)
        self._announce_unreachable(before, result.status)
        return result

    def _own_actions_known(self, observations: dict[str, HostObservation]) -> dict[str, HostObservation]:
        """The observations without the action markers of this run's own actions, which the status records (pure)."""
        return {
            name: replace(found, underway=None) if name in self._acted and found.underway else found
            for name, found in observations.items()
        }

    def _announce_unreachable(self, before: ReleaseStatus, after: ReleaseStatus) -> None:
        """Say when a reading finds a host unreachable, with what that holds: an output line, an Event (emits)."""
        was = {h.name: h.phase for h in before.hosts}
        for host in after.hosts:
            if host.phase == HostPhase.UNREACHABLE and was.get(host.name) != HostPhase.UNREACHABLE:
                message = f"unreachable ({host.message or 'no answer'}); {after.message}"
                self.emit(HostEvent(host.name, message, HostPhase.UNREACHABLE, reason=Reason.UNREACHABLE, warning=True))

    async def run(self) -> Outcome:
        """Reconcile until the rollout is done, stalled or paused (network I/O, writes status)."""
        desired = await self.source()
        saved = await self.store.load()
        status = saved or ReleaseStatus(conditions=first_sight(desired.generation, self.clock()))
        self.recorder = StatusRecorder(self.store, status, self.clock)
        if saved is None:
            await self.recorder.flush()
        flusher = asyncio.create_task(self.recorder.keep_saving())
        self._reader = asyncio.create_task(self._read_loop())
        try:
            return await self._loop(await self._requested(desired))
        finally:
            background = [flusher, *([self._reader] if self._reader else []), *(t for _, t in self._reading.values())]
            background += [task for task, _, _ in self._running.values()]  # only on an error: resumable
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self._reading.clear()
            FLEET.leave(self)
            await self.recorder.flush()

    async def _loop(self, desired: Desired) -> Outcome:
        """The body of run(): plan, start what the plan allows, wait until an action ends, repeat.

        The next plan is made as soon as any running action ends, so with maxUnavailable N a slow
        host holds up its own slot only, as in a Deployment's rolling update. Updates (fetches)
        are the exception: every one ends before anything else starts.
        """
        assert self.recorder is not None
        while True:
            if self._running and desired.spec != self._running_spec:
                await self._wait_running(every=True)  # a changed spec is planned once the old actions ended
            result = await self.step(desired)
            outcome = self._finished(desired, result)
            if outcome is not None and not self._running:
                await self.recorder.flush()  # the run's final save, before the wait for reads and unlocks
                if outcome.result == Result.READY:
                    await self._stop_reading()  # a read may refresh a lock: none after the unlock
                    await self._unlock_all(desired.spec)
                return outcome
            await self._start(desired, result.actions)
            if self._running:
                await self._wait_running(every=False, timeout=result.wait_seconds)
            else:
                await asyncio.sleep(min(result.wait_seconds or self.poll_interval, self.poll_interval))
            desired = await self._requested(await self.source())

    async def _requested(self, desired: Desired) -> Desired:
        """Act on new requests once (recorded in the status, announced) and apply those in effect (writes status)."""
        assert self.recorder is not None
        status, entries = take(desired.spec, self.recorder.status, desired.requests, self.clock())
        if status is not self.recorder.status:
            self.recorder.replace(status)
            await self.recorder.flush()  # a request is acted on once: saved before it is acted on
        for entry in entries:
            log.info("request %s by %s: %s", entry.request, entry.requested_by or "unknown", entry.message)
            if self.announce is not None:
                self.announce(entry)
        await note_requests(desired.spec, entries, self.driver, self.emit)
        return replace(desired, spec=effective(desired.spec, status), asked=desired.spec)

    def _settled(self, desired: Desired, result: Plan) -> Plan:
        """The plan with an abort in effect said in its status; Stalled once every host is back (pure)."""
        asked = desired.asked or desired.spec
        if not aborting(asked, result.status):
            return result
        status = settle(asked, result.status, result.complete, self.clock(), desired.generation)
        stalled = Reason.ABORTED if result.complete else result.stalled_reason
        return replace(result, status=status, complete=False, stalled_reason=stalled)

    def _finished(self, desired: Desired, result: Plan) -> Outcome | None:
        """An outcome when nothing is left to do by ourselves, else None (pure)."""
        status = result.status
        if result.actions:
            return None
        if result.complete:
            return Outcome(Result.READY, status.message, status)
        if result.stalled_reason is not None:
            return Outcome(Result.STALLED, f"{result.stalled_reason}: {status.message}", status)
        stalled = status.condition(ConditionType.STALLED)
        if stalled is not None and stalled.status == ConditionStatus.TRUE and stalled.reason in WAITS_FOR_HOSTS:
            return Outcome(Result(stalled.reason), status.message, status)  # past the deadline, or drift left alone
        if status.phase == Phase.PAUSED:
            return Outcome(Result.PAUSED, status.message, status)
        return None

    async def _start(self, desired: Desired, actions: list[Action]) -> None:
        """Record intent for the plan's actions in the status, then start each as a task (changes status).

        No save is waited for: each action first writes its intent on its host (the action marker),
        which is what a run resumed after a kill reads (Rule 1); the status follows within a second.
        """
        assert self.recorder is not None
        runner = ActionRunner(desired, self.recorder, self.emit, self.clock, owner=self.owner)
        actions = [a for a in actions if a.host not in self._running]
        once = runner.once_first(actions)
        if once is not None:
            # `once` hooks (migrations) must finish on the first host before any other host publishes.
            publishing = any(kind == ActionKind.PUBLISH for _, _, kind in self._running.values())
            actions = [a for a in actions if a.kind != ActionKind.PUBLISH or (a is once and not publishing)]
        if not actions:
            return
        runner.record_intent(actions)
        self._running_spec = desired.spec
        hosts = {h.name: h for h in desired.spec.hosts}
        for action in actions:
            driver = self.driver(desired.spec, hosts[action.host])
            task = asyncio.create_task(self._run_action(runner, action, driver, once=action is once))
            if action.kind == ActionKind.UPDATE:
                task.add_done_callback(functools.partial(self._updated, runner, action.host))
            self._running[action.host] = (task, runner, action.kind)
            self._acting.add(action.host)
            self._acted.add(action.host)

    async def _run_action(self, runner: ActionRunner, action: Action, driver: HostDriver, *, once: bool) -> None:
        """One action under its host lock, confirmed first and stopped once lost; fetches gated (network I/O).

        An action that marks its host confirms the lock and writes the marker in one round trip; an
        update confirms it with the survey of the host.
        """
        ttl = self.lock_ttl_seconds or lock_ttl(runner.spec)
        began: list[str] = []

        async def confirm_and_mark() -> None:
            began.append(await driver.begin_action(self.owner, runner.underway(action), lock_ttl=ttl))

        async def act() -> None:
            await runner.run_one(action, driver, run_once_hooks=once, began=began[0] if began else None)

        async def confirm_and_survey() -> None:
            await driver.begin_update(runner.spec, self.owner, ttl)

        confirm = confirm_and_mark if action.kind in INTENT_PHASE else None
        try:
            if action.kind == ActionKind.UPDATE:
                async with self._update_gate:
                    await self._locked(driver, ttl, act, confirm_and_survey)
            else:
                await self._locked(driver, ttl, act, confirm)
        except HostError as lost:  # the lock is another's, or could not be confirmed: no action without it
            log.warning("not acting on %s: %s", action.host, lost.message)
            self._locked_at.pop(action.host, None)  # the next reading tries the lock and says why

    async def _locked(
        self,
        driver: HostDriver,
        ttl: int,
        act: Callable[[], Coroutine[Any, Any, None]],
        confirm: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run `act` while the host lock is ours, confirmed by `confirm` (if given), refreshed every few seconds."""
        period = min(ttl / 3, ACTION_HEARTBEAT_SECONDS)
        await hold(lambda: driver.lock(self.owner, ttl), period, act, confirm=confirm)

    async def _wait_running(self, *, every: bool, timeout: float | None = None) -> None:
        """Wait until a running action ends (all of them when `every` or while fetching), then learn from it."""
        every = every or any(kind == ActionKind.UPDATE for _, _, kind in self._running.values())
        tasks = [task for task, _, _ in self._running.values()]
        until = asyncio.ALL_COMPLETED if every else asyncio.FIRST_COMPLETED
        await asyncio.wait(tasks, timeout=timeout, return_when=until)
        spec = self._running_spec
        assert spec is not None
        for name, (task, runner, _) in list(self._running.items()):
            if task.done():
                del self._running[name]
                self._acting.discard(name)
                task.result()  # a bug surfaces here; host errors were recorded in the status
                if name not in self._learned:
                    self._learn(spec, runner, name)
                self._learned.discard(name)
        # No save here: the saver writes what the action changed, with the next step's plan.

    def _updated(self, runner: ActionRunner, name: str, task: asyncio.Task[None]) -> None:
        """Learn from an update as soon as it ends, while the others still run (changes the cache).

        The host is no longer being acted on, so the background reader keeps its reading fresh
        while the updating phase goes on: the first step after it need not read the hosts it may
        act on next (a step waits for every update to end).
        """
        if task.cancelled() or task.exception() is not None or self._running_spec is None:
            return  # left to _wait_running, which raises a bug
        self._acting.discard(name)
        self._learn(self._running_spec, runner, name)
        self._learned.add(name)

    def _learn(self, spec: ReleaseSpec, runner: ActionRunner, name: str) -> None:
        """Take what a finished action proved about its host, so the next step need not re-read it."""
        found = runner.verified.pop(name, None)
        if found is not None:
            self._remember(spec, name, asyncio.get_running_loop().time(), found)
            self._touched.discard(name)
            return
        self._touched.add(name)  # failed, or changed what its reading said: the next step reads it
        if name in runner.updated:
            seen = self._seen.get(name)
            if seen is not None and spec == self._seen_spec and name not in self._reading:
                # Fetching a release changes nothing else: the reading stays as old as it was. (A
                # read begun before the fetch could overwrite it: then the next step reads the host.)
                self._seen[name] = (seen[0], replace(seen[1], has_desired_release=True))
                self._touched.discard(name)

    async def _read_loop(self) -> None:
        """Re-read, in the background, hosts not being acted on whose reading is about to go stale.

        Each host is read on its own, so a dead host's connect timeout delays no other reading.
        """
        loop = asyncio.get_running_loop()
        while True:
            spec = self._seen_spec
            if spec is not None:
                horizon = loop.time() + REFRESH_AHEAD_SECONDS
                for host in spec.hosts:
                    if self._read_in_background(host.name, horizon):
                        self._reading[host.name] = (spec, asyncio.create_task(self._read_one(spec, host)))
            await asyncio.sleep(REFRESH_TICK_SECONDS)

    def _read_in_background(self, name: str, horizon: float) -> bool:
        """Whether an idle host not being read is read now in the background: a fine one when stale at
        `horizon`, an unreachable one every RETRY_OBSERVE_SECONDS; other failed reads are the steps' (pure)."""
        seen = self._seen.get(name)
        if seen is None or name in self._acting or name in self._reading:
            return False
        if not seen[1].reachable:
            return self._is_due(name, horizon - REFRESH_AHEAD_SECONDS)
        return seen[1].error_reason is None and self._is_due(name, horizon)

    async def _read_one(self, spec: ReleaseSpec, host: Host) -> None:
        """Read one host and keep the reading; an unexpected error is logged, the step reads again (network I/O)."""
        try:
            async with self._read_gate if self._up(host.name) else self._retry_gate:
                started = asyncio.get_running_loop().time()
                self._remember(spec, host.name, started, await self.observe(spec, host))
        except Exception:
            log.exception("reading %s in the background failed", host.name)
        finally:
            self._reading.pop(host.name, None)

    async def _stop_reading(self) -> None:
        """Stop the background reader and let the reads in flight finish (network I/O)."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._reading:
            await asyncio.wait([task for _, task in self._reading.values()])

    async def _unlock_all(self, spec: ReleaseSpec) -> None:
        """Release our host locks; an unreachable host keeps its lock until it expires (network I/O)."""

        async def one(host: Host) -> None:
            with contextlib.suppress(HostError):
                await self.driver(spec, host).unlock(self.owner)

        await asyncio.gather(*(one(h) for h in spec.hosts))

    async def close(self) -> None:
        """Close every host connection; one failing to close does not keep the others open (network I/O)."""
        drivers, self._drivers = list(self._drivers.values()), {}
        for failed in await asyncio.gather(*(d.close() for d in drivers), return_exceptions=True):
            if isinstance(failed, BaseException):
                log.warning("closing a host connection failed: %s", failed)


def lock_ttl(spec: ReleaseSpec) -> int:
    """How long a host lock lasts without refresh: longer than any single step may take (pure)."""
    return max(900, 2 * spec.progress_deadline_seconds)
