"""What the engine safety tests watch: which hosts serve, per-process lifetimes, the state file.

The monitor samples every worker every 50 ms from the root namespace (all lab hosts share the
machine's pid namespace): a host is DOWN when one of its instances has no pid file, its pid is gone
or a zombie, or that process is not serving (not yet ready, or draining after TERM, as its event
lines say). That is stricter than liveness alone: the engine's budget is about hosts that serve.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kapistrano.lab import HostLab

from .appkit import App

DEPLOY_TO = "/var/www/app"
SAMPLE_SECONDS = 0.05


def pid_alive(pid: int) -> bool:
    """True when /proc/<pid> exists and is not a zombie (reads /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def read_pid(path: Path) -> int | None:
    """The pid a pid file names, None when missing or not a number (reads a file)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@dataclass
class EventTail:
    """Reads a worker events file incrementally; keeps which pids are ready and which drain."""

    path: Path
    offset: int = 0
    ready: set[int] = field(default_factory=set)
    draining: set[int] = field(default_factory=set)

    def poll(self) -> None:
        """Take in the complete lines written since the last poll (reads the file)."""
        with self.path.open("rb") as source:
            source.seek(self.offset)
            chunk = source.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            if not line.strip():
                continue
            event = json.loads(line)
            if event["event"] == "ready":
                self.ready.add(int(event["pid"]))
            elif event["event"] in ("draining", "exit"):
                self.draining.add(int(event["pid"]))


class Monitor:
    """A thread that samples which lab hosts are down every 50 ms until stopped."""

    def __init__(self, app: App, instances: int = 1) -> None:
        self.lab: HostLab = app.lab
        self.tail = EventTail(app.events)
        self.pidfiles = {
            h.name: [h.path(f"{DEPLOY_TO}/shared/tmp/pids/worker.{n}.pid") for n in range(instances)]
            for h in self.lab.hosts
        }
        self.samples: list[tuple[float, frozenset[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="down-monitor", daemon=True)

    def down_now(self) -> frozenset[str]:
        """Hosts with an instance that is not serving right now (reads pid files, /proc, the events file)."""
        self.tail.poll()
        down = set()
        for name, files in self.pidfiles.items():
            for path in files:
                pid = read_pid(path)
                serving = pid is not None and pid in self.tail.ready and pid not in self.tail.draining
                if not serving or not pid_alive(pid or 0):
                    down.add(name)
        return frozenset(down)

    def _run(self) -> None:
        """Sample until stopped (reads files)."""
        while not self._stop.is_set():
            self.samples.append((time.time(), self.down_now()))
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> Monitor:
        self.tail.poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sampling and wait for the thread (blocks briefly)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    @property
    def most_down(self) -> int:
        """The largest number of hosts seen down at once (pure)."""
        return max((len(d) for _, d in self.samples), default=0)

    def count(self, down: int) -> int:
        """How many samples saw exactly `down` hosts down (pure)."""
        return sum(len(d) == down for _, d in self.samples)

    def worst(self) -> tuple[float, frozenset[str]] | None:
        """The first sample with the most hosts down, for failure messages (pure)."""
        return max(self.samples, key=lambda s: len(s[1]), default=None)


# -- process lifetimes from the events file ---------------------------------------------------------


@dataclass(frozen=True)
class Life:
    """One worker process: where and what it ran, and when it started and exited (None: still running)."""

    pid: int
    host: str
    instance: int
    version: str
    cwd: str
    start: float
    exit: float | None


def lives(events: list[dict[str, Any]]) -> list[Life]:
    """Every process seen in the events, in start order (pure)."""
    starts: dict[int, dict[str, Any]] = {}
    exits: dict[int, float] = {}
    for e in events:
        if e["event"] == "start":
            starts[int(e["pid"])] = e
        elif e["event"] == "exit":
            exits[int(e["pid"])] = float(e["time"])
    found = [
        Life(pid, s["host"], int(s["instance"]), s["version"], s["cwd"], float(s["time"]), exits.get(pid))
        for pid, s in starts.items()
    ]
    return sorted(found, key=lambda life: life.start)


def overlaps(events: list[dict[str, Any]]) -> list[tuple[Life, Life]]:
    """Pairs of processes of the same host and instance that ran at the same time (pure)."""
    found = []
    per_slot: dict[tuple[str, int], list[Life]] = {}
    for life in lives(events):
        per_slot.setdefault((life.host, life.instance), []).append(life)
    for slot in per_slot.values():
        for before, after in itertools.pairwise(slot):
            if before.exit is None or before.exit > after.start:
                found.append((before, after))
    return found


def starts_of(events: list[dict[str, Any]], version: str) -> dict[str, int]:
    """Host -> number of processes of `version` started there (pure)."""
    counts: dict[str, int] = {}
    for e in events:
        if e["event"] == "start" and e["version"] == version:
            counts[e["host"]] = counts.get(e["host"], 0) + 1
    return counts


# -- waiting ----------------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], bool], timeout: float, what: str | Callable[[], str], period: float = 0.05
) -> None:
    """Poll a condition until true; fails the test with `what` (or what it returns) past the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(period)


def read_state(path: Path) -> dict[str, Any]:
    """The state file as JSON, {} while it does not exist or is being replaced (reads a file)."""
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded


def host_state(path: Path, host: str) -> dict[str, Any]:
    """One host's entry of the state file, {} when absent (reads a file)."""
    for entry in read_state(path).get("hosts", []):
        if entry.get("name") == host:
            return dict(entry)
    return {}


def current_release(app: App, host_name: str) -> str:
    """The release name `current` points at on a host (reads the host's files)."""
    link = app.lab.host(host_name).path(f"{DEPLOY_TO}/current")
    return Path(str(link.readlink())).name


def release_version(app: App, host_name: str, release: str) -> str:
    """The version marker of a release on a host (reads the host's files)."""
    marker = app.lab.host(host_name).path(f"{DEPLOY_TO}/releases/{release}/.kapistrano-version")
    return marker.read_text().strip()
