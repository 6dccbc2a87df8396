"""`kapistrano apply` SIGKILLed at random moments of rollouts, then run again: hosts are the source of truth.

Rollouts v1 -> v2 -> ... on three hosts with maxUnavailable 1, each killed once after a random delay
(the test input, from a fixed seed) and then applied again to completion, until ten kills landed
while a rollout was running. A watcher samples every worker every 50 ms throughout.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kapistrano.hosts.intent import MARKER_FILE
from kapistrano.lab import HostLab

from .appkit import App
from .safety import DEPLOY_TO, Monitor, current_release, overlaps, read_state, release_version, starts_of

KAPISTRANO = Path(sys.executable).with_name("kapistrano")
SEED = 20261128
#: Kills that must land mid-rollout, and the most rollouts tried to land them.
KILLS = 10
MAX_ROLLOUTS = 25


class Cli:
    """Runs `kapistrano apply` for an App; remembers every process it started to kill only those."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.log = app.root / "cli.log"
        #: The default state file of `apply -f release.yaml` for the Release named app.
        self.state = app.root / "release.app.kapistrano-state.json"
        self.started: list[subprocess.Popen[bytes]] = []

    def argv(self, release: Path) -> list[str]:
        """The apply command line; the state file is the default one next to release.yaml (pure)."""
        lab = self.app.lab
        keys = ["--ssh-key", str(lab.client_key), "--known-hosts", str(lab.known_hosts)]
        return [str(KAPISTRANO), "apply", "-f", str(release), *keys]

    def start(self, release: Path) -> subprocess.Popen[bytes]:
        """Start an apply in the background (side effect: a process)."""
        with self.log.open("ab") as out:
            proc = subprocess.Popen(self.argv(release), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.started.append(proc)
        return proc

    def apply(self, release: Path, timeout: float = 60) -> int:
        """Run an apply to its end; returns the exit status (side effect: a process)."""
        return self.start(release).wait(timeout)

    def close(self) -> None:
        """Kill whichever of our processes still runs (side effects)."""
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def cli(lab_factory: Any) -> Iterator[Cli]:
    """A three-host app with a quick-draining worker, driven through the command line."""
    lab: HostLab = lab_factory(3)
    app = App(lab, drain=0.4, boot=0.15)
    runner = Cli(app)
    try:
        yield runner
    finally:
        runner.close()
        app.close()


def on_version(app: App, version: str) -> list[str]:
    """Names of the hosts whose `current` is a release of `version` (reads the hosts' files)."""
    return [h.name for h in app.lab.hosts if release_version(app, h.name, current_release(app, h.name)) == version]


def test_apply_killed_at_random_moments_finishes_on_the_next_run_without_extra_disruption(cli: Cli) -> None:
    app = cli.app
    began = time.monotonic()
    assert cli.apply(app.write("v1", strategy={"maxUnavailable": 1})) == 0, cli.log.read_text()[-2000:]
    # Rough length of one rollout: the first one has no old process to drain.
    expected = time.monotonic() - began + 3 * app.drain
    rng = random.Random(SEED)
    kills = rollouts = 0
    with Monitor(app) as monitor:
        # A run that ends before its kill comes counts as a rollout, not a kill: go on until ten
        # kills landed mid-rollout (bounded: a kill lands in most runs).
        while kills < KILLS and rollouts < MAX_ROLLOUTS:
            rollouts += 1
            kills += roll_killed_once(cli, f"v{rollouts + 1}", rng.uniform(0.2, expected))
    assert kills == KILLS, f"only {kills} of {rollouts} runs were still going when their kill came"
    assert monitor.most_down <= 1, f"more than one host down at once: {monitor.worst()}"
    assert monitor.count(1) >= rollouts * 3, "the watcher did not see the hosts restart"
    assert not overlaps(app.read_events()), overlaps(app.read_events())


def roll_killed_once(cli: Cli, version: str, delay: float) -> bool:
    """Start a rollout of `version`, SIGKILL it after `delay` unless it ended, run it again to the end.

    Checks that every host ends on the version and no host was restarted more than once beyond the
    interrupted one; returns whether the kill landed (side effects: processes, host restarts).
    """
    app = cli.app
    before = len(app.read_events())
    release = app.write(version, strategy={"maxUnavailable": 1})
    proc = cli.start(release)
    try:
        proc.wait(delay)
        interrupted: set[str] | None = None
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        interrupted = acting_on(cli.state, version) | marked(app)
    status = cli.apply(release)
    assert status == 0, f"{version}: rerun exited {status}: {cli.log.read_text()[-3000:]}"
    assert on_version(app, version) == ["host1", "host2", "host3"], version
    check_restarts(version, app.read_events()[before:], interrupted or set())
    return interrupted is not None


def acting_on(state: Path, version: str) -> set[str]:
    """Hosts the state file says an action was under way on for `version` (reads the file)."""
    saved = read_state(state)
    if saved.get("version") != version:
        return set()
    return {str(h["name"]) for h in saved.get("hosts", []) if h.get("action")}


def marked(app: App) -> set[str]:
    """Hosts whose action marker says an action was begun there and not known to have ended (reads the hosts' files)."""
    return {h.name for h in app.lab.hosts if h.path(f"{DEPLOY_TO}/{MARKER_FILE}").exists()}


def check_restarts(version: str, events: list[dict[str, Any]], interrupted: set[str]) -> None:
    """Each host started `version` once, except one interrupted mid-restart, which may start it twice (pure).

    `interrupted` holds the hosts whose intent (an action under way) was saved in the status or written
    on the host when the run was killed.
    """
    starts = starts_of(events, version)
    assert sorted(starts) == ["host1", "host2", "host3"], f"{version}: started on {starts}"
    twice = {host for host, count in starts.items() if count > 1}
    assert all(count <= 2 for count in starts.values()), f"{version}: {starts}"
    assert len(twice) <= 1, f"{version}: more than one host restarted twice: {starts}"
    assert twice <= interrupted, f"{version}: {twice} restarted twice, but the killed run was acting on {interrupted}"


#: Kills of multi-instance rollouts that must land, and the most rollouts tried to land them.
MULTI_KILLS = 20
MULTI_MAX_ROLLOUTS = 40


@pytest.fixture
def multi(lab_factory: Any) -> Iterator[Cli]:
    """A three-host app with two worker instances per host, each judged ready by its own events."""
    lab: HostLab = lab_factory(3)
    app = App(lab, drain=0.3, boot=0.1)
    runner = Cli(app)
    try:
        yield runner
    finally:
        runner.close()
        app.close()


def own_readiness(app: App) -> dict[str, Any]:
    """An exec probe passing once the instance in KAPISTRANO_PID logged that it is ready (pure)."""
    pattern = """'"event": "ready", "pid": '"$KAPISTRANO_PID"','"""
    command = f"grep -qF {pattern} {app.events}"
    return {"httpGet": None, "exec": {"command": command}, "periodSeconds": 0.05}


def test_multi_instance_apply_killed_20_times_never_stops_a_new_worker_nor_a_host_twice(multi: Cli) -> None:
    app = multi.app
    spec: dict[str, Any] = {"strategy": {"maxUnavailable": 1}, "instances": 2, "readiness": own_readiness(app)}
    began = time.monotonic()
    assert multi.apply(app.write("v1", **spec)) == 0, multi.log.read_text()[-2000:]
    expected = time.monotonic() - began + 3 * app.drain
    rng = random.Random(SEED + 1)
    kills = rollouts = 0
    with Monitor(app, instances=2) as monitor:
        while kills < MULTI_KILLS and rollouts < MULTI_MAX_ROLLOUTS:
            rollouts += 1
            version = f"v{rollouts + 1}"
            before = len(app.read_events())
            kills += kill_once(multi, app.write(version, **spec), rng.uniform(0.2, expected))
            assert on_version(app, version) == ["host1", "host2", "host3"], version
            check_every_instance_started_once(version, app.read_events()[before:])
    assert kills == MULTI_KILLS, f"only {kills} of {rollouts} runs were still going when their kill came"
    assert monitor.most_down <= 1, f"more than one host down at once: {monitor.worst()}"
    assert not overlaps(app.read_events()), overlaps(app.read_events())


def kill_once(cli: Cli, release: Path, delay: float) -> bool:
    """Start an apply, SIGKILL it after `delay` unless it ended, apply again to the end; whether it was killed."""
    proc = cli.start(release)
    try:
        proc.wait(delay)
        killed = False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        killed = True
    status = cli.apply(release)
    assert status == 0, f"rerun exited {status}: {cli.log.read_text()[-3000:]}"
    return killed


def check_every_instance_started_once(version: str, events: list[dict[str, Any]]) -> None:
    """Each instance of each host started `version` exactly once, and no such worker was stopped (pure).

    A run killed anywhere and run again keeps the new workers it finds running from the release: a
    host is never taken down a second time for the same version.
    """
    started = [e for e in events if e["event"] == "start" and e["version"] == version]
    starts = Counter((e["host"], int(e["instance"])) for e in started)
    assert set(starts) == {(h, i) for h in ("host1", "host2", "host3") for i in (0, 1)}, f"{version}: {starts}"
    assert set(starts.values()) == {1}, f"{version}: an instance started twice: {starts}"
    new = {int(e["pid"]) for e in started}
    stopped = [e for e in events if e["event"] in ("draining", "exit") and int(e["pid"]) in new]
    assert not stopped, f"{version}: a new worker was stopped: {stopped}"
