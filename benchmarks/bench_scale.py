#!/usr/bin/env python3
"""kapistrano at scale: hundreds of lab hosts rolled by the operator on the real API server.

A scenario RxN is R Releases of N lab hosts each (every Release its own hosts, application and
deployTo), maxUnavailable 10% by default. Everything is started fresh per scenario: the API server
of tests/kube (kapistrano.lab.kubeserver), R*N lab hosts, and the operator as a child process
(`kapistrano run`, the ServiceAccount user of manifests/), whose CPU and memory are read from /proc.
Each host runs a tiny shell worker (two processes: sh and a sleep) that is ready S s after it starts
and exits its host's drain D_h after TERM, D_h uniform in --drain-range from --seed; readiness is an
exec probe of the worker's ready file. v1 is rolled out and waited for (Ready), then every Release is
patched to v2 at once, and the benchmark measures until every Release is Ready again:

- wall: from a Release's patch until the benchmark sees it Ready (polled every --poll s);
- floor, waves: ceil(N/k) x (slowest drain + S), k = maxUnavailable in hosts (the targets' floor);
- floor, sliding: the hosts in spec order, each taking D_h + S, the next one starting the instant
  one of the k slots frees (a perfect sliding window; never above the wave floor; with k = 1 the
  plain sum over hosts);
- operator CPU: user+sys of the operator process (/proc/<pid>/stat) over the rollout, per host
  restarted; operator peak RSS: VmHWM at the end (its whole life, v1 included);
- status writes: the API server's own counter apiserver_request_total{verb="PATCH",
  resource="releases",subresource="status"} (its /metrics) over the rollout, per Release per minute;
- most hosts down at once (from the workers' events: TERM to successor ready), never above k;
- what a host costs: lab start time, processes and PSS per host with its worker and the operator's
  SSH connection, MemAvailable taken by the lab.

    .venv/bin/python -m benchmarks.bench_scale --scenario 1x200 1x500 50x10   (as root)
    .venv/bin/python -m benchmarks.bench_scale --scenario 1x200 --profile /tmp/prof   (py-spy, if installed)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kapistrano.api.release import API_VERSION, GROUP, KIND, PLURAL, VERSION
from kapistrano.cli.demo_operator import OperatorProcess, Releases, is_ready, stalled
from kapistrano.k8s.credentials import OPT_IN_LABEL
from kapistrano.lab import HostLab, procs
from kapistrano.lab.kubeserver import KubeServer, free_port, install

from benchmarks import scale_measure as measure

NAMESPACE = "scale"
SECRET = "scale-ssh"
MERGE_PATCH = "application/merge-patch+json"
MIB = 1024
#: Seconds the lab may take to start (500 hosts take about 6 on 2 cores).
LAB_START_TIMEOUT = 120.0


@dataclass(frozen=True)
class Scenario:
    """R Releases of N hosts each, all rolled at once."""

    releases: int
    hosts: int

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """'50x10' -> 50 Releases of 10 hosts (pure)."""
        releases, hosts = text.lower().split("x")
        return cls(int(releases), int(hosts))

    @property
    def total(self) -> int:
        """Lab hosts needed (pure)."""
        return self.releases * self.hosts

    def __str__(self) -> str:
        return f"{self.releases} Release{'s' if self.releases > 1 else ''} x {self.hosts} hosts"


def write_sources(root: Path, drains: dict[str, float]) -> dict[str, str]:
    """v1 and v2 source directories of the scale worker with the drains table (writes files)."""
    sources = {}
    for version in ("v1", "v2"):
        path = root / version
        path.mkdir(parents=True)
        (path / "worker.sh").write_text(measure.WORKER_SH)
        (path / "VERSION").write_text(version + "\n")
        (path / "drains.txt").write_text("".join(f"{h} {d}\n" for h, d in drains.items()))
        sources[version] = str(path)
    return sources


def release_doc(
    index: int, hosts: list[dict[str, Any]], version: str, *, source: str, args: argparse.Namespace, events: Path
) -> dict[str, Any]:
    """Release number `index` over `hosts` (pure)."""
    service = {
        "name": "worker",
        "manager": "pidfile",
        "pidfile": {
            "path": "tmp/pids/worker.{index}.pid",
            "start": f"exec env READY_SECONDS={args.ready:g} EVENTS_LOG={events} sh worker.sh",
            "stopTimeoutSeconds": 120,
        },
        "readiness": {"exec": {"command": measure.READY_PROBE}, "periodSeconds": args.probe_period,
                      "failureThreshold": 2000},
    }  # fmt: skip
    spec = {
        "application": f"scale{index:02d}",
        "version": version,
        "source": {"path": source},
        "linkedDirs": ["log", "tmp/pids"],
        "hosts": hosts,
        "ssh": {"user": "root", "secretRef": {"name": SECRET}},
        "services": [service],
        "strategy": {"maxUnavailable": args.budget},
    }
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": f"scale-{index:02d}"}, "spec": spec}


class Cluster(Releases):
    """The Releases of the scenario, in NAMESPACE, through the official client (network I/O)."""

    def prepare(self, lab: HostLab) -> None:
        """Create the namespace and the SSH Secret (network I/O)."""
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        data = {"ssh-privatekey": lab.client_key.read_bytes(), "known_hosts": lab.known_hosts.read_bytes()}
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": SECRET, "namespace": NAMESPACE, "labels": {OPT_IN_LABEL: "true"}},
                  "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}  # fmt: skip
        self.core.create_namespaced_secret(NAMESPACE, secret)

    def create_release(self, doc: dict[str, Any]) -> None:
        """Create one Release (network I/O)."""
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, doc)

    def patch_release(self, name: str, version: str, source: str) -> None:
        """Move one Release to another version (network I/O)."""
        body = {"spec": {"version": version, "source": {"path": source}}}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name, body, _content_type=MERGE_PATCH
        )

    def releases(self) -> list[dict[str, Any]]:
        """Every Release of the namespace (network I/O)."""
        found: dict[str, Any] = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
        return list(found["items"])


@dataclass
class Stage:
    """What one scenario runs on: the API server, the lab, the operator and the Releases' sources."""

    server: KubeServer
    lab: HostLab
    cluster: Cluster
    operator: OperatorProcess
    sources: dict[str, str]
    events: Path
    names: set[str]
    args: argparse.Namespace


def wait_ready(stage: Stage, version: str) -> dict[str, float]:
    """Poll until every Release is Ready on `version`; monotonic time each was first seen so (network I/O).

    Raises SystemExit when one stalls, the operator exits or --timeout passes.
    """
    seen: dict[str, float] = {}
    deadline = time.monotonic() + stage.args.timeout
    while time.monotonic() < deadline:
        if (code := stage.operator.exited()) is not None:
            raise SystemExit(f"the operator exited ({code}):\n{stage.operator.tail()}")
        now = time.monotonic()
        for release in stage.cluster.releases():
            name = release["metadata"]["name"]
            if name not in stage.names or name in seen or release["spec"]["version"] != version:
                continue
            if is_ready(release):
                seen[name] = now
            elif (reason := stalled(release)) is not None:
                raise SystemExit(f"{name} stalled on {version}: {reason}")
        if len(seen) == len(stage.names):
            return seen
        time.sleep(stage.args.poll)
    raise SystemExit(f"{len(stage.names) - len(seen)} Releases not Ready on {version} in {stage.args.timeout:.0f} s")


def host_cost(lab: HostLab) -> dict[str, float]:
    """Processes and PSS per host right now, the namespace holder included, in one /proc scan (reads /proc)."""
    ids = {ns for h in lab.hosts if h.holder_pid and (ns := procs.namespace_id(h.holder_pid, "mnt"))}
    by_ns = procs.pids_by_namespace(ids)
    pids = [pid for found in by_ns.values() for pid in found]
    return {
        "processes_per_host": len(pids) / len(lab.hosts),
        "pss_mib_per_host": sum(measure.pss_kib(pid) for pid in pids) / len(lab.hosts) / MIB,
    }


@contextlib.contextmanager
def profiled(pid: int, directory: Path | None) -> Any:
    """py-spy recording the operator while the block runs, when `directory` is given (starts a process)."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if directory is None or not Path(pyspy).exists():
        yield None
        return
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"operator-{pid}.txt"
    argv = [pyspy, "record", "--pid", str(pid), "--rate", "50", "--format", "raw", "--nonblocking", "-o", str(out)]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield out
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(10)


def rollout_figures(
    scenario: Scenario, groups: list[list[str]], drains: dict[str, float], args: argparse.Namespace
) -> dict[str, Any]:
    """Floors of every Release (pure)."""
    slots = measure.budget_hosts(args.budget, scenario.hosts)
    floors = []
    for hosts in groups:
        steps = [drains[h] + args.ready for h in hosts]
        floors.append({"waves": measure.wave_floor(steps, slots), "sliding": measure.sliding_floor(steps, slots)})
    return {"slots": slots, "floors": floors, "slowest_drain": max(drains.values())}


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, roll v1 then v2 across the scenario's Releases, measure (starts and stops processes)."""
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    with contextlib.ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="kapbench-scale-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        server = stack.enter_context(KubeServer(root / "kube", namespace=NAMESPACE))
        install(kubectl, server.kubeconfig)
        row: dict[str, Any] = {"scenario": str(scenario), "releases": scenario.releases, "hosts": scenario.hosts}
        available, started = measure.mem_available_kib(), time.monotonic()
        lab = HostLab(scenario.total)
        stack.callback(lab.close)
        lab.start(timeout=LAB_START_TIMEOUT)
        row["lab"] = {"start_s": time.monotonic() - started, "steps_s": dict(lab.timings),
                      "mem_available_mib_per_host": (available - measure.mem_available_kib()) / scenario.total / MIB,
                      "raised_limits": dict(lab.raised_limits), **host_cost(lab)}  # fmt: skip
        drains = measure.draw_drains(args.seed, [h.name for h in lab.hosts], *args.drain_range)
        sources = write_sources(root / "src", drains)
        events = root / "events.log"
        events.touch()
        if args.keep:
            stack.callback(keep_logs, root, args.keep, f"{scenario.releases}x{scenario.hosts}")
        cluster = Cluster(server.kubeconfig)
        stack.callback(cluster.close)
        cluster.prepare(lab)
        operator = OperatorProcess(server.operator_kubeconfig, root / "operator.log", free_port())
        stack.callback(operator.stop)
        operator.start()
        entries = lab.release_yaml_hosts()
        groups = [entries[i * scenario.hosts : (i + 1) * scenario.hosts] for i in range(scenario.releases)]
        names = {f"scale-{i:02d}" for i in range(scenario.releases)}
        row |= rollout_figures(scenario, [[str(h["name"]) for h in g] for g in groups], drains, args)
        stage = Stage(server, lab, cluster, operator, sources, events, names, args)
        row["v1"] = first_deploy(stage, groups)
        row["with_worker"] = host_cost(lab)
        row["v2"] = measured_rollout(stage)
    return row


def keep_logs(root: Path, keep: Path, prefix: str) -> None:
    """Copy the workers' events and the operator's log out of `root`, also after a failed run (writes files)."""
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("events.log", "operator.log"):
        if (root / name).exists():
            shutil.copy(root / name, keep / f"{prefix}-{name}")


def first_deploy(stage: Stage, groups: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Create every Release on v1 and wait for all Ready; its wall and operator CPU (network I/O)."""
    cpu, started = measure.cpu_seconds(stage.operator.pid), time.monotonic()
    for index, hosts in enumerate(groups):
        doc = release_doc(index, hosts, "v1", source=stage.sources["v1"], args=stage.args, events=stage.events)
        stage.cluster.create_release(doc)
    seen = wait_ready(stage, "v1")
    return {"wall_s": max(seen.values()) - started, "operator_cpu_s": measure.cpu_seconds(stage.operator.pid) - cpu}


def measured_rollout(stage: Stage) -> dict[str, Any]:
    """Patch every Release to v2 at once and measure until all are Ready again (network I/O)."""
    server, operator, args = stage.server, stage.operator, stage.args
    text = server.metrics()
    before, busy = measure.request_counts(text), measure.request_seconds(text)
    cpu, opened = measure.cpu_seconds(operator.pid), measure.ssh_opened(operator.metrics_port)
    patched: dict[str, float] = {}
    epoch, load = time.time(), os.getloadavg()[0]
    with profiled(operator.pid, args.profile) as profile:
        for name in sorted(stage.names):
            patched[name] = time.monotonic()
            stage.cluster.patch_release(name, "v2", stage.sources["v2"])
        seen = wait_ready(stage, "v2")
        cpu = measure.cpu_seconds(operator.pid) - cpu
    opened = measure.ssh_opened(operator.metrics_port) - opened
    text = server.metrics()
    requests = measure.request_counts(text)
    requests.subtract(before)
    served = {k: v - busy.get(k, 0.0) for k, v in measure.request_seconds(text).items()}
    latency = {k: 1000 * served[k] / n for k, n in requests.items() if n > 0 and k in served}
    span = max(seen.values()) - min(patched.values())
    worker = measure.rolled(measure.read_events(stage.events), "v1", "v2", {h.name for h in stage.lab.hosts})
    return {
        "walls": {name: seen[name] - patched[name] for name in sorted(stage.names)},
        "span_s": span,
        "workers_done_s": worker.last_ready - epoch,
        "operator_cpu_s": cpu,
        "ssh_opened": dict(opened),
        "load_average": (load, os.getloadavg()[0]),
        "hosts_restarted": worker.hosts_restarted,
        "most_down": worker.most_down,
        "mean_down": worker.mean_down,
        "drain_measured_s": worker.drain_measured,
        "ready_measured_s": worker.ready_measured,
        "operator_hwm_mib": measure.status_kib(operator.pid, "VmHWM") / MIB,
        "operator_rss_mib": measure.status_kib(operator.pid, "VmRSS") / MIB,
        "status_writes": requests["PATCH releases/status"],
        "requests": dict(Counter({k: v for k, v in requests.items() if v > 0}).most_common(8)),
        "latency_ms": {k: latency[k] for k in ("PATCH releases/status", "POST events") if k in latency},
        "profile": str(profile) if profile else None,
    }


def verdict(value: float, limit: float) -> str:
    """'met' or 'MISSED' for value <= limit (pure)."""
    return "met" if value <= limit else "MISSED"


def lab_lines(row: dict[str, Any]) -> list[str]:
    """What the lab and a host cost, as text lines (pure)."""
    lab, worker = row["lab"], row["with_worker"]
    steps = ", ".join(f"{k} {v:.2f}" for k, v in lab["steps_s"].items())
    raised = ", ".join(f"{k}={v}" for k, v in lab["raised_limits"].items()) or "none"
    v1 = row["v1"]
    return [
        f"lab: {row['releases'] * row['hosts']} hosts started in {lab['start_s']:.2f} s ({steps}); "
        f"limits raised: {raised}",
        f"per host, bare (holder + sshd): {lab['processes_per_host']:.1f} processes, "
        f"{lab['pss_mib_per_host']:.2f} MiB PSS, {lab['mem_available_mib_per_host']:.2f} MiB of MemAvailable "
        "(kernel objects included)",
        f"per host, with its worker and the operator's SSH connection: {worker['processes_per_host']:.1f} "
        f"processes, {worker['pss_mib_per_host']:.2f} MiB PSS",
        f"v1 (first deploy, every Release at once): {v1['wall_s']:.1f} s, operator CPU {v1['operator_cpu_s']:.1f} s",
    ]


def target_rows(row: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, verdict) rows of one scenario's v2 rollout (pure)."""
    v2, slots = row["v2"], row["slots"]
    walls = [v2["walls"][n] for n in sorted(v2["walls"])]
    waves = [w / f["waves"] for w, f in zip(walls, row["floors"], strict=True)]
    sliding = [w / f["sliding"] for w, f in zip(walls, row["floors"], strict=True)]
    restarted = max(1, v2["hosts_restarted"])
    cpu_ms = 1000 * v2["operator_cpu_s"] / restarted
    per_minute = v2["status_writes"] / row["releases"] / (v2["span_s"] / 60)
    wave_limit = 1.05 if row["releases"] == 1 else 1.10

    def spread(values: list[float], digits: int = 3) -> str:
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        low, mid, high = min(values), statistics.median(values), max(values)
        return f"{low:.{digits}f} / {mid:.{digits}f} / {high:.{digits}f} (min/median/max)"

    return [
        ("wall s (patch -> Ready seen)", spread(walls, 1), "", ""),
        (f"floor s, waves: ceil({row['hosts']}/{slots}) x (slowest drain + S={args.ready:g})",
         spread([f["waves"] for f in row["floors"]], 1), "", ""),
        ("wall / wave floor", spread(waves), f"<= {wave_limit}", verdict(max(waves), wave_limit)),
        (f"floor s, sliding window of {slots}", spread([f["sliding"] for f in row["floors"]], 1), "", ""),
        ("wall / sliding floor (stricter)", spread(sliding), f"<= {wave_limit}", verdict(max(sliding), wave_limit)),
        ("hosts restarted (workers' events)", f"{v2['hosts_restarted']}", f"{row['releases'] * row['hosts']}",
         verdict(row["releases"] * row["hosts"], v2["hosts_restarted"])),
        ("most hosts down at once", f"{v2['most_down']}", f"<= {slots * row['releases']}",
         verdict(v2["most_down"], slots * row["releases"])),
        ("hosts down on average (time-weighted; a perfect window keeps it near the budget)",
         f"{v2['mean_down']:.1f}", "", ""),
        ("operator CPU s over the rollout", f"{v2['operator_cpu_s']:.1f}", "", ""),
        ("operator CPU ms per host restarted", f"{cpu_ms:.1f}", "<= 50", verdict(cpu_ms, 50)),
        ("SSH opened per host restarted: sessions (exec) / streams (tcp) / connects",
         " / ".join(f"{v2['ssh_opened'].get(k, 0) / restarted:.1f}" for k in ("exec", "tcp", "connect")), "", ""),
        ("operator peak RSS MiB (VmHWM)", f"{v2['operator_hwm_mib']:.0f}", "<= 200",
         verdict(v2["operator_hwm_mib"], 200)),
        ("status writes (API server, PATCH releases/status)", f"{v2['status_writes']}", "", ""),
        ("status writes / min / Release", f"{per_minute:.1f}", "<= 60", verdict(per_minute, 60)),
        ("status writes per host restarted (does not fall when the rollout is slow)",
         f"{v2['status_writes'] / restarted:.2f}", "", ""),
        ("machine load average (1 min) at the patch / at the end", "{:.1f} / {:.1f}".format(*v2["load_average"]),
         "", ""),
        ("span s (first patch -> last Ready seen)", f"{v2['span_s']:.1f}", "", ""),
        ("measured drain / ready s per host (mean)", f"{v2['drain_measured_s']:.2f} / {v2['ready_measured_s']:.2f}",
         f"~{sum(args.drain_range) / 2:g} / {args.ready:g}", ""),
    ]  # fmt: skip


def report(row: dict[str, Any], args: argparse.Namespace) -> None:
    """Print one scenario's figures as text and a Markdown table (writes stdout)."""
    low, high = args.drain_range
    print(f"\n## {row['scenario']}, maxUnavailable {args.budget} ({row['slots']} host(s) of each Release at once)")
    print(f"drains uniform in [{low:g}, {high:g}] s per host (seed {args.seed}, slowest {row['slowest_drain']:.2f}), "
          f"ready S={args.ready:g} s, exec readiness every {args.probe_period:g} s")  # fmt: skip
    for line in lab_lines(row):
        print(line)
    print("\n| figure | value | target | verdict |\n|---|---|---|---|")
    for figure, value, target, met in target_rows(row, args):
        print(f"| {figure} | {value} | {target} | {met} |")
    print("\nAPI requests over the rollout (all clients, API server's counter): "
          + ", ".join(f"{k} {v}" for k, v in row["v2"]["requests"].items()))  # fmt: skip
    print("mean time the API server took to serve (its request duration metric): "
          + ", ".join(f"{k} {v:.0f} ms" for k, v in row["v2"].get("latency_ms", {}).items()))  # fmt: skip
    if row["v2"]["profile"]:
        print_profile(Path(row["v2"]["profile"]))
    sys.stdout.flush()


def print_profile(raw: Path) -> None:
    """The operator's py-spy profile over the rollout: top inclusive and own functions (reads the file)."""
    if not raw.exists():
        print(f"(no profile written at {raw})")
        return
    print(f"\noperator profile ({raw}), % of samples, inclusive (own):")
    for function, inclusive, own in measure.profile_summary(raw, top=30):
        print(f"  {inclusive:5.1f} ({own:4.1f})  {function}")
    print("own time, top:")
    for function, own in measure.own_summary(raw):
        print(f"  {own:5.1f}  {function}")


def main() -> None:
    """Run each scenario and print its figures (starts everything, as root)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Scenario.parse, nargs="+", default=[Scenario(1, 200)],
                        help="RELEASESxHOSTS, e.g. 1x500 50x10")  # fmt: skip
    parser.add_argument("--budget", default="10%", help="maxUnavailable of every Release")
    parser.add_argument("--drain-range", type=float, nargs=2, default=[3.0, 6.0], metavar=("LOW", "HIGH"))
    parser.add_argument("--ready", type=float, default=1.0, help="seconds a worker takes to become ready (S)")
    parser.add_argument("--probe-period", type=float, default=0.25, help="readiness periodSeconds")
    parser.add_argument("--seed", type=int, default=500)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between two reads of the Releases")
    parser.add_argument("--timeout", type=float, default=900, help="seconds each rollout may take")
    parser.add_argument("--profile", type=Path, help="record the operator with py-spy into this directory")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", type=Path, help="copy the workers' events and the operator's log here")
    args = parser.parse_args()
    rows = []
    for scenario in args.scenario:
        rows.append(run_scenario(scenario, args))
        report(rows[-1], args)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
