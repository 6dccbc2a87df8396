"""What the engine does between two hosts: nothing that waits for another host, nothing left undone."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest
from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.api.status import HostPhase
from kapistrano.engine import rollout as rollout_module
from kapistrano.engine.driver import HostDriver
from kapistrano.engine.events import EventSink, HostEvent
from kapistrano.engine.rollout import Desired, DriverFactory, Result, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.lab import HostLab
from kapistrano.plan import HostObservation

from .appkit import App

READ_DELAY = 0.3


@pytest.fixture
def app(lab: HostLab) -> Iterator[App]:
    made = App(lab, drain=1.5, boot=0.3)
    yield made
    made.close()


class SlowReads:
    """A real SSH driver whose reads of the host take READ_DELAY longer, as on a slow link."""

    def __init__(self, inner: HostDriver, reads: list[float]) -> None:
        self.inner = inner
        self.name = inner.name
        self.reads = reads

    async def observe(self, spec: ReleaseSpec) -> HostObservation:
        self.reads.append(time.monotonic())
        await asyncio.sleep(READ_DELAY)
        return await self.inner.observe(spec)

    async def lock(self, owner: str, ttl_seconds: int) -> None:
        await self.inner.lock(owner, ttl_seconds)

    async def unlock(self, owner: str) -> None:
        await self.inner.unlock(owner)

    async def update(self, spec: ReleaseSpec, emit: EventSink) -> str:
        return await self.inner.update(spec, emit)

    async def publish(self, spec: ReleaseSpec, emit: EventSink, *, run_once_hooks: bool) -> HostObservation:
        return await self.inner.publish(spec, emit, run_once_hooks=run_once_hooks)

    async def rollback(self, spec: ReleaseSpec, emit: EventSink, *, release: str | None) -> str:
        return await self.inner.rollback(spec, emit, release=release)

    async def restart(self, spec: ReleaseSpec, emit: EventSink) -> None:
        await self.inner.restart(spec, emit)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_slow_read_of_an_idle_host_does_not_hold_up_the_next_host(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    # Readings go stale after 1 s while each host takes 1.8 s to restart: the idle third host must be
    # re-read during every restart. Read in the step between two hosts, it would cost READ_DELAY there.
    monkeypatch.setattr(rollout_module, "FULL_OBSERVE_SECONDS", 1.0)
    slow = app.lab.hosts[2].name
    real: DriverFactory = driver_factory(app.lab.client_key, app.lab.known_hosts)
    reads: list[float] = []

    def drivers(spec: ReleaseSpec, host: Host) -> HostDriver:
        driver = real(spec, host)
        return SlowReads(driver, reads) if host.name == slow else driver

    spec = app.release("v2").spec
    marks: list[tuple[float, HostEvent]] = []

    async def desired() -> Desired:
        return Desired(spec)

    engine = Rollout(
        source=desired,
        drivers=drivers,
        store=FileStatusStore(app.state),
        owner="test:app",
        emit=lambda event: marks.append((time.monotonic(), event)),
    )
    try:
        outcome = await engine.run()
    finally:
        await engine.close()
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
