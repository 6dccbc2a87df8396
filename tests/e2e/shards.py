"""Sharded and peered operator replicas for the e2e tests and the takeover benchmark.

Each replica is `kapistrano run` as the operator's ServiceAccount user, in its own UTS namespace
with its own host name, as a pod has: its host-lock instance then names another machine, so a
standby can take its locks over only the way it would in a cluster (the peering says it is gone),
never because its pid is seen dead on this machine.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kapistrano.k8s.sharding import SHARD_LABEL
from kapistrano.lab import HostLab

from ..integration.appkit import App
from ..integration.test_engine_kills import own_readiness
from .kube import REPO, Kube
from .test_operator import Operator, Scene, wait_until

PEERING_CRD = REPO / "manifests" / "sharded" / "peering-crd.yaml"
#: Run the rest of the command with the host name given first, in a new UTS namespace.
WITH_HOSTNAME = ["unshare", "--uts", "sh", "-c", 'hostname "$1" && shift && exec "$@"', "sh"]


class Replica(Operator):
    """One operator replica: `kapistrano run -A --shards M --ordinal I [--peering NAME]` on its own host name."""

    def __init__(self, kube: Kube, workdir: Path, hostname: str, args: list[str]) -> None:
        super().__init__(kube, workdir, args)
        self.hostname = hostname
        self.log = workdir / f"{hostname}.log"

    def start(self) -> Replica:
        """Start the replica (starts a process)."""
        command = [*WITH_HOSTNAME, self.hostname, sys.executable, "-m", "kapistrano.cli.main", "run", "-A"]
        command += ["--metrics-port", "0", *self.extra]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=self.kube.operator_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pids.append(self.process.pid)
        return self


@contextlib.contextmanager
def peering(kube: Kube, shards: int) -> Iterator[str]:
    """A fresh peering base name with one ClusterKopfPeering per shard; deleted afterwards (network I/O)."""
    kube.kubectl("apply", "--server-side", "-f", str(PEERING_CRD))
    kube.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    base = f"kap{uuid.uuid4().hex[:8]}"
    names = [f"{base}-shard-{n}" for n in range(shards)]
    objects = [{"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": n}} for n in names]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    try:
        yield base
    finally:
        kube.kubectl("delete", "clusterkopfpeerings.kopf.dev", *names, "--ignore-not-found", check=False)


def replica(kube: Kube, workdir: Path, ordinal: int, shards: int, base: str | None) -> Replica:
    """The replica of StatefulSet ordinal `ordinal`, peering under `base` when given (not started)."""
    args = ["--shards", str(shards), "--ordinal", str(ordinal)]
    if base is not None:
        args += ["--peering", base]
    return Replica(kube, workdir, f"kapistrano-{ordinal}", args)


def peers_of(kube: Kube, name: str) -> dict[str, Any]:
    """The keep-alive entries of a ClusterKopfPeering (runs kubectl)."""
    out = kube.kubectl("get", "clusterkopfpeerings.kopf.dev", name, "-o", "json").stdout
    found: dict[str, Any] = json.loads(out).get("status") or {}
    return found


@contextlib.contextmanager
def sharded_scene(
    kube: Kube, lab: HostLab, *replicas: tuple[int, str | None], echo: bool = True
) -> Iterator[tuple[Scene, list[Replica]]]:
    """A Scene with replicas (ordinal, peering base) of a 2-shard operator, not started; all stopped afterwards.

    With `echo`, the end of each replica's log is printed once it stopped (what pytest shows of a failure).
    """
    app = App(lab, drain=1.5, boot=0.2)
    workdir = Path(tempfile.mkdtemp(prefix="kapshard-"))
    made = [replica(kube, workdir, ordinal, 2, base) for ordinal, base in replicas]
    scene = Scene(kube, lab, app, made[0])
    try:
        yield scene, made
    finally:
        for one in made:
            one.stop()
            if echo:
                sys.stdout.write(f"--- {one.hostname}\n{one.output()[-3000:]}")
        app.close()
        shutil.rmtree(workdir, ignore_errors=True)


def apply_in_shard(scene: Scene, version: str, shard: int, **spec: Any) -> None:
    """kubectl apply of the app's Release labelled for `shard` (runs kubectl)."""
    doc = scene.manifest(version, **spec)
    doc["metadata"]["labels"] = {SHARD_LABEL: str(shard)}
    scene.kube.apply(doc, scene.ns)


def ready_with_standby(scene: Scene, active: Replica, standby: Replica, peering_name: str) -> dict[str, Any]:
    """v1 rolled out by `active` with `standby` standing by; returns the spec used (starts both, network I/O)."""
    scene.secret()
    spec: dict[str, Any] = {"strategy": {"maxUnavailable": 1}, "instances": 2, "readiness": own_readiness(scene.app)}
    active.start()
    apply_in_shard(scene, "v1", 0, **spec)
    scene.wait_ready(timeout=180)
    standby.start()
    wait_standing_by(standby, peering_name)
    return spec


def wait_standing_by(standby: Replica, peering_name: str, timeout: float = 60) -> None:
    """Wait until a replica keeps itself alive in its shard's peering (runs kubectl).

    Peering being mandatory, kopf starts a replica paused and resumes it only when no peer of higher
    priority is alive: one whose keep-alive is there while the active replica's is, stands by.
    """
    prefix = f"{standby.hostname}/"
    wait_until(
        lambda: any(peer.startswith(prefix) for peer in peers_of(standby.kube, peering_name)),
        f"{standby.hostname} standing by",
        timeout,
    )


def first_start_after(events: list[dict[str, Any]], killed: float) -> float | None:
    """When a worker was first started after `killed`, by the worker log (pure).

    The replica is killed while a host drains its workers, before it could start their successors:
    starting them is the first host action of whoever resumes the rollout.
    """
    return next((float(e["time"]) for e in events if e["event"] == "start" and e["time"] > killed), None)


def kill_mid_restart(active: Replica, events: Any, timeout: float = 120) -> float:
    """SIGKILL `active` as soon as a worker starts draining (a host mid-restart); returns when (stops a process)."""
    before = len(events())
    wait_until(
        lambda: any(e["event"] == "draining" for e in events()[before:]), "a host restarting", timeout, period=0.02
    )
    killed = time.time()
    active.kill()
    return killed
