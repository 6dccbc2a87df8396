"""A run SIGKILLed after it began acting on a host, before any status save: the host says what was under way.

The killed run's status saves never land (tests/integration/hung_run.py: an API server that hangs), so
the status the next run starts from predates the action; only the host's action marker tells. Three
lab hosts, maxUnavailable 1, a readiness probe that still passes while a worker drains (it checks the
worker's own "ready" line), so a host being acted on can look ready to a reading.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kapistrano.engine.rollout import Desired, Outcome, Result, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.hosts.intent import MARKER_FILE
from kapistrano.lab import HostLab
from kapistrano.plan import ActionKind
from kapistrano.plan.model import Underway

from .appkit import App
from .hung_run import OWNER
from .safety import DEPLOY_TO, Monitor, eventually, read_state, starts_of
from .test_engine_kills import own_readiness

HUNG_RUN = Path(__file__).with_name("hung_run.py")
HOSTS = ["host1", "host2", "host3"]


@pytest.fixture
def app(lab_factory: Any) -> Iterator[App]:
    """Three hosts; a worker that takes a second to drain, so a kill lands while it drains."""
    lab: HostLab = lab_factory(3)
    made = App(lab, drain=1.0, boot=0.2)
    yield made
    made.close()


def spec_of(app: App) -> dict[str, Any]:
    """maxUnavailable 1 and a probe that passes from the worker's ready line on, draining or not (pure)."""
    return {"strategy": {"maxUnavailable": 1}, "readiness": own_readiness(app)}


class HungRun:
    """A run of the Release in release.yaml whose status saves never land; killed by the test."""

    def __init__(self, app: App, restart: str | None = None) -> None:
        lab = app.lab
        argv = [sys.executable, str(HUNG_RUN), str(app.root / "release.yaml"), str(app.state)]
        argv += [str(lab.client_key), str(lab.known_hosts)] + (["--restart", restart] if restart else [])
        self.log = app.root / "hung.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    def kill(self) -> None:
        """SIGKILL the run and reap it (side effect: ends the process we started)."""
        self.proc.kill()
        self.proc.wait(10)


async def resume(app: App, version: str, restart: str | None = None) -> Outcome:
    """Run the Release to its end in this process, as the same owner, from the saved status (network I/O)."""
    spec = app.release(version, **spec_of(app)).spec

    async def desired() -> Desired:
        return Desired(spec, restart_token=restart)

    drivers = driver_factory(app.lab.client_key, app.lab.known_hosts)
    rollout = Rollout(source=desired, drivers=drivers, store=FileStatusStore(app.state), owner=OWNER)
    try:
        return await rollout.run()
    finally:
        await rollout.close()


def logged(app: App, since: int, event: str, host: str, version: str) -> list[dict[str, Any]]:
    """Worker lines `event` of `version` on `host` written after the first `since` lines (reads the events file)."""
    return [
        e for e in app.read_events()[since:] if e["event"] == event and e["host"] == host and e["version"] == version
    ]


def marked(app: App) -> list[str]:
    """Hosts with an action marker (reads the hosts' files)."""
    return [h.name for h in app.lab.hosts if h.path(f"{DEPLOY_TO}/{MARKER_FILE}").exists()]


async def test_killed_while_a_host_drains_before_any_status_save_the_next_run_keeps_one_host_down(app: App) -> None:
    assert (await app.apply("v1", **spec_of(app))).result == Result.READY
    before = len(app.read_events())
    app.write("v2", **spec_of(app))
    with Monitor(app) as monitor:
        run = HungRun(app)
        try:
            # The run acts on host2 once host1 is done: host2's old worker got its stop signal.
            await eventually(lambda: bool(logged(app, before, "draining", "host2", "v1")), 90, "host2 draining")
        finally:
            run.kill()
        assert read_state(app.state)["version"] == "v1", "a status save landed: the test needs none"
        assert marked(app) == ["host1", "host2"], "host1's ended action is kept marked until a save says so"
        outcome = await resume(app, "v2")
    assert outcome.result == Result.READY, outcome.message
    assert monitor.most_down <= 1, f"more than one host down at once: {monitor.worst()}"
    assert starts_of(app.read_events()[before:], "v2") == dict.fromkeys(HOSTS, 1)
    assert marked(app) == []


async def test_killed_after_a_restart_before_any_status_save_the_next_run_restarts_no_host_twice(app: App) -> None:
    assert (await app.apply("v1", **spec_of(app))).result == Result.READY
    before = len(app.read_events())
    app.write("v1", **spec_of(app))
    with Monitor(app) as monitor:
        run = HungRun(app, restart="r1")
        try:
            # host1 restarted for the request: its new worker is ready; nothing says so in the status.
            await eventually(lambda: bool(logged(app, before, "ready", "host1", "v1")), 90, "host1 restarted")
        finally:
            run.kill()
        assert read_state(app.state).get("restartedAt") is None
        assert "host1" in marked(app)
        outcome = await resume(app, "v1", restart="r1")
    assert outcome.result == Result.READY, outcome.message
    assert outcome.status.restarted_at == "r1"
    assert monitor.most_down <= 1, f"more than one host down at once: {monitor.worst()}"
    assert starts_of(app.read_events()[before:], "v1") == dict.fromkeys(HOSTS, 1), "a host was restarted twice"


async def test_a_restart_request_cut_short_before_it_replaced_a_hosts_worker_is_made_there_on_resume(app: App) -> None:
    assert (await app.apply("v1", **spec_of(app))).result == Result.READY
    before = len(app.read_events())
    spec = app.release("v1", **spec_of(app)).spec
    driver = app.driver(spec, 1)
    try:  # a run killed right after it marked host2 for the restart request, before it signalled anything
        await driver.begin_action(OWNER, Underway(ActionKind.RESTART, "v1"))
    finally:
        await driver.close()
    assert marked(app) == ["host2"]
    with Monitor(app) as monitor:
        outcome = await resume(app, "v1", restart="r1")
    assert outcome.result == Result.READY, outcome.message
    assert [h.restarted_for for h in outcome.status.hosts] == ["r1"] * 3
    assert monitor.most_down <= 1, f"more than one host down at once: {monitor.worst()}"
    assert starts_of(app.read_events()[before:], "v1") == dict.fromkeys(HOSTS, 1), "host2 kept its old worker"
    assert marked(app) == []
