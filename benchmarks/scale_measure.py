"""What bench_scale.py measures: floors, the workers' events, the API server's counters, /proc figures.

Kept apart from the driver so that every figure is computed by a small function with a docstring
that says what it is; nothing here starts a process.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import re
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

#: The scale worker (POSIX sh, two processes: itself and a sleep): ready READY_SECONDS after it
#: starts, it keeps `tmp/pids/ready.<pid>` while ready and exits its host's drain (drains.txt) after
#: TERM. Each step is appended to EVENTS_LOG as "<epoch> <host> <pid> <version> <event>".
WORKER_SH = r"""# kapistrano scale benchmark worker: ready after READY_SECONDS, exits its host's drain after TERM.
host=$(hostname)
version=$(cat VERSION)
drain=$(awk -v h="$host" '$1 == h { print $2 }' drains.txt)
ready_file="tmp/pids/ready.$$"
nap=
log() { [ -z "$EVENTS_LOG" ] || echo "$(date +%s.%N) $host $$ $version $1" >> "$EVENTS_LOG"; }
stop() {
  trap '' TERM INT
  rm -f "$ready_file"
  log draining
  [ -z "$nap" ] || kill "$nap" 2>/dev/null
  sleep "${drain:-3}"
  log exit
  exit 0
}
trap stop TERM INT
log start
sleep "${READY_SECONDS:-1}" & nap=$!
wait "$nap"
: > "$ready_file"
log ready
while :; do sleep 3600 & nap=$!; wait "$nap"; done
"""
#: The exec readiness probe of the scale worker (KAPISTRANO_PID is the instance's pid, set by kapistrano).
READY_PROBE = 'test -e tmp/pids/ready."$KAPISTRANO_PID"'


def draw_drains(seed: int, hosts: Sequence[str], low: float, high: float) -> dict[str, float]:
    """Each host's drain, uniform in [low, high] s from `seed`, rounded to 10 ms (pure)."""
    rng = random.Random(seed)
    return {host: round(rng.uniform(low, high), 2) for host in hosts}


def budget_hosts(budget: int | str, total: int) -> int:
    """maxUnavailable as a host count: a percent rounded down, at least 1 (pure, as the API says)."""
    if isinstance(budget, str) and budget.endswith("%"):
        return max(1, math.floor(total * int(budget[:-1]) / 100))
    return max(1, int(budget))


def wave_floor(steps: Sequence[float], slots: int) -> float:
    """Waves of `slots` hosts, each as long as the slowest host: ceil(n/slots) x max(step) (pure)."""
    return math.ceil(len(steps) / slots) * max(steps)


def sliding_floor(steps: Sequence[float], slots: int) -> float:
    """A perfect sliding window: hosts in order, the next starts the instant any of `slots` frees (pure).

    This is what an operator that wastes no time between hosts achieves; it is never above the wave
    floor, and with one slot it is the plain sum of the hosts' steps.
    """
    running: list[float] = []
    for step in steps:
        start = heapq.heappop(running) if len(running) == slots else 0.0
        heapq.heappush(running, start + step)
    return max(running, default=0.0)


@dataclass(frozen=True)
class Event:
    """One line of the workers' EVENTS_LOG."""

    time: float
    host: str
    pid: int
    version: str
    event: str


def read_events(path: Path) -> list[Event]:
    """Every well-formed event line of the log (reads the file)."""
    events = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            events.append(Event(float(parts[0]), parts[1], int(parts[2]), parts[3], parts[4]))
    return events


@dataclass(frozen=True)
class Rolled:
    """What the workers say about one rollout old -> new."""

    hosts_restarted: int  # hosts where a `new` worker started after an `old` one drained
    last_ready: float  # epoch of the last `new` worker's ready line
    most_down: int  # most hosts at once between an old worker's TERM and its successor's ready
    mean_down: float  # hosts down on average from the first TERM to the last ready (time-weighted)
    drain_measured: float  # mean seconds from TERM to exit
    ready_measured: float  # mean seconds from start to ready


def rolled(events: Iterable[Event], old: str, new: str, hosts: set[str]) -> Rolled:
    """Summarise a rollout of `hosts` from the event lines, first occurrence of each step (pure)."""
    steps = {(old, "draining"): "term", (old, "exit"): "exit", (new, "start"): "start", (new, "ready"): "ready"}
    first: dict[tuple[str, str], float] = {}
    for e in events:
        step = steps.get((e.version, e.event))
        if step is not None and e.host in hosts:
            first[(e.host, step)] = min(first.get((e.host, step), e.time), e.time)
    done = [h for h in hosts if (h, "term") in first and (h, "ready") in first]
    changes = sorted([(first[(h, "term")], 1) for h in done] + [(first[(h, "ready")], -1) for h in done])
    level = most = 0
    area, previous = 0.0, changes[0][0] if changes else 0.0
    for when, change in changes:
        area += level * (when - previous)
        level, previous = level + change, when
        most = max(most, level)
    mean_down = area / (changes[-1][0] - changes[0][0]) if len(changes) > 1 else 0.0

    def mean_between(a: str, b: str) -> float:
        pairs = [(first[(h, a)], first[(h, b)]) for h in done if (h, a) in first and (h, b) in first]
        return sum(y - x for x, y in pairs) / len(pairs) if pairs else 0.0

    last = max((first[(h, "ready")] for h in done), default=0.0)
    return Rolled(len(done), last, most, mean_down, mean_between("term", "exit"), mean_between("start", "ready"))


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _request_samples(metrics: str, name: str) -> dict[str, float]:
    """The samples of one apiserver request metric summed as 'VERB resource[/subresource]' (pure)."""
    found: dict[str, float] = {}
    for line in metrics.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        sub = labels.get("subresource", "")
        key = f"{labels.get('verb', '?')} {labels.get('resource', '?')}{'/' + sub if sub else ''}"
        found[key] = found.get(key, 0.0) + float(match.group(3))
    return found


def request_counts(metrics: str) -> Counter[str]:
    """apiserver_request_total summed as 'VERB resource[/subresource]' (pure, from /metrics text)."""
    return Counter({k: int(v) for k, v in _request_samples(metrics, "apiserver_request_total").items()})


def request_seconds(metrics: str) -> dict[str, float]:
    """Seconds the API server spent serving each 'VERB resource[/subresource]' (pure, from /metrics text)."""
    return _request_samples(metrics, "apiserver_request_duration_seconds_sum")


def ssh_opened_counts(metrics: str) -> Counter[str]:
    """kapistrano_ssh_opened_total by kind (connect, exec, tcp) (pure, from the operator's /metrics text)."""
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics):
        if family.name == "kapistrano_ssh_opened":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["kind"]] += int(sample.value)
    return found


def ssh_opened(port: int) -> Counter[str]:
    """The operator's SSH opens so far, by kind, from its /metrics on localhost:`port` (network I/O)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return ssh_opened_counts(response.read().decode())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc/<pid>/stat (reads /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, field: str) -> int:
    """A kB field of /proc/<pid>/status such as VmHWM or VmRSS, 0 if absent (reads /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size of a process in kB, 0 if gone (reads /proc/<pid>/smaps_rollup)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def mem_available_kib() -> int:
    """MemAvailable of /proc/meminfo in kB (reads /proc)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def profile_summary(raw: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, inclusive %, own %) of py-spy's raw (collapsed) samples, most inclusive first (reads the file)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        for frame in set(frames[1:]):  # frames[0] is the thread
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return []
    return [(f, 100 * n / total, 100 * own[f] / total) for f, n in inclusive.most_common(top)]


def own_summary(raw: Path, top: int = 15) -> list[tuple[str, float]]:
    """(function, own %) of py-spy's raw samples: where the CPU itself went (reads the file)."""
    return [(f, o) for f, _, o in sorted(profile_summary(raw, top=10_000), key=lambda r: -r[2])[:top]]
