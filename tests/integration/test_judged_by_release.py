"""A host is judged by the probes of the release it runs: a new probe applies from its publish on.

Real lab hosts and sample workers. What counts is what the hosts did (worker event lines, pid
files, the state file the engine writes), sampled while the rollout runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

from kapistrano.api.release import parse_release
from kapistrano.engine.rollout import Outcome, Result

from .appkit import App
from .safety import Monitor, current_release, eventually, lives, read_state, release_version, starts_of

#: A file only v2's source holds: a check that needs it fails for every v1 process.
FEATURE = "FEATURE"
HEALTH = "curl -sf http://127.0.0.1:9100/health >/dev/null"


def exec_probe(command: str, **thresholds: Any) -> dict[str, Any]:
    """A readiness override that replaces the sample worker's httpGet probe by an exec one (pure)."""
    return {"httpGet": None, "exec": {"command": command}, **thresholds}


def manifest(app: App, version: str, *, readiness: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    """The Release of `version`; readiness None means the worker has no probe at all (pure but for the source dir)."""
    doc = app.manifest(version, readiness=readiness or {}, **spec)
    if readiness is None:
        del doc["spec"]["services"][0]["readiness"]
    if version != "v1":
        (Path(app.version(version, healthy=spec.get("healthy", True))) / FEATURE).write_text("yes\n")
    return doc


class StatusSampler:
    """Samples, every 50 ms while a rollout runs, which hosts the saved status counts as not ready."""

    def __init__(self, app: App) -> None:
        self.state = app.state
        self.samples: list[frozenset[str]] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        """Sample until stopped (reads the state file)."""
        while not self.stop.is_set():
            hosts = read_state(self.state).get("hosts", [])
            self.samples.append(frozenset(h["name"] for h in hosts if not h.get("ready")))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.05)

    @property
    def most_down(self) -> int:
        """The most hosts the status counted as not ready at once (pure)."""
        return max((len(s) for s in self.samples), default=0)


async def watched(app: App, doc: dict[str, Any]) -> tuple[Outcome, Monitor, StatusSampler]:
    """Apply a Release while sampling the workers and the saved status (network I/O)."""
    sampler = StatusSampler(app)
    sampling = asyncio.create_task(sampler.run())
    try:
        with Monitor(app) as monitor:
            outcome = await app.apply_manifest(doc)
    finally:
        sampler.stop.set()
        await sampling
    return outcome, monitor, sampler


def down_windows(events: list[dict[str, Any]], version: str) -> dict[str, tuple[float, float]]:
    """Per host, from the old worker's TERM to the `version` worker's readiness, by the workers' own times (pure)."""
    by_pid: dict[int, dict[str, float]] = {}
    for e in events:
        by_pid.setdefault(int(e["pid"]), {})[e["event"]] = float(e["time"])
    windows = {}
    for life in lives(events):
        if life.version != version:
            continue
        old = [o for o in lives(events) if o.host == life.host and o.version != version and o.start < life.start]
        went = [by_pid[o.pid]["draining"] for o in old if "draining" in by_pid[o.pid]]
        back = by_pid[life.pid].get("ready", float("inf"))
        if went:
            windows[life.host] = (max(went), back)
    return windows


def overlapping(windows: dict[str, tuple[float, float]]) -> list[tuple[str, str]]:
    """Pairs of hosts that were down at the same time (pure)."""
    found = []
    for (a, (a0, a1)), (b, (b0, b1)) in itertools.combinations(sorted(windows.items()), 2):
        if a0 < b1 and b0 < a1:
            found.append((a, b))
    return found


async def test_a_new_readiness_command_judges_a_host_only_once_it_runs_the_new_release(app: App) -> None:
    v1 = manifest(app, "v1", readiness=exec_probe(HEALTH), strategy={"maxUnavailable": "100%"})
    assert (await app.apply_manifest(v1)).result == Result.READY
    v2 = manifest(app, "v2", readiness=exec_probe(f"test -e {FEATURE} && {HEALTH}"))
    spec = parse_release(v2).spec
    driver = app.driver(spec, 2)
    try:
        seen = await driver.observe(spec)
    finally:
        await driver.close()
    assert seen.ready, "a v1 host was judged by the v2 probe its processes never had"
    assert f"exec: {HEALTH}" in str(seen.probe), seen.probe
    assert "[release " in str(seen.probe), seen.probe

    outcome, monitor, sampler = await watched(app, v2)

    assert outcome.result == Result.READY, outcome.message
    assert monitor.most_down <= 1, f"more than 1 host down at once: {monitor.worst()}"
    assert monitor.count(1) >= 3, "the watcher did not see the hosts go down one by one"
    windows = down_windows(app.read_events(), "v2")
    assert sorted(windows) == ["host1", "host2", "host3"], windows
    assert not overlapping(windows), f"hosts down together by the workers' own times: {windows}"
    assert sampler.most_down <= 1, f"the status counted several hosts not ready: {max(sampler.samples, key=len)}"
    for host in outcome.status.hosts:
        assert f"exec: test -e {FEATURE}" in str(host.probe), host


async def test_a_new_probe_no_host_passes_fails_on_the_first_host_and_rolls_only_it_back(app: App) -> None:
    v1 = manifest(app, "v1", readiness=exec_probe(HEALTH), strategy={"maxUnavailable": "100%"})
    assert (await app.apply_manifest(v1)).result == Result.READY
    v1_release = current_release(app, "host1")
    pids = {life.host: life.pid for life in lives(app.read_events()) if life.version == "v1"}
    never = exec_probe(f"test -e {FEATURE} && {HEALTH}", failureThreshold=5, periodSeconds=0.1)
    v2 = manifest(app, "v2", readiness=never, healthy=False)

    outcome, monitor, sampler = await watched(app, v2)

    assert outcome.result == Result.STALLED, outcome.message
    host1 = outcome.status.host("host1")
    assert host1 is not None
    assert (host1.phase, host1.rollback_failed) == ("RolledBack", False), host1
    assert current_release(app, "host1") == v1_release
    assert release_version(app, "host1", v1_release) == "v1"
    assert host1.ready, host1
    assert host1.probe == f"worker: exec: {HEALTH} [release {v1_release}]"
    assert starts_of(app.read_events(), "v2") == {"host1": 1}, "v2 reached another host"
    still = {life.host: life.pid for life in lives(app.read_events()) if life.version == "v1" and life.exit is None}
    assert {h: still.get(h) for h in ("host2", "host3")} == {h: pids[h] for h in ("host2", "host3")}
    assert monitor.most_down <= 1, f"more than 1 host down at once: {monitor.worst()}"
    assert sampler.most_down <= 1, f"the status counted several hosts not ready: {max(sampler.samples, key=len)}"


async def test_a_check_only_the_new_release_passes_takes_one_host_at_a_time(app: App) -> None:
    v1 = manifest(app, "v1", readiness=None, strategy={"maxUnavailable": "100%"})
    assert (await app.apply_manifest(v1)).result == Result.READY

    def booted() -> bool:
        return sum(e["event"] == "ready" for e in app.read_events()) == 3

    # Without a probe v1 is Ready once started: let its workers finish booting before watching.
    await eventually(booted, 30, "the v1 workers to boot")
    v2 = manifest(app, "v2", readiness=exec_probe(f"test -e {FEATURE} && {HEALTH}"))

    outcome, monitor, sampler = await watched(app, v2)

    assert outcome.result == Result.READY, outcome.message
    assert monitor.most_down <= 1, f"more than 1 host down at once: {monitor.worst()}"
    windows = down_windows(app.read_events(), "v2")
    assert sorted(windows) == ["host1", "host2", "host3"], windows
    assert not overlapping(windows), f"hosts down together by the workers' own times: {windows}"
    moments = sum(len(s) >= 2 for s in sampler.samples)
    assert moments == 0, f"{moments} samples of the status with 2 hosts not ready: {max(sampler.samples, key=len)}"
    assert len(sampler.samples) > 10, "the status was hardly sampled"
