#!/usr/bin/env python3
"""Rolling restart wall time against the floor N*(D+S), on real local SSH test hosts.

Each host runs one sample worker that needs D seconds to exit after TERM and S seconds to become
ready. A perfect one-host-at-a-time rollout takes N*(D+S); everything above that is kapistrano's
overhead (connections, exit detection, readiness polling, status writes).

    python benchmarks/bench_rolling.py [--hosts 3 10] [--drain 2] [--boot 1]   (as root)
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


def make_versions(root: Path, versions: list[str]) -> dict[str, str]:
    """A source directory per version of the sample worker (writes files)."""
    out = {}
    for version in versions:
        path = root / version
        path.mkdir(parents=True)
        shutil.copy(sample_worker.__file__, path / "worker.py")
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


def main() -> None:
    """Print one line per host count."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--boot", type=float, default=1.0)
    args = parser.parse_args()
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
