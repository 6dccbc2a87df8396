"""Hosts running several worker instances with random drains, shared by bench_rolling.py and bench_tools.py.

Every (host, instance) gets its own drain, uniform in [low, high] seconds from a seeded generator, so
that one run is reproducible from its printed seed. The version directories hold the sample worker
(`sample_worker.py`), the table of drains (`drains.json`) and a small `worker.py` that looks up its
own drain by host name and KAPISTRANO_INSTANCE, picks its health port (v1: 9100 + instance, later
versions: 9200 + instance, so that a StartFirst successor can listen beside its predecessor) and
runs the sample worker in the same interpreter (its boot time still counts from process creation).
While ready it keeps `tmp/pids/ready.<pid>` so that an exec readiness probe costs one `test -e`.

From the workers' shared EVENTS_LOG, `capacity` rebuilds how many instances were ready at every
50 ms of a release (an instance is ready from its `ready` line until its `draining` line).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kapistrano.lab import HostLab
from kapistrano.lab.network import LabError

#: The sample worker's health ports: v1 listens on V1_PORT + instance, every later version on NEXT_PORT + ...
V1_PORT = 9100
NEXT_PORT = 9200
#: Where each ready worker keeps its ready file, relative to the release (a linked dir: shared/tmp/pids).
READY_DIR = "tmp/pids"
#: The exec readiness probe of one instance: its own ready file (KAPISTRANO_PID is set by kapistrano).
READY_PROBE = f'test -e {READY_DIR}/ready."$KAPISTRANO_PID"'
#: How often the ready instances are counted.
SAMPLE_SECONDS = 0.05

SHIM = f'''"""Benchmark worker: the sample worker with this host's and instance's drain (standard library only)."""
import json
import os
import socket
import sys
import time

table = json.load(open("drains.json"))
instance = int(os.environ.get("KAPISTRANO_INSTANCE", "0"))
os.environ["DRAIN_SECONDS"] = str(table[socket.gethostname()][instance])
version = open("VERSION").read().strip()
os.environ["HEALTH_PORT"] = str({V1_PORT} if version == "v1" else {NEXT_PORT})
sys.path.insert(0, os.getcwd())
import sample_worker  # noqa: E402

ready_file = os.path.join("{READY_DIR}", "ready.%d" % os.getpid())
plain_record = sample_worker.record


def record(event):
    plain_record(event)
    if event == "ready":
        open(ready_file, "w").close()
    elif event == "draining" and os.path.exists(ready_file):
        os.remove(ready_file)


sample_worker.record = record
sys.exit(sample_worker.main())
'''


#: Lab start attempts: a lab's network namespaces can fail to come up while other labs start beside it.
LAB_ATTEMPTS = 3


@contextlib.contextmanager
def started_lab(hosts: int) -> Iterator[HostLab]:
    """A started lab of `hosts` hosts, retrying a failed start (processes; closed afterwards)."""
    for attempt in range(1, LAB_ATTEMPTS + 1):
        lab = HostLab(hosts)
        try:
            lab.start()
            break
        except LabError as exc:
            lab.close()
            if attempt == LAB_ATTEMPTS:
                raise
            print(f"  lab start failed ({exc}), trying again", flush=True)
    try:
        yield lab
    finally:
        lab.close()


@dataclass(frozen=True)
class Drains:
    """Seconds each instance of each host needs to exit after TERM."""

    seed: int
    by_host: dict[str, list[float]]

    @classmethod
    def draw(cls, seed: int, hosts: list[str], instances: int, low: float, high: float) -> Drains:
        """Uniform drains in [low, high] from `seed`, rounded to 10 ms (pure)."""
        rng = random.Random(seed)
        return cls(seed, {h: [round(rng.uniform(low, high), 2) for _ in range(instances)] for h in hosts})

    @property
    def instances(self) -> int:
        """Instances per host (pure)."""
        return len(next(iter(self.by_host.values())))

    def stop_first_floor(self, ready: float) -> float:
        """One host at a time, instances together: sum over hosts of (slowest drain + ready) (pure)."""
        return sum(max(d) + ready for d in self.by_host.values())

    def start_first_floor(self, ready: float) -> float:
        """One host at a time starting its new instances beside the old ones: hosts * ready + slowest drain (pure)."""
        return len(self.by_host) * ready + max(max(d) for d in self.by_host.values())

    def describe(self) -> str:
        """One line per host: its drains (pure)."""
        return "\n".join(f"  {h}: " + " ".join(f"{d:.2f}" for d in ds) for h, ds in self.by_host.items())


def write_drains(sources: dict[str, str], drains: Drains) -> None:
    """Put the drains table into every version directory (writes files)."""
    for path in sources.values():
        (Path(path) / "drains.json").write_text(json.dumps(drains.by_host))


def multi_service(*, instances: int, ready: float, replace: str, events: Path | None) -> dict[str, object]:
    """The pidfile service of the benchmark: `instances` workers, exec readiness per instance (pure)."""
    log = f" EVENTS_LOG={events}" if events is not None else ""
    return {
        "name": "worker",
        "manager": "pidfile",
        "instances": instances,
        "pidfile": {
            "path": "tmp/pids/worker.{index}.pid",
            "start": f"exec env READY_SECONDS={ready}{log} python3 worker.py",
            "stopTimeoutSeconds": 120,
            "replace": replace,
        },
        "readiness": {"exec": {"command": READY_PROBE}, "periodSeconds": 0.05, "failureThreshold": 2000},
    }


# -- what the workers recorded --------------------------------------------------------------------------


def read_events(path: Path) -> list[dict[str, object]]:
    """Every event line of the shared log (reads the file)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Capacity:
    """Ready instances over one release, counted every SAMPLE_SECONDS."""

    full: int  # hosts * instances
    samples: int
    below: int  # samples with fewer than `full` ready instances
    lowest: int  # the fewest ready instances at any sample
    exact_lowest: int  # the fewest at any instant (event by event)
    span: float  # first v1 TERM or v2 start, to the last v1 exit or v2 ready, whichever is later
    hosts_short_at_once: int  # most hosts at once with fewer than all their instances ready


def _timeline(rows: list[dict[str, object]], old: str, new: str) -> tuple[list[tuple[float, int, str]], float, float]:
    """(time, +1/-1, host) changes of ready instances, and the release's first and last moments (pure)."""
    changes: list[tuple[float, int, str]] = []
    first, last = float("inf"), float("-inf")
    for row in rows:
        version, event, when, host = row["version"], row["event"], float(row["time"]), str(row["host"])  # type: ignore[arg-type]
        if event == "ready":
            changes.append((when, 1, host))
        elif event == "draining":
            changes.append((when, -1, host))
        if (version == old and event == "draining") or (version == new and event == "start"):
            first = min(first, when)
        if (version == old and event == "exit") or (version == new and event == "ready"):
            last = max(last, when)
    changes.sort(key=lambda c: (c[0], -c[1]))  # a start and an exit at the same instant: count the start first
    return changes, first, last


def wait_for_exits(path: Path, old: str = "v1", timeout: float = 60.0) -> None:
    """Wait until every `old` worker logged its exit: StartFirst hosts retire theirs in the background (polls)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = read_events(path)
        started = {r["pid"] for r in rows if r["version"] == old and r["event"] == "start"}
        exited = {r["pid"] for r in rows if r["version"] == old and r["event"] == "exit"}
        if started <= exited:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{old} workers still running after {timeout}s")


def capacity(path: Path, hosts: list[str], instances: int, old: str = "v1", new: str = "v2") -> Capacity:
    """Ready instances of a release from the events log (reads the file)."""
    changes, first, last = _timeline(read_events(path), old, new)
    full = len(hosts) * instances
    per_host = dict.fromkeys(hosts, 0)
    level, exact_lowest, short_most = 0, full, 0
    at: list[tuple[float, int]] = []
    for when, step, host in changes:
        level += step
        per_host[host] += step
        at.append((when, level))
        if first <= when <= last:
            exact_lowest = min(exact_lowest, level)
            short_most = max(short_most, sum(n < instances for n in per_host.values()))
    samples, below, lowest = 0, 0, full
    index, level, t = 0, 0, first
    while t <= last and samples < 100_000:
        while index < len(at) and at[index][0] <= t:
            level = at[index][1]
            index += 1
        samples += 1
        below += level < full
        lowest = min(lowest, level)
        t = first + samples * SAMPLE_SECONDS
    return Capacity(full, samples, below, lowest, exact_lowest, last - first, short_most)


@dataclass(frozen=True)
class Phases:
    """Mean seconds per host of each step of a release, from the workers' events (hosts in the order they went)."""

    boot: float  # first new start to last new ready (S plus the starts' spread)
    to_stop: float  # StopFirst: ready to the next host's first TERM; StartFirst: last new ready to first old TERM
    drain: float  # first old TERM to last old exit (the slowest drain plus the signals' spread)
    to_start: float  # StopFirst: last old exit to first new start; StartFirst: last old exit to the next host's start


def phases(path: Path, old: str = "v1", new: str = "v2") -> Phases:
    """Where the time of a release went, host by host (reads the file)."""
    marks: dict[str, dict[str, list[float]]] = {}
    for row in read_events(path):
        key = {(old, "draining"): "term", (old, "exit"): "exit", (new, "start"): "start", (new, "ready"): "ready"}
        step = key.get((str(row["version"]), str(row["event"])))
        if step is not None:
            marks.setdefault(str(row["host"]), {}).setdefault(step, []).append(float(row["time"]))  # type: ignore[arg-type]
    hosts = sorted((m for m in marks.values() if all(k in m for k in ("term", "exit", "start", "ready"))),
                   key=lambda m: min(m["start"]))  # fmt: skip
    if not hosts:
        return Phases(0.0, 0.0, 0.0, 0.0)
    start_first = min(hosts[0]["start"]) < max(hosts[0]["exit"])
    boot = [max(m["ready"]) - min(m["start"]) for m in hosts]
    drain = [max(m["exit"]) - min(m["term"]) for m in hosts]
    if start_first:
        to_stop = [min(m["term"]) - max(m["ready"]) for m in hosts]
        to_start = [min(b["start"]) - max(a["exit"]) for a, b in itertools.pairwise(hosts)]
    else:
        to_stop = [min(b["term"]) - max(a["ready"]) for a, b in itertools.pairwise(hosts)]
        to_start = [min(m["start"]) - max(m["exit"]) for m in hosts]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    return Phases(mean(boot), mean(to_stop), mean(drain), mean(to_start))
