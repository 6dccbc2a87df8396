"""What the engine does between two hosts: nothing that waits for another host, nothing left undone."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.api.status import HostPhase
from kapistrano.engine import freshness
from kapistrano.engine.driver import HostDriver
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.engine.rollout import Desired, DriverFactory, Outcome, Result, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.lab import HostLab
from kapistrano.plan import HostObservation
from kapistrano.plan.model import Underway

from .appkit import App, AppFactory

READ_DELAY = 0.3


@pytest.fixture
def app(lab: HostLab, app_factory: AppFactory) -> App:
    return app_factory(lab, drain=1.5, boot=0.3)


class SlowHost:
    """A real SSH driver on a slow host: its reads take `read_delay` longer, its publishes `publish_delay`."""

    def __init__(
        self,
        inner: HostDriver,
        reads: list[float],
        *,
        read_delay: float = 0.0,
        publish_delay: float = 0.0,
        update_delay: float = 0.0,
    ):
        self.inner = inner
        self.name = inner.name
        self.reads = reads
        self.read_delay = read_delay
        self.publish_delay = publish_delay
        self.update_delay = update_delay

    async def observe(self, spec: ReleaseSpec, *, lock_for: tuple[str, int] | None = None) -> HostObservation:
        self.reads.append(time.monotonic())
        await asyncio.sleep(self.read_delay)
        return await self.inner.observe(spec, lock_for=lock_for)

    async def lock(self, owner: str, ttl_seconds: int) -> None:
        await self.inner.lock(owner, ttl_seconds)

    async def unlock(self, owner: str) -> None:
        await self.inner.unlock(owner)

    async def begin_action(self, owner: str, underway: Underway, *, lock_ttl: int | None = None) -> str:
        return await self.inner.begin_action(owner, underway, lock_ttl=lock_ttl)

    async def begin_update(self, spec: ReleaseSpec, owner: str, lock_ttl: int) -> None:
        await self.inner.begin_update(spec, owner, lock_ttl)

    def end_action(self, owner: str, token: str) -> None:
        self.inner.end_action(owner, token)

    async def update(self, spec: ReleaseSpec, emit: EventSink) -> str:
        release = await self.inner.update(spec, emit)
        await asyncio.sleep(self.update_delay)
        return release

    async def publish(self, spec: ReleaseSpec, emit: EventSink, *, run_once_hooks: bool) -> HostObservation:
        found = await self.inner.publish(spec, emit, run_once_hooks=run_once_hooks)
        await asyncio.sleep(self.publish_delay)
        return found

    async def rollback(self, spec: ReleaseSpec, emit: EventSink, *, release: str | None) -> str:
        return await self.inner.rollback(spec, emit, release=release)

    async def restart(self, spec: ReleaseSpec, emit: EventSink) -> None:
        await self.inner.restart(spec, emit)

    async def note(self, spec: ReleaseSpec, message: str) -> None:
        await self.inner.note(spec, message)

    async def close(self) -> None:
        await self.inner.close()


async def roll_with_slow_host(
    app: App, spec: ReleaseSpec, slow: int, reads: list[float], **delays: float
) -> tuple[Outcome, list[tuple[float, HostEvent]]]:
    """Run the engine to the end with lab host number `slow` made slow; returns the outcome and timed events."""
    return await roll_with_slow_hosts(app, spec, {slow: delays}, reads)


async def roll_with_slow_hosts(
    app: App, spec: ReleaseSpec, slow: dict[int, dict[str, float]], reads: list[float]
) -> tuple[Outcome, list[tuple[float, HostEvent]]]:
    """Run the engine to the end with lab hosts made slow (number -> delays); the outcome and timed events."""
    real: DriverFactory = driver_factory(app.lab.client_key, app.lab.known_hosts)
    slow_names = {app.lab.hosts[n].name: delays for n, delays in slow.items()}

    def drivers(spec: ReleaseSpec, host: Host) -> HostDriver:
        driver = real(spec, host)
        delays = slow_names.get(host.name)
        return SlowHost(driver, reads, **delays) if delays is not None else driver

    async def desired() -> Desired:
        return Desired(spec)

    marks: list[tuple[float, HostEvent]] = []
    engine = Rollout(
        source=desired,
        drivers=drivers,
        store=FileStatusStore(app.state),
        owner="test:app",
        emit=lambda event: marks.append((time.monotonic(), event)),
    )
    try:
        return await engine.run(), marks
    finally:
        await engine.close()


async def test_a_slow_read_of_an_idle_host_does_not_hold_up_the_next_host(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    # Readings go stale after 1 s while each host takes 1.8 s to restart: the idle third host must be
    # re-read during every restart. Read in the step between two hosts, it would cost READ_DELAY there.
    monkeypatch.setattr(freshness, "FULL_OBSERVE_SECONDS", 1.0)
    reads: list[float] = []
    outcome, marks = await roll_with_slow_host(app, app.release("v2").spec, 2, reads, read_delay=READ_DELAY)
    assert outcome.result == Result.READY, outcome.message

    def first(phase: HostPhase, host: str) -> float:
        return next(t for t, e in marks if e.host == host and e.phase == phase)

    names = [h.name for h in app.lab.hosts]
    gaps = [first(HostPhase.PUBLISHING, b) - first(HostPhase.READY, a) for a, b in itertools.pairwise(names)]
    assert max(gaps) < READ_DELAY * 2 / 3, f"the step between two hosts waited for a read: {gaps}"
    busy_from, busy_to = first(HostPhase.PUBLISHING, names[0]), first(HostPhase.READY, names[1])
    assert any(busy_from < t < busy_to for t in reads), "the idle host was not re-read while others restarted"


async def test_a_publish_is_logged_and_cleaned_up_by_the_time_its_driver_closes(app: App) -> None:
    """revisions.log and cleanup run after the host is ready, off the critical path, but are never lost."""
    host = app.lab.hosts[0]
    for version in ("v1", "v2", "v3"):
        spec = app.release(version, keepReleases=2).spec
        driver = driver_factory(app.lab.client_key, app.lab.known_hosts)(spec, spec.hosts[0])
        try:
            await driver.update(spec, lambda _: None)
            found = await driver.publish(spec, lambda _: None, run_once_hooks=True)
        finally:
            await driver.close()
        assert (found.version, found.ready) == (version, True)
        log = host.path("/var/www/app/revisions.log").read_text().splitlines()
        assert [line.split()[1] for line in log] == ["v1", "v2", "v3"][: int(version[1:])], log
        releases = sorted(p.name for p in host.path("/var/www/app/releases").iterdir())
        assert len(releases) == min(2, int(version[1:])), releases


async def test_with_a_budget_of_two_a_slow_host_holds_up_its_own_slot_only(app: App) -> None:
    app.drain, app.boot = 0.3, 0.2
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    spec = app.release("v2", strategy={"maxUnavailable": 2}).spec
    outcome, marks = await roll_with_slow_host(app, spec, 0, [], publish_delay=3.0)
    assert outcome.result == Result.READY, outcome.message
    published = [e.host for _, e in marks if e.phase == HostPhase.PUBLISHING]
    ready = [e.host for _, e in marks if e.phase == HostPhase.READY]
    names = [h.name for h in app.lab.hosts]
    assert set(published[:2]) == set(names[:2]), "spec order, two at a time"
    assert published[2] == names[2]
    # host3 takes host2's slot as soon as host2 is done, while the slow host1 still holds the other.
    assert ready == [names[1], names[2], names[0]], ready


async def test_hosts_updated_early_are_kept_fresh_while_a_slow_update_goes_on(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    # The first host's reading goes stale (after 1 s) while the third host's update takes 2.5 s more.
    # Refreshed in the background once its own update ended, it is not read (READ_DELAY) by the
    # first step after the updating phase, which would delay its publish.
    monkeypatch.setattr(freshness, "FULL_OBSERVE_SECONDS", 1.0)
    reads: list[float] = []
    slow = {0: {"read_delay": READ_DELAY}, 2: {"update_delay": 2.5}}
    outcome, marks = await roll_with_slow_hosts(app, app.release("v2").spec, slow, reads)
    assert outcome.result == Result.READY, outcome.message
    updated = max(t for t, e in marks if e.phase == HostPhase.UPDATED)
    first = app.lab.hosts[0].name
    publish = min(t for t, e in marks if e.phase == HostPhase.PUBLISHING and e.host == first)
    assert publish - updated < READ_DELAY * 2 / 3, f"the first publish waited {publish - updated:.2f}s for a read"
    assert any(t < updated for t in reads[1:]), "the first host was re-read while the slow update went on"
