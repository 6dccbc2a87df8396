"""SSH at scale on real lab hosts: sessions per host step, the process-wide connection bound,
fairness between Releases sharing one operator, and a dead half of a fleet beside a live one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kapistrano.api.release import parse_release
from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.engine.events import HostEvent
from kapistrano.engine.rollout import Desired, Outcome, Result, Rollout
from kapistrano.engine.ssh_driver import SshHostDriver, driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.hosts.hub import SshHub
from kapistrano.lab import HostLab

from tests.integration.hostkit import wait_until
from tests.integration.test_ssh import established_ssh_sessions

from .appkit import App

LabFactory = Callable[..., HostLab]


def ignore(event: HostEvent) -> None:
    """Drop an event."""


@dataclass
class Admissions:
    """Every admission of the hub: (key, what, keys still waiting), and what `look` said at that moment."""

    seen: list[tuple[str, str, frozenset[str]]] = field(default_factory=list)
    looks: list[int] = field(default_factory=list)
    look: Callable[[], int] = lambda: 0

    def __call__(self, key: str, what: str, waiting: frozenset[str]) -> None:
        self.seen.append((key, what, waiting))
        self.looks.append(self.look())


def only_hosts(doc: dict[str, Any], names: set[str], application: str) -> dict[str, Any]:
    """A Release document restricted to some hosts, under its own application (and deployTo)."""
    spec = doc["spec"] | {"application": application, "hosts": [h for h in doc["spec"]["hosts"] if h["name"] in names]}
    return doc | {"metadata": {"name": application}, "spec": spec}


def rollout(app: App, doc: dict[str, Any], hub: SshHub | None, key: str, drivers: dict[str, SshHostDriver]) -> Rollout:
    """An engine run through `hub` under `key`; the drivers it makes are kept in `drivers`."""
    spec = parse_release(doc).spec
    make = driver_factory(app.lab.client_key, app.lab.known_hosts, hub=hub, key=key)

    def keep(spec_: ReleaseSpec, host: Host) -> SshHostDriver:
        driver = make(spec_, host)
        assert isinstance(driver, SshHostDriver)
        drivers[host.name] = driver
        return driver

    async def desired() -> Desired:
        return Desired(spec)

    store = FileStatusStore(app.root / f"{key}.json")
    return Rollout(source=desired, drivers=keep, store=store, owner=f"test:{key}", poll_interval=0.2)


async def run(app: App, doc: dict[str, Any], hub: SshHub | None = None, key: str = "r") -> Outcome:
    """Roll a Release to the end through the hub, then close its connections."""
    engine = rollout(app, doc, hub, key, {})
    try:
        return await engine.run()
    finally:
        await engine.close()


def exec_channels(driver: SshHostDriver) -> int:
    """Exec channels (sshd sessions) the driver's connection opened so far."""
    return driver.conn.exec_channels


async def test_observe_makes_an_exec_readiness_attempt_in_its_one_session(app: App) -> None:
    # The instance's pid and its release reach the attempt, as when it runs on its own.
    probe = {"httpGet": None, "exec": {"command": 'kill -0 "$KAPISTRANO_PID" && test -e VERSION && test ! -e NOTREADY'}}
    assert (await app.apply("v1", readiness=probe, strategy={"maxUnavailable": "100%"})).result == Result.READY
    spec = app.release("v1", readiness=probe).spec
    driver = app.driver(spec, 0)
    try:
        found = await driver.observe(spec)
        assert (found.version, found.ready, exec_channels(driver)) == ("v1", True, 1)
        assert found.release is not None
        app.lab.hosts[0].path(f"{spec.deploy_path}/releases/{found.release}/NOTREADY").write_text("")
        found = await driver.observe(spec)
        assert (found.ready, exec_channels(driver)) == (False, 2)
    finally:
        await driver.close()


async def test_observe_takes_one_session_and_publish_one_per_step(app: App) -> None:
    assert (await app.apply("v1", strategy={"maxUnavailable": "100%"})).result == Result.READY
    spec = app.release("v2").spec
    driver = app.driver(spec, 0)
    try:
        before = await driver.observe(spec)
        assert exec_channels(driver) == 1
        assert (before.version, before.ready, before.services_on_current, before.orphans) == ("v1", True, True, ())
        await driver.update(spec, ignore)
        start = exec_channels(driver)
        published = await driver.publish(spec, ignore, run_once_hooks=True)
        # switch (find, record, current; records and pid files for orphans), read the instance, stop it, start it
        assert exec_channels(driver) - start == 4
        start = exec_channels(driver)
        await driver.settle()
        assert exec_channels(driver) - start == 1  # revisions.log and the cleanup listing
        start = exec_channels(driver)
        after = await driver.observe(spec)
        assert exec_channels(driver) - start == 1
        assert (after.version, after.ready, after.services_on_current) == ("v2", True, True)
        assert after.release == published.release
    finally:
        await driver.close()


async def test_no_more_connections_than_the_bound_and_idle_ones_are_closed(lab_factory: LabFactory) -> None:
    app = App(lab_factory(4), drain=0.2, boot=0.1)
    try:
        hub = SshHub(2, 4, idle_seconds=0.4, min_idle=0.2)
        assert (await run(app, app.manifest("v1", strategy={"maxUnavailable": "100%"}), hub)).result == Result.READY
        drivers: dict[str, SshHostDriver] = {}
        engine = rollout(app, app.manifest("v2"), hub, "r", drivers)
        assert (await engine.run()).result == Result.READY
        assert 1 <= hub.peak <= 2
        assert sum(d.conn.connects for d in drivers.values()) > len(drivers), "hosts took turns on the places"

        async def all_closed() -> bool:
            return hub.open_count == 0

        await wait_until(all_closed, timeout=30)  # closed while idle, without the rollout closing them
        assert all(not d.conn.is_open for d in drivers.values())

        async def no_sessions() -> bool:
            return sum(len(established_ssh_sessions(h)) for h in app.lab.hosts) == 0

        await wait_until(no_sessions, timeout=30)
        await engine.close()
        await hub.close()
    finally:
        app.close()


async def test_a_small_release_is_not_queued_behind_a_big_one(lab_factory: LabFactory) -> None:
    app = App(lab_factory(4), drain=0.2, boot=0.1)
    try:
        admissions = Admissions()
        hub = SshHub(8, 1, on_admit=admissions)
        names = {h.name for h in app.lab.hosts}
        big = only_hosts(app.manifest("v1", strategy={"maxUnavailable": "100%"}), names - {"host4"}, "big")
        small = only_hosts(app.manifest("v1"), {"host4"}, "small")
        outcomes = await asyncio.gather(run(app, big, hub, "big"), run(app, small, hub, "small"))
        assert [o.result for o in outcomes] == [Result.READY, Result.READY]
        await hub.close()
    finally:
        app.close()
    turns = list(zip(admissions.seen, admissions.seen[1:], strict=False))
    contested = [(a, b) for a, b in turns if a[0] == "big" and "small" in a[2]]
    assert contested, "the small Release never had to wait: the test proves nothing"
    bad = [i for i, (a, b) in enumerate(turns) if a[0] == "big" and "small" in a[2] and b[0] != "small"]
    assert not bad, [admissions.seen[max(0, i - 3) : i + 3] for i in bad[:2]]


async def test_a_dead_half_of_the_fleet_does_not_hold_the_live_half(lab_factory: LabFactory) -> None:
    app = App(lab_factory(4), drain=0.2, boot=0.1)
    ssh = {"user": "root", "connectTimeoutSeconds": 8}
    dead = [app.lab.host("host1"), app.lab.host("host2")]
    try:
        assert (await run(app, app.manifest("v1", strategy={"maxUnavailable": "100%"}))).result == Result.READY
        admissions = Admissions()
        hub = SshHub(8, 1, on_admit=admissions)
        drivers: dict[str, SshHostDriver] = {}
        doc = app.manifest("v2", ssh=ssh, strategy={"maxUnavailable": "100%"}, progressDeadlineSeconds=600)
        engine = rollout(app, doc, hub, "r", drivers)
        admissions.look = lambda: max(
            (drivers[d].conn.failed_connects for d in ("host1", "host2") if d in drivers), default=0
        )
        published: dict[str, int] = {}
        for host in dead:
            host.cut_link()
        task = asyncio.create_task(engine.run())
        try:
            await _watch_publishes(drivers, published, dead_names={"host1", "host2"})
            await _until_ready(engine, {"host3", "host4"}, task)
        finally:
            for host in dead:
                host.restore_link()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await engine.close()
            await hub.close()
    finally:
        app.close()
    connects = [(what, failed) for (_, what, _), failed in zip(admissions.seen, admissions.looks, strict=True)]
    connects = [(what, failed) for what, failed in connects if what.startswith("connect")]
    assert [what for what, _ in connects[:2]] == ["connect host1", "connect host2"], connects  # the dead asked first
    live = [failed for what, failed in connects if what in ("connect host3", "connect host4")]
    assert live[:2] == [0, 0], f"a live host's connect waited for a dead host's connect timeout: {connects}"
    assert published == {"host3": 0, "host4": 0}, "a live host's publish waited for a dead host's connect timeout"


async def _watch_publishes(drivers: dict[str, SshHostDriver], published: dict[str, int], dead_names: set[str]) -> None:
    """Record, when each live host's publish starts, how many connects of the dead hosts had failed by then."""

    async def made() -> bool:
        return len(drivers) == 4

    await wait_until(made, timeout=30)
    for name, driver in drivers.items():
        if name in dead_names:
            continue
        original = driver.publish

        async def publish(
            spec: ReleaseSpec, emit: Any, *, run_once_hooks: bool, _name: str = name, _real: Any = original
        ) -> Any:
            published[_name] = max(drivers[d].conn.failed_connects for d in dead_names) - 1
            return await _real(spec, emit, run_once_hooks=run_once_hooks)

        driver.publish = publish  # type: ignore[method-assign]


async def _until_ready(engine: Rollout, names: set[str], task: asyncio.Task[Outcome]) -> None:
    """Wait until the named hosts are on v2 and Ready in the engine's status."""

    async def ready() -> bool:
        assert not task.done(), task.result()
        status = engine.recorder.status if engine.recorder else None
        done = {h.name for h in (status.hosts if status else []) if h.version == "v2" and h.phase == "Ready"}
        return names <= done

    await wait_until(ready, timeout=120)
