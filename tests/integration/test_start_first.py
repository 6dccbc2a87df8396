"""replace StartFirst through the engine: successors start beside the old workers, capacity never dips.

A sampler reads every worker's events (ready, draining, exit) every 50 ms and counts, per host, the
processes that serve: ready, not draining, alive. With StartFirst that count never falls below the
instances of the spec, on any host, while a version rolls out or while a version that never gets
ready is rolled back.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kapistrano.api.release import parse_release
from kapistrano.engine.rollout import Outcome, Result

from .appkit import App, AppFactory
from .safety import SAMPLE_SECONDS, pid_alive

INSTANCES = 2


class Capacity:
    """A thread sampling how many workers serve on each host, from the events file, until stopped."""

    def __init__(self, events: Path) -> None:
        self.events = events
        self.offset = 0
        self.host_of: dict[int, str] = {}
        self.ready: set[int] = set()
        self.gone: set[int] = set()
        self.samples: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capacity", daemon=True)

    def _take_in(self) -> None:
        """Read the complete event lines written since the last look (reads the file)."""
        with self.events.open("rb") as source:
            source.seek(self.offset)
            chunk = source.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            event = json.loads(line)
            pid = int(event["pid"])
            self.host_of[pid] = str(event["host"])
            if event["event"] == "ready":
                self.ready.add(pid)
            elif event["event"] in ("draining", "exit"):
                self.gone.add(pid)

    def serving(self) -> dict[str, int]:
        """Host -> workers serving right now (reads the events file and /proc)."""
        self._take_in()
        counts: dict[str, int] = {}
        for pid in self.ready - self.gone:
            if pid_alive(pid):
                counts[self.host_of[pid]] = counts.get(self.host_of[pid], 0) + 1
        return counts

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.serving())
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> Capacity:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def below(self, hosts: list[str], full: int) -> list[dict[str, int]]:
        """The samples in which some host served fewer than `full` workers (pure)."""
        return [s for s in self.samples if any(s.get(h, 0) < full for h in hosts)]


@pytest.fixture
def app(app_factory: AppFactory) -> App:
    """Three lab hosts; the sample worker drains for 1 s and boots in 0.3 s."""
    return app_factory(3, drain=1.0, boot=0.3)


def start_first(app: App) -> dict[str, Any]:
    """Spec fields: two StartFirst instances each, judged ready by their own events and the release's HEALTHY."""
    ready = """'"event": "ready", "pid": '"$KAPISTRANO_PID"','"""
    probe = f"grep -qx yes HEALTHY && grep -qF {ready} {app.events}"
    return {
        "instances": INSTANCES,
        "readiness": {"httpGet": None, "exec": {"command": probe}, "periodSeconds": 0.05, "failureThreshold": 40},
        "strategy": {"maxUnavailable": 1, "maxSurge": 1},
    }


def with_start_first(app: App, version: str, **spec: Any) -> dict[str, Any]:
    """The manifest of `version` with StartFirst workers on a free health port (pure apart from the source copy)."""
    document = app.manifest(version, **start_first(app), **spec)
    worker = document["spec"]["services"][0]
    worker["pidfile"]["replace"] = "StartFirst"
    worker["pidfile"]["start"] = worker["pidfile"]["start"].replace("exec env ", "exec env HEALTH_PORT=0 ")
    return document


async def roll(app: App, document: dict[str, Any]) -> Outcome:
    """Run the engine to the end for a manifest (network I/O)."""
    rollout = app.rollout(parse_release(document).spec)
    try:
        return await rollout.run()
    finally:
        await rollout.close()


async def test_start_first_rolls_a_version_without_a_moment_below_full_capacity(app: App) -> None:
    hosts = [h.name for h in app.lab.hosts]
    assert (await roll(app, with_start_first(app, "v1"))).result == Result.READY
    with Capacity(app.events) as capacity:
        began = time.monotonic()
        outcome = await roll(app, with_start_first(app, "v2"))
        span = time.monotonic() - began
    assert outcome.result == Result.READY, outcome.message
    assert len(capacity.samples) >= 20, "too few samples to prove anything"
    assert not capacity.below(hosts, INSTANCES), capacity.below(hosts, INSTANCES)[:3]
    v2 = {e["host"] for e in app.read_events() if e["event"] == "ready" and e["version"] == "v2"}
    assert v2 == set(hosts)
    print(f"StartFirst 3 hosts x {INSTANCES}: {span:.2f}s, {len(capacity.samples)} samples, 0 below capacity")


async def test_start_first_successors_that_never_get_ready_are_retired_and_the_old_workers_never_stop(
    app: App,
) -> None:
    hosts = [h.name for h in app.lab.hosts]
    assert (await roll(app, with_start_first(app, "v1"))).result == Result.READY
    old = {int(e["pid"]) for e in app.read_events() if e["event"] == "start"}
    with Capacity(app.events) as capacity:
        outcome = await roll(app, with_start_first(app, "v2", healthy=False))
    assert outcome.result == Result.STALLED, outcome.message
    assert "HostFailed" in outcome.message
    assert not capacity.below(hosts, INSTANCES), capacity.below(hosts, INSTANCES)[:3]
    events = app.read_events()
    assert not [e for e in events if int(e["pid"]) in old and e["event"] in ("draining", "exit")], (
        "an old worker stopped"
    )
    tried = {e["host"] for e in events if e["event"] == "start" and e["version"] == "v2"}
    assert tried == {"host1"}, f"v2 went further than the first host: {tried}"
    failed = outcome.status.host("host1")
    assert failed is not None
    assert failed.phase == "RolledBack", failed
