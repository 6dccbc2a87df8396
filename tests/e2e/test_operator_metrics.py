"""The operator's Prometheus endpoint (--metrics-port) and kopf's liveness endpoint (--liveness)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kapistrano.lab import HostLab
from prometheus_client.parser import text_string_to_metric_families

from .kube import Kube
from .test_operator import Scene, running_scene, wait_until
from .test_operator_drift import DRIFT_SECONDS, kill_worker, starts_on

pytestmark = pytest.mark.e2e


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fetch(url: str) -> tuple[int, str] | None:
    """(status, body) of a GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels, 0 when absent."""
    return found.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Endpoints:
    """The Scene and where its operator serves metrics and liveness."""

    scene: Scene
    metrics: str
    liveness: str


@pytest.fixture
def served(kube: Kube, lab: HostLab) -> Iterator[Endpoints]:
    """A Scene whose operator serves /metrics and /healthz on free ports."""
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    with running_scene(kube, lab, ["--metrics-port", str(port), "--liveness", liveness]) as scene:
        yield Endpoints(scene, metrics, liveness)


def test_metrics_count_rollouts_and_restarts_and_show_hosts_ready(served: Endpoints) -> None:
    scene = served.scene
    wait_until(lambda: fetch(served.metrics), "the metrics endpoint", 30)
    scene.secret()
    scene.apply("v1", strategy={"maxUnavailable": 1})
    scene.wait_ready(timeout=30)
    scene.patch({"version": "v2", "source": {"path": scene.app.version("v2")}})
    scene.wait_ready(timeout=30)

    ours = {"namespace": scene.ns, "release": "app"}

    def rolled_out() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        answer = fetch(served.metrics)
        if answer is None or answer[0] != 200:
            return None
        found = samples(answer[1])
        done = value(found, "kapistrano_rollouts_finished_total", **ours) >= 2  # v2's is counted after its status
        ready = value(found, "kapistrano_hosts", phase="Ready", **ours) == 3
        return found if done and ready else None

    found = wait_until(rolled_out, "the rollout in the metrics", 30)
    assert value(found, "kapistrano_rollouts_started_total", **ours) == 2, "v1 and v2, each counted once"
    assert value(found, "kapistrano_rollouts_finished_total", **ours) == 2
    assert value(found, "kapistrano_host_restart_duration_seconds_count", **ours) >= 3
    assert value(found, "kapistrano_host_restart_duration_seconds_sum", **ours) > 0
    assert value(found, "kapistrano_release_condition", type="Ready", status="True", **ours) == 1
    assert value(found, "kapistrano_hosts", phase="Ready", **ours) == 3
    assert value(found, "kapistrano_hosts", phase="Failed", **ours) == 0

    health = wait_until(lambda: fetch(served.liveness), "the liveness endpoint", 30)
    assert health[0] == 200, health


def test_a_healed_drift_counts_no_rollout(served: Endpoints) -> None:
    scene = served.scene
    wait_until(lambda: fetch(served.metrics), "the metrics endpoint", 30)
    scene.secret()
    scene.apply("v1", driftCheckIntervalSeconds=DRIFT_SECONDS)
    scene.wait_ready(timeout=30)
    ours = {"namespace": scene.ns, "release": "app"}

    def counted(name: str, **labels: str) -> float | None:
        answer = fetch(served.metrics)
        return value(samples(answer[1]), name, **ours, **labels) if answer is not None and answer[0] == 200 else None

    def runs_ready() -> float:
        return counted("kapistrano_runs_total", result="Ready") or 0.0

    wait_until(lambda: runs_ready() >= 1 or None, "the first rollout's run", 30)
    host = scene.lab.hosts[1].name
    before = len(starts_on(scene, host))
    kill_worker(scene, 1)
    wait_until(lambda: len(starts_on(scene, host)) > before, f"the drift check healing {host}", timeout=30)
    scene.wait_ready()
    healed = runs_ready()
    wait_until(lambda: runs_ready() > healed or None, "one more drift check after the heal", timeout=30)
    assert counted("kapistrano_rollouts_started_total") == 1, "a drift check is not a rollout"
    assert counted("kapistrano_rollouts_finished_total") == 1
