"""A host being acted on is not read by the steps planned meanwhile: its action says what it finds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from kapistrano.api.release import parse_release
from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.engine.events import EventSink
from kapistrano.engine.rollout import Desired, Result, Rollout
from kapistrano.engine.ssh_driver import SshHostDriver, driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.plan import HostObservation

from .appkit import AppFactory


@dataclass
class Calls:
    """When each host's observes and publishes ran, on the event loop's clock."""

    observes: dict[str, list[float]] = field(default_factory=dict)
    publishes: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


class RecordingDriver(SshHostDriver):
    """The SSH driver, noting when it reads and publishes its host (and a flag file when a publish ends)."""

    calls: Calls
    published_flag: str

    async def observe(self, spec: ReleaseSpec, *, lock_for: tuple[str, int] | None = None) -> HostObservation:
        self.calls.observes.setdefault(self.name, []).append(asyncio.get_running_loop().time())
        return await super().observe(spec, lock_for=lock_for)

    async def publish(self, spec: ReleaseSpec, emit: EventSink, *, run_once_hooks: bool) -> HostObservation:
        began = asyncio.get_running_loop().time()
        found = await super().publish(spec, emit, run_once_hooks=run_once_hooks)
        self.calls.publishes.setdefault(self.name, []).append((began, asyncio.get_running_loop().time()))
        Path(f"{self.published_flag}.{self.name}").touch()  # noqa: ASYNC240 - one tiny local file
        return found


async def test_a_step_planned_while_a_host_publishes_does_not_read_that_host(app_factory: AppFactory) -> None:
    app = app_factory(3, drain=0.2, boot=0.2)
    first = await app.apply("v1", strategy={"maxUnavailable": "100%"})
    assert first.result == Result.READY, first.message
    names = [h.name for h in app.lab.hosts]
    flag = str(app.root / "published")
    # The second host's publish lasts until the third one's has ended: the step that starts the
    # third host (once the first is done) is planned while the second is still being acted on.
    wait = f'if [ "$(hostname)" = {names[1]} ]; then n=0; while [ ! -e {flag}.{names[2]} ] && [ $n -lt 600 ]; '
    wait += "do sleep 0.05; n=$((n + 1)); done; fi"
    doc = app.manifest("v2", strategy={"maxUnavailable": 2}, hooks={"afterPublish": [{"name": "hold", "run": wait}]})
    spec = parse_release(doc).spec
    calls = Calls()
    plain = driver_factory(app.lab.client_key, app.lab.known_hosts)

    def make(spec: ReleaseSpec, host: Host) -> SshHostDriver:
        made = plain(spec, host)
        driver = RecordingDriver(made.conn, made.deploy_to, made.user)
        driver.calls, driver.published_flag = calls, flag
        return driver

    async def desired() -> Desired:
        return Desired(spec)

    rollout = Rollout(source=desired, drivers=make, store=FileStatusStore(app.state), owner="test:app")
    try:
        outcome = await rollout.run()
    finally:
        await rollout.close()
    assert outcome.result == Result.READY, outcome.message
    assert sorted(calls.publishes) == sorted(names), calls.publishes
    assert calls.publishes[names[1]][0][1] > calls.publishes[names[2]][0][1], "the second host ended last"
    for name, spans in calls.publishes.items():
        during = [t for t in calls.observes.get(name, []) for began, ended in spans if began <= t <= ended]
        assert not during, f"{name} was read while it was being published: {during} in {spans}"
