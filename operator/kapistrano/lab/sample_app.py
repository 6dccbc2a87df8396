"""The Release of the sample worker on lab hosts, shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kapistrano.api.release import API_VERSION, KIND
from kapistrano.lab.hosts import HostLab

#: The sample worker's /health port (plus its instance number), on each host's loopback.
HEALTH_PORT = 9100


def worker_service(
    *,
    drain: float,
    boot: float,
    events: Path | None = None,
    instances: int = 1,
    stop_timeout: int = 60,
    readiness: dict[str, Any] | None = None,
    start_first: bool = False,
) -> dict[str, Any]:
    """The `worker` service: a pidfile-managed sample worker with an httpGet readiness probe (pure).

    `start_first` (needs `events`) starts successors beside the old workers: each serves health on a
    free port and is judged ready by the "ready" line it logged.
    """
    log = f" EVENTS_LOG={events}" if events is not None else ""
    port = " HEALTH_PORT=0" if start_first else ""
    start = f"exec env DRAIN_SECONDS={drain} READY_SECONDS={boot}{log}{port} python3 worker.py"
    probe: dict[str, Any] = {"httpGet": {"path": "/health", "port": HEALTH_PORT}}
    if start_first and events is not None:
        logged = """'"event": "ready", "pid": '"$KAPISTRANO_PID"','"""
        probe = {"exec": {"command": f"grep -qF {logged} {events}"}}
    pidfile = {"path": "tmp/pids/worker.{index}.pid", "start": start, "stopTimeoutSeconds": stop_timeout}
    return {
        "name": "worker",
        "manager": "pidfile",
        "instances": instances,
        "pidfile": pidfile | ({"replace": "StartFirst"} if start_first else {}),
        "readiness": probe | {"periodSeconds": 0.1, "failureThreshold": 50} | (readiness or {}),
    }


def lab_release(
    lab: HostLab, name: str, *, namespace: str | None = None, services: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    """A Release document for every host of a lab, connecting as root; `spec` adds or overrides fields (pure)."""
    metadata: dict[str, Any] = {"name": name} | ({"namespace": namespace} if namespace else {})
    body = {
        "linkedDirs": ["log", "tmp/pids"],
        "hosts": lab.release_yaml_hosts(),
        "ssh": {"user": "root"},
        "services": services,
        **spec,
    }
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": body}
