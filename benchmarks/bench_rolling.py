#!/usr/bin/env python3
"""Rolling restart wall time against the floor N*(D+S), on real local SSH test hosts.

Each host runs one sample worker that needs D seconds to exit after TERM and S seconds to become
ready. A perfect one-host-at-a-time rollout takes N*(D+S); everything above that is kapistrano's
overhead (connections, exit detection, readiness polling, status writes).

With --instances, each host runs that many workers, each with its own drain drawn uniformly from
--drain-range (seeded, printed), and the floor of StopFirst (instances of a host together) is the
sum over hosts of (slowest drain + S); StartFirst is measured against N*S + the slowest drain, and
its ready instances are counted every 50 ms from the workers' events (see benchmarks/multi.py).

    python -m benchmarks.bench_rolling [--hosts 3 10] [--drain 2] [--boot 1]   (as root)
    python -m benchmarks.bench_rolling --hosts 3 10 --instances 2 4 --drain-range 3.5 6 --boot 1 --seed 11
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from kapistrano.api.release import parse_release
from kapistrano.api.status import HostPhase
from kapistrano.engine.events import HostEvent
from kapistrano.engine.rollout import Desired, Result, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore
from kapistrano.lab import HostLab, sample_worker
from kapistrano.lab.sample_app import lab_release, worker_service

from benchmarks.multi import (
    SHIM,
    Drains,
    capacity,
    multi_service,
    phases,
    started_lab,
    wait_for_exits,
    write_drains,
)


def make_versions(root: Path, versions: list[str], *, shim: bool = False) -> dict[str, str]:
    """A source directory per version of the sample worker, behind multi.SHIM if `shim` (writes files)."""
    out = {}
    for version in versions:
        path = root / version
        path.mkdir(parents=True)
        shutil.copy(sample_worker.__file__, path / ("sample_worker.py" if shim else "worker.py"))
        if shim:
            (path / "worker.py").write_text(SHIM)
        (path / "VERSION").write_text(version + "\n")
        out[version] = str(path)
    return out


def manifest(
    lab: HostLab, source: str, version: str, *, drain: float, boot: float, budget: int | str
) -> dict[str, Any]:
    """The benchmark Release (pure)."""
    service = worker_service(
        drain=drain, boot=boot, stop_timeout=120, readiness={"periodSeconds": 0.05, "failureThreshold": 2000}
    )
    return lab_release(
        lab,
        "bench",
        services=[service],
        application="bench",
        version=version,
        source={"path": source},
        strategy={"maxUnavailable": budget},
    )


async def roll(lab: HostLab, doc: dict[str, Any], state: Path) -> tuple[float, int, float]:
    """Run one rollout to the end; returns (seconds, status saves, seconds from first publish to last ready)."""
    spec = parse_release(doc).spec

    async def desired() -> Desired:
        return Desired(spec)

    marks: list[float] = []

    def mark(event: HostEvent) -> None:
        if event.phase in (HostPhase.PUBLISHING, HostPhase.READY):
            marks.append(time.monotonic())

    rollout = Rollout(
        source=desired,
        drivers=driver_factory(lab.client_key, lab.known_hosts),
        store=FileStatusStore(state),
        owner="bench",
        emit=mark,
    )
    started = time.monotonic()
    try:
        outcome = await rollout.run()
    finally:
        await rollout.close()
    if outcome.result != Result.READY:
        raise SystemExit(f"rollout did not finish: {outcome.result}: {outcome.message}")
    assert rollout.recorder is not None
    return time.monotonic() - started, rollout.recorder.saves, marks[-1] - marks[0]


def bench(hosts: int, drain: float, boot: float) -> dict[str, float]:
    """Deploy v1 everywhere at once, then time the rolling v2 (starts test hosts)."""
    root = Path(tempfile.mkdtemp(prefix="kapbench-"))
    try:
        sources = make_versions(root, ["v1", "v2"])
        with HostLab(hosts) as lab:
            first = manifest(lab, sources["v1"], "v1", drain=drain, boot=boot, budget="100%")
            asyncio.run(roll(lab, first, root / "state.json"))
            second = manifest(lab, sources["v2"], "v2", drain=drain, boot=boot, budget=1)
            wall, saves, rolling = asyncio.run(roll(lab, second, root / "state.json"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    floor = hosts * (drain + boot)
    return {
        "hosts": hosts,
        "wall": wall,
        "floor": floor,
        "ratio": wall / floor,
        "per_host_overhead": (wall - floor) / hosts,
        "step_overhead": (rolling - floor) / hosts,
        "fixed": wall - rolling,
        "saves": saves,
    }


def host_count(text: str) -> int | str:
    """A host count option: an int or a percent such as "100%" (pure)."""
    return text if text.endswith("%") else int(text)


def multi_bench(
    hosts: int, instances: int, *, drains: tuple[float, float], boot: float, seed: int, replace: str, surge: int | str
) -> dict[str, Any]:
    """v1 everywhere at once, then the timed rolling v2 with several instances per host (starts test hosts)."""
    root = Path(tempfile.mkdtemp(prefix="kapbench-"))
    events = root / "events.jsonl"
    try:
        sources = make_versions(root, ["v1", "v2"], shim=True)
        with started_lab(hosts) as lab:
            table = Drains.draw(seed, [h.name for h in lab.hosts], instances, *drains)
            write_drains(sources, table)
            docs = {}
            for version, rep, strategy in (
                ("v1", "StopFirst", {"maxUnavailable": "100%"}),
                ("v2", replace, {"maxUnavailable": 1, "maxSurge": surge}),
            ):
                service = multi_service(instances=instances, ready=boot, replace=rep, events=events)
                docs[version] = lab_release(
                    lab, "bench", services=[service], application="bench", version=version,
                    source={"path": sources[version]}, strategy=strategy,
                )  # fmt: skip
            asyncio.run(roll(lab, docs["v1"], root / "state.json"))
            wall, saves, rolling = asyncio.run(roll(lab, docs["v2"], root / "state.json"))
            wait_for_exits(events)
            cap = capacity(events, [h.name for h in lab.hosts], instances)
            steps = phases(events)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    floor = table.stop_first_floor(boot) if replace == "StopFirst" else table.start_first_floor(boot)
    return {
        "drains": table,
        "wall": wall,
        "rolling": rolling,
        "floor": floor,
        "saves": saves,
        "capacity": cap,
        "phases": steps,
    }


def main_multi(args: argparse.Namespace) -> None:
    """Print one line per (hosts, instances, replace) with random drains."""
    low, high = args.drain_range
    print(f"drains uniform in [{low:g}, {high:g}] s per instance, seed {args.seed}, ready S={args.boot}s, "
          f"maxUnavailable 1, maxSurge {args.max_surge}, instances restarted together (Parallel)")  # fmt: skip
    print("floor: StopFirst sum over hosts of (slowest drain + S); StartFirst hosts*S + slowest drain")
    print("span: first v1 TERM or v2 start to the last v1 exit or v2 ready; below: 50 ms samples under capacity")
    heads = ("replace", "hosts", "inst", "wall s", "span s", "floor s", "wall/fl", "span/fl", "below", "samples",
             "min ready", "full", "saves")  # fmt: skip
    widths = (9, 5, 4, 7, 7, 7, 7, 7, 5, 7, 9, 4, 5)
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)), flush=True)
    for n in args.hosts:
        for k in args.instances:
            for replace in args.replace:
                seed = args.seed + n * 100 + k
                r = multi_bench(
                    n, k, drains=(low, high), boot=args.boot, seed=seed, replace=replace, surge=args.max_surge
                )
                if replace == args.replace[0]:
                    print(f"seed {r['drains'].seed}, drains:\n{r['drains'].describe()}")
                c = r["capacity"]
                cells = (replace, n, k, f"{r['wall']:.2f}", f"{c.span:.2f}", f"{r['floor']:.2f}",
                         f"{r['wall'] / r['floor']:.3f}", f"{c.span / r['floor']:.3f}", c.below, c.samples,
                         c.exact_lowest, c.full, r["saves"])  # fmt: skip
                print(" ".join(f"{v!s:>{w}}" for v, w in zip(cells, widths, strict=True)))
                p = r["phases"]
                print(f"    per host: boot {p.boot:.3f}, ready->stop {p.to_stop:.3f}, drain {p.drain:.3f}, "
                      f"exit->start {p.to_start:.3f} s", flush=True)  # fmt: skip


def main() -> None:
    """Print one line per host count."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--boot", type=float, default=1.0)
    parser.add_argument("--instances", type=int, nargs="*", default=[], help="workers per host (random drains)")
    parser.add_argument("--drain-range", type=float, nargs=2, default=[3.5, 6.0], metavar=("LOW", "HIGH"))
    parser.add_argument("--seed", type=int, default=11, help="drains of N hosts x K instances use seed + 100N + K")
    parser.add_argument(
        "--replace", nargs="+", choices=["StopFirst", "StartFirst"], default=["StopFirst", "StartFirst"]
    )
    parser.add_argument("--max-surge", type=host_count, default=1)
    args = parser.parse_args()
    if args.instances:
        main_multi(args)
        return
    print(f"drain D={args.drain}s, ready S={args.boot}s, maxUnavailable 1, one worker per host")
    print(
        "wall: whole apply; fixed: connect, update phase and final checks; per-host step: publish to ready, minus D+S"
    )
    heads = ("hosts", "wall s", "floor s", "ratio", "overhead/host s", "fixed s", "per-host step s", "saves")
    widths = (5, 8, 8, 7, 16, 8, 16, 6)
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)))
    for n in args.hosts:
        r = bench(n, args.drain, args.boot)
        cells = f"{r['wall']:>8.2f} {r['floor']:>8.2f} {r['ratio']:>7.3f} {r['per_host_overhead']:>16.3f}"
        print(f"{n:>5} {cells} {r['fixed']:>8.2f} {r['step_overhead']:>16.3f} {r['saves']:>6}")


if __name__ == "__main__":
    main()
