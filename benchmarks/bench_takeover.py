#!/usr/bin/env python3
"""How long a shard's standby replica takes to resume a rollout after its active replica is SIGKILLed.

A real kube-apiserver (tests/kube), three lab hosts, two operator replicas of shard 0 of 2 peering
through a ClusterKopfPeering (kopf peering, keep-alive lifetime 10 s), each with its own host name
and running as the ServiceAccount user of manifests/. v1 is rolled to Ready by the active replica;
once the standby has paused, v2 is applied and the active replica is SIGKILLed as soon as a host's
workers start draining. Reported: kill to the standby's first host action (the first worker it
starts), and kill to Ready. Each round runs on a fresh lab and namespace.

    .venv/bin/python -m benchmarks.bench_takeover [--rounds 5]   (as root, from the repository root)
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def one_round(kube: Kube) -> tuple[float, float]:
    """One kill mid-rollout; (kill to first host action, kill to Ready) in seconds (starts and stops processes)."""
    lab = HostLab(3).start()
    try:
        with peering(kube, 2) as base, sharded_scene(kube, lab, (0, base), (2, base)) as (scene, replicas):
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
            return first - killed, ready - killed
    finally:
        lab.close()


def main() -> None:
    """Run the rounds and print one line each, then the median and the worst (starts processes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = []
    with local_server() as server, kube_for(server.kubeconfig, server.operator_kubeconfig, server) as kube:
        for number in range(1, args.rounds + 1):
            action, ready = one_round(kube)
            results.append((action, ready))
            print(f"round {number}: kill -> first host action {action:.2f} s, kill -> Ready {ready:.2f} s", flush=True)
    actions = [a for a, _ in results]
    readies = [r for _, r in results]
    print(f"median: first host action {statistics.median(actions):.2f} s, Ready {statistics.median(readies):.2f} s")
    print(f"worst:  first host action {max(actions):.2f} s, Ready {max(readies):.2f} s")


if __name__ == "__main__":
    main()
