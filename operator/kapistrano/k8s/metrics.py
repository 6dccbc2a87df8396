"""Prometheus metrics of the operator, served on --metrics-port (0 disables the endpoint)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from kapistrano.api.status import HostPhase, ReleaseStatus
from kapistrano.engine.events import EventSink, HostEvent

ROLLOUTS_STARTED = Counter("kapistrano_rollouts_started_total", "Rollout runs started.", ["namespace", "release"])
ROLLOUTS_FINISHED = Counter(
    "kapistrano_rollouts_finished_total", "Rollout runs that ended with every host ready.", ["namespace", "release"]
)
ROLLOUTS_FAILED = Counter(
    "kapistrano_rollouts_failed_total",
    "Rollout runs that ended stalled or past their deadline.",
    ["namespace", "release", "reason"],
)
HOST_RESTART_SECONDS = Histogram(
    "kapistrano_host_restart_duration_seconds",
    "From a host's restart starting to the host being ready again.",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
SSH_ERRORS = Counter("kapistrano_ssh_errors_total", "Host errors by kind (Unreachable, AuthFailed, ...).", ["kind"])
INSECURE_HOST_KEYS = Gauge(
    "kapistrano_insecure_host_keys",
    "1 while a Release skips host key checks (spec.ssh.insecureSkipHostKeyCheck), else 0.",
    ["namespace", "release"],
)
HOSTS_BY_PHASE = Gauge("kapistrano_hosts", "Hosts of a Release by phase.", ["namespace", "release", "phase"])


def serve(port: int) -> None:
    """Start the /metrics endpoint on `port` unless it is 0 (starts a thread)."""
    if port:
        start_http_server(port)


def record_hosts(namespace: str, release: str, status: ReleaseStatus) -> None:
    """Set the hosts-by-phase gauge from a status (changes the gauge)."""
    tally = Tally(str(h.phase) for h in status.hosts)
    for phase in HostPhase:
        HOSTS_BY_PHASE.labels(namespace, release, phase.value).set(tally.get(phase.value, 0))
    if status.host_keys_verified is not None:
        INSECURE_HOST_KEYS.labels(namespace, release).set(0 if status.host_keys_verified else 1)


def forget(namespace: str, release: str) -> None:
    """Drop the gauges of a deleted Release (changes the gauge)."""
    with contextlib.suppress(KeyError):
        INSECURE_HOST_KEYS.remove(namespace, release)
    for phase in HostPhase:
        try:
            HOSTS_BY_PHASE.remove(namespace, release, phase.value)
        except KeyError:
            continue


def metrics_sink() -> EventSink:
    """A HostEvent sink that times host restarts and counts host errors (changes metrics)."""
    restarting: dict[str, float] = {}

    def emit(event: HostEvent) -> None:
        if event.warning and event.reason:
            SSH_ERRORS.labels(event.reason).inc()
        if event.phase == HostPhase.RESTARTING:
            restarting.setdefault(event.host, time.monotonic())
        elif event.phase == HostPhase.READY and event.host in restarting:
            HOST_RESTART_SECONDS.observe(time.monotonic() - restarting.pop(event.host))
        elif event.phase in (HostPhase.FAILED, HostPhase.ROLLED_BACK, HostPhase.UNREACHABLE):
            restarting.pop(event.host, None)

    return emit
