"""kopf handlers: one long-lived daemon per Release runs the engine; a watch handler wakes it.

The daemon (Rule 3) writes first-sight status at once, reads the latest spec from kopf's live body
before every engine step, runs Rollout.run(), and after each outcome waits for a reason to run again:
a new generation, a restart request (annotation kapistrano.dev/restartedAt), a retry request
(kapistrano.dev/retry), a changed Secret, the drift-check interval, or a retry interval for outcomes
that may clear by themselves. No handler blocks kopf: the only per-object handler besides the daemon
just sets an asyncio.Event.

Problems that need a person (invalid spec, missing or bad Secret) become Stalled conditions with a
reason and a message, never a crash loop; the daemon checks again by itself. Deleting a Release stops
its daemon (kopf's finalizer kapistrano.dev/finalizer) and leaves its hosts as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from kapistrano.api.release import (
    GROUP,
    PLURAL,
    RESTART_ANNOTATION,
    RETRY_ANNOTATION,
    VERSION,
    Release,
    ReleaseFileError,
    parse_release,
)
from kapistrano.api.status import ReleaseStatus
from kapistrano.engine.events import fan_out
from kapistrano.engine.kept import KeptDrivers
from kapistrano.engine.rollout import Desired, Outcome, Result, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.hosts import lock
from kapistrano.hosts.hub import SshHub, process_hub
from kapistrano.k8s import cleanup, credentials, events, kubeapi, logs, metrics, peers
from kapistrano.k8s.requests import requests_of, tokens_of
from kapistrano.k8s.settings import OPTIONS, configure
from kapistrano.k8s.status import ReleaseGone, ReleaseStatusStore, stalled_status
from kapistrano.plan.conditions import INSECURE_HOST_KEYS_MESSAGE, TERMINAL_REASONS, first_sight

WAKE_KEY = "kapistrano_wake"


class SpecInvalid(Exception):
    """The Release's spec does not validate; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Apply kapistrano's kopf settings and give API calls their threads (changes settings, the loop)."""
    configure(settings)
    kubeapi.use_api_threads()


def wake_event(memo: Any) -> asyncio.Event:
    """The per-Release event that wakes its daemon; memo is kopf's per-object memo (creates it once)."""
    found = memo.get(WAKE_KEY)
    if not isinstance(found, asyncio.Event):
        found = asyncio.Event()
        memo[WAKE_KEY] = found
    return found


def in_shard(labels: Mapping[str, str], uid: str, **_: Any) -> bool:
    """Whether a Release belongs to this replica's shard (pure given the options)."""
    return OPTIONS.placement.serves(labels, uid)


@kopf.on.event(GROUP, VERSION, PLURAL, when=in_shard)
async def on_release_event(memo: Any, **_: Any) -> None:
    """Wake the Release's daemon on every change of the object (side effect: an asyncio.Event)."""
    wake_event(memo).set()


@kopf.daemon(GROUP, VERSION, PLURAL, id="rollout", when=in_shard, cancellation_backoff=25.0, cancellation_timeout=30.0)
async def rollout_daemon(
    *,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: Any,
    **_: Any,
) -> None:
    """Reconcile one Release until it is deleted or the operator stops (network I/O, writes status)."""
    task = ReleaseTask(body=body, namespace=namespace or "default", name=name, uid=uid, wake=wake_event(memo))

    async def until_stopped() -> None:
        await stopped.wait()

    work = asyncio.create_task(task.run_forever())
    stop = asyncio.create_task(until_stopped())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for running in (work, stop):
            running.cancel()
        await asyncio.gather(work, stop, return_exceptions=True)
        instance = unlock_instance(stopped.reason)
        if instance is not None:
            with contextlib.suppress(SpecInvalid):
                await cleanup.release_host_locks(task.namespace, uid, read_release(body), instance=instance)


#: A daemon stopped for these reasons hands its Release to another operator: its own locks go at once.
HANDOVER = kopf.DaemonStoppingReason.FILTERS_MISMATCH | kopf.DaemonStoppingReason.OPERATOR_PAUSING


def unlock_instance(reason: kopf.DaemonStoppingReason | None) -> str | None:
    """Whose host locks a stopped daemon releases: any process's ("") when deleted, ours on a handover (pure)."""
    if reason is None:
        return None
    if kopf.DaemonStoppingReason.RESOURCE_DELETED in reason:
        return ""
    return lock.INSTANCE if reason & HANDOVER else None


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, plain copy of kopf's live body without its status (pure): 1000 hosts' status is big."""
    return {key: copy.deepcopy(body[key]) for key in body if key != "status"}


def read_release(body: Mapping[str, Any]) -> Release:
    """The Release as it is now, without its status (pure); raises SpecInvalid."""
    try:
        return parse_release(plain(body))
    except ReleaseFileError as exc:
        raise SpecInvalid(exc.problems) from None


def release_key(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the Release read from a body depends on, short of its spec, whose changes bump the generation (pure)."""
    meta = body.get("metadata") or {}
    labels, annotations = dict(meta.get("labels") or {}), dict(meta.get("annotations") or {})
    head = (body.get("apiVersion"), body.get("kind"), meta.get("name"), meta.get("namespace"), meta.get("uid"))
    return (*head, meta.get("generation"), labels, annotations)


@dataclass
class ReleaseReader:
    """read_release that keeps the last Release while its key is unchanged (kopf updates the body in place).

    The engine reads the Release before every step: parsing a 500-host spec each time was a good part
    of the operator's CPU, and an unchanged spec is then the same object, compared at no cost.
    """

    key: tuple[Any, ...] | None = None
    release: Release | None = None

    def __call__(self, body: Mapping[str, Any]) -> Release:
        """The Release of a body, parsed again only when its key changed (raises SpecInvalid)."""
        key = release_key(body)
        if self.release is None or key != self.key:
            self.release, self.key = read_release(body), key
        return self.release


#: What makes a finished Release run again: its generation, its restart, retry and other requests.
Trigger = tuple[int, str | None, str | None, tuple[str | None, ...]]


def trigger_of(body: Mapping[str, Any]) -> Trigger:
    """The Release's generation, restart request, retry request and pause/promote/abort requests (pure)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    restart, retry = annotations.get(RESTART_ANNOTATION), annotations.get(RETRY_ANNOTATION)
    return int(meta.get("generation") or 1), restart, retry, tokens_of(body)


@dataclass
class ReleaseTask:
    """The reconcile loop of one Release in the operator."""

    body: kopf.Body
    namespace: str
    name: str
    uid: str
    wake: asyncio.Event

    def __post_init__(self) -> None:
        self.store = ReleaseStatusStore(self.namespace, self.name)
        self.log = logs.release_logger(logging.getLogger(f"kapistrano.release.{self.namespace}.{self.name}"), self.body)
        self._last_warning: tuple[str, str] | None = None
        self.ledger = metrics.RolloutLedger()
        self.reader = ReleaseReader()
        #: Host drivers, and their connections, kept from one engine run to the next.
        self.drivers = KeptDrivers()

    async def run_forever(self) -> None:
        """Run the engine whenever there is a reason to, until cancelled (network I/O, writes status)."""
        try:
            await self.first_sight()
            while True:
                await self.once()
        except ReleaseGone:
            metrics.forget(self.namespace, self.name)
        finally:
            await self.drivers.close()

    async def first_sight(self) -> None:
        """Write Ready=Unknown / Reconciling=True at once for a Release without conditions (writes status)."""
        if (self.body.get("status") or {}).get("conditions"):
            return
        generation = trigger_of(self.body)[0]
        status = ReleaseStatus(conditions=first_sight(generation, datetime.now(UTC)), observed_generation=generation)
        await self.store.save(status)
        metrics.record_status(self.namespace, self.name, status)

    async def once(self) -> None:
        """One reconcile: check spec and Secret, run the engine, then wait for the next reason (network I/O)."""
        trigger = trigger_of(self.body)
        try:
            release = self.reader(self.body)
        except SpecInvalid as exc:
            await self.stall("InvalidSpec", "invalid spec: " + "; ".join(exc.problems), trigger[0])
            await self.wait_for(trigger, timeout=None)
            return
        try:
            creds = await credentials.load(self.namespace, release.spec)
        except credentials.CredentialsProblem as problem:
            await self.stall(problem.reason, problem.message, trigger[0])
            await self.wait_for(trigger, timeout=None, secret=(release, problem.fingerprint))
            return
        if release.spec.ssh.insecure_skip_host_key_check:
            self.warn("InsecureHostKeys", INSECURE_HOST_KEYS_MESSAGE)
        try:
            outcome = await self.run_engine(release, creds)
        except SpecInvalid:
            return  # the spec became invalid mid-run: the next turn reports it
        except ReleaseGone:
            raise
        except Exception:
            self.log.exception("rollout of %s/%s failed unexpectedly; retrying", self.namespace, self.name)
            await self.wait_for(trigger, timeout=OPTIONS.retry_seconds)
            return
        await self.wait_for(trigger, timeout=self.rerun_after(release, outcome), secret=(release, creds.fingerprint))

    def rerun_after(self, release: Release, outcome: Outcome) -> float | None:
        """Seconds until the engine should run again by itself after an outcome; None waits for a change (pure)."""
        if outcome.result in (Result.READY, Result.DRIFTED):
            interval = release.spec.drift_check_interval_seconds
            return float(interval) if interval > 0 else None
        if outcome.result == Result.PAUSED:
            return None
        stalled = outcome.status.condition("Stalled")
        if stalled is not None and stalled.reason in TERMINAL_REASONS:
            return None
        return OPTIONS.retry_seconds

    async def run_engine(self, release: Release, creds: credentials.Credentials) -> Outcome:
        """One Rollout.run() with the latest spec read before every step (network I/O, writes status)."""
        await peers.sync()  # a standby just resumed: its gone peer's host locks are then taken over

        async def desired() -> Desired:
            latest = self.reader(self.body)
            generation, token, retry, _ = trigger_of(self.body)
            asked = requests_of(self.body)
            return Desired(latest.spec, generation=generation, restart_token=token, retry_token=retry, requests=asked)

        rollout = Rollout(
            source=desired,
            drivers=self.drivers.factory(
                driver_factory(creds.private_key, creds.known_hosts, hub=ssh_hub(), key=self.uid), creds.fingerprint
            ),
            store=_MeteredStore(self.store),
            owner=self.uid,
            emit=fan_out(
                events.event_sink(self.body), metrics.metrics_sink(self.namespace, self.name), logs.log_sink(self.log)
            ),
            announce=lambda entry: events.post_request(self.body, entry),
        )
        key = metrics.rollout_key(release.spec.version, trigger_of(self.body)[1], await self.store.load())
        if metrics.rollout_started(self.namespace, self.name, self.ledger, key):
            self.log.info("rollout of %s started", release.spec.version, extra={"version": release.spec.version})
        try:
            outcome = await rollout.run()
        finally:
            await self.drivers.close_unused()  # the others, and their connections, serve the next run
        self.report(outcome)
        return outcome

    def report(self, outcome: Outcome) -> None:
        """Count the outcome and post an Event for it (side effects: metrics, an Event)."""
        if outcome.result == Result.READY:
            self._last_warning = None
            if metrics.rollout_finished(self.namespace, self.name, self.ledger):  # not after a drift check
                message = f"version {outcome.status.version}: {outcome.message}"
                events.post(self.body, "Normal", "RolloutComplete", message)
                self.log.info("rollout complete: %s", message, extra={"version": outcome.status.version})
        elif outcome.result in (Result.STALLED, Result.DEADLINE):
            stalled = outcome.status.condition("Stalled")
            reason = stalled.reason if stalled is not None else str(outcome.result)
            metrics.rollout_failed(self.namespace, self.name, self.ledger, reason)
            self.warn(reason, outcome.message)
        elif outcome.result == Result.DRIFTED:
            self.warn(outcome.result.value, outcome.message)
        metrics.RUNS.labels(self.namespace, self.name, outcome.result.value).inc()  # last: the run is fully counted

    def warn(self, reason: str, message: str) -> None:
        """Post a Warning Event unless the same one was the last posted (side effect: an Event)."""
        if self._last_warning != (reason, message):
            self._last_warning = (reason, message)
            events.post(self.body, "Warning", reason, message)

    async def stall(self, reason: str, message: str, generation: int) -> None:
        """Write Stalled=True with a reason and what to fix (writes status, posts an Event)."""
        previous = await self.store.load()
        status = stalled_status(previous, reason, message, generation, datetime.now(UTC))
        await self.store.save(status)
        metrics.record_status(self.namespace, self.name, status)
        self.log.warning("%s/%s stalled: %s: %s", self.namespace, self.name, reason, message)
        self.warn(reason, message)

    async def wait_for(
        self,
        trigger: Trigger,
        timeout: float | None,
        secret: tuple[Release, str] | None = None,
    ) -> None:
        """Return on a new generation, restart or retry request, a changed Secret, or after `timeout` (network I/O)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while trigger_of(self.body) == trigger:
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            step = OPTIONS.credentials_recheck_seconds if secret is not None else None
            if deadline is not None:
                step = min(step, deadline - now) if step is not None else deadline - now
            self.wake.clear()
            if trigger_of(self.body) != trigger:
                return
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=step)
            except TimeoutError:
                if secret is not None and await self.secret_changed(*secret):
                    return

    async def secret_changed(self, release: Release, fingerprint: str) -> bool:
        """Whether the Release's Secret differs from the one last used (network I/O)."""
        ref = release.spec.ssh.secret_ref
        if ref is None:
            return False
        return await asyncio.to_thread(credentials.current_fingerprint, self.namespace, ref.name) != fingerprint


def ssh_hub() -> SshHub:
    """The SSH bound and fair gate every Release of this operator shares (made on first use)."""
    return process_hub(OPTIONS.max_ssh_connections, OPTIONS.ssh_concurrency)


class _MeteredStore:
    """A StatusStore that also updates the hosts-by-phase gauge on every save."""

    def __init__(self, inner: ReleaseStatusStore) -> None:
        self.inner = inner

    async def load(self) -> ReleaseStatus | None:
        """The saved status (network I/O)."""
        return await self.inner.load()

    async def save(self, status: ReleaseStatus) -> None:
        """Save and update the gauge (network I/O, changes metrics)."""
        await self.inner.save(status)
        metrics.record_status(self.inner.namespace, self.inner.name, status)
