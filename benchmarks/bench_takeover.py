#!/usr/bin/env python3
"""How long a shard's standby replica takes to resume a rollout after its active replica is SIGKILLed.

A real kube-apiserver (tests/kube), three lab hosts, two operator replicas of shard 0 of 2 peering
through a ClusterKopfPeering (kopf peering, keep-alive lifetime 10 s), each with its own host name
and running as the ServiceAccount user of manifests/. v1 is rolled to Ready by the active replica;
once the standby has paused, v2 is applied and the active replica is SIGKILLed as soon as a host's
workers start draining. Reported: kill to the standby's resuming (kopf peering saw the active
replica's keep-alive expire), to its first host action (the first worker it starts) and to Ready.
Each round runs on a fresh lab and namespace.

    .venv/bin/python -m benchmarks.bench_takeover [--rounds 5]   (as root, from the repository root)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from datetime import datetime

from kapistrano.lab import HostLab

from tests.e2e.kube import Kube, kube_for, local_server
from tests.e2e.shards import (
    apply_in_shard,
    first_start_after,
    kill_mid_restart,
    peering,
    ready_with_standby,
    sharded_scene,
)

RESUMED = "Resuming operations after the pause"


def resumed_at(log: str) -> float:
    """When kopf resumed a standby, from its log's first resume line (local time stamps); nan if never (pure)."""
    line = next((line for line in log.splitlines() if RESUMED in line), None)
    if line is None:
        return math.nan
    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def one_round(kube: Kube) -> tuple[float, float, float]:
    """One kill mid-rollout; seconds from the kill to: resume, first host action, Ready (starts and stops processes)."""
    lab = HostLab(3).start()
    try:
        with peering(kube, 2) as base, sharded_scene(kube, lab, (0, base), (2, base), echo=False) as (scene, replicas):
            active, standby = replicas
            spec = ready_with_standby(scene, active, standby, f"{base}-shard-0")
            before = len(scene.app.read_events())
            apply_in_shard(scene, "v2", 0, **spec)
            killed = kill_mid_restart(active, scene.app.read_events)
            scene.wait_ready(timeout=300)
            ready = time.time()
            first = first_start_after(scene.app.read_events()[before:], killed)
            if first is None:
                raise SystemExit("the standby never started a worker")
            return resumed_at(standby.output()) - killed, first - killed, ready - killed
    finally:
        lab.close()


def main() -> None:
    """Run the rounds and print one line each, then the median and the worst (starts processes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = []
    with local_server() as server:
        for number in range(1, args.rounds + 1):
            with kube_for(server.kubeconfig, server.operator_kubeconfig, server) as kube:  # a round's Releases go
                results.append(one_round(kube))
            print(f"round {number}: {line(results[-1])}", flush=True)
    print(f"median: {line(tuple(statistics.median(r[i] for r in results) for i in range(3)))}")
    print(f"worst:  {line(tuple(max(r[i] for r in results) for i in range(3)))}")


def line(times: tuple[float, ...]) -> str:
    """One result line: kill to resume, to first host action, to Ready (pure)."""
    resume, action, ready = times
    return f"kill -> standby resumed {resume:.2f} s, -> first host action {action:.2f} s, -> Ready {ready:.2f} s"


if __name__ == "__main__":
    main()
