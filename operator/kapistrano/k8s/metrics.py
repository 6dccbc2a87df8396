"""Prometheus metrics of the operator, served on --metrics-port (0 disables the endpoint).

Labels: every series carries `namespace` and `release`; per-host series (`host`) are gauges and
counters only, one series per host. The restart-duration histogram has no `host` label: with 1000
hosts a Release would export 1000 x 12 bucket series, so it is per Release; per-host restarts are
counted by kapistrano_host_restarts_total instead.
"""

from __future__ import annotations

import platform
import time
from collections import Counter as Tally
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from kapistrano import __version__
from kapistrano.api.status import ConditionStatus, HostPhase, Reason, ReleaseStatus
from kapistrano.engine.events import EventSink, HostEvent

RELEASE_LABELS = ["namespace", "release"]

BUILD_INFO = Gauge("kapistrano_build_info", "Always 1; the operator's version.", ["version", "python"])
ROLLOUTS_STARTED = Counter(
    "kapistrano_rollouts_started_total", "Rollouts started by a new version or a restart request.", RELEASE_LABELS
)
ROLLOUTS_FINISHED = Counter(
    "kapistrano_rollouts_finished_total", "Rollouts that ended with every host ready.", RELEASE_LABELS
)
ROLLOUTS_FAILED = Counter(
    "kapistrano_rollouts_failed_total", "Rollouts that stalled or passed their deadline.", [*RELEASE_LABELS, "reason"]
)
RUNS = Counter(
    "kapistrano_runs_total",
    "Engine runs by how they ended (rollouts, retries and drift checks alike).",
    [*RELEASE_LABELS, "result"],
)
HOST_RESTART_SECONDS = Histogram(
    "kapistrano_host_restart_duration_seconds",
    "From a host's restart starting to the host being ready again.",
    RELEASE_LABELS,
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
HOST_RESTARTS = Counter("kapistrano_host_restarts_total", "Host restarts that ended ready.", [*RELEASE_LABELS, "host"])
SSH_ERRORS = Counter(
    "kapistrano_ssh_errors_total",
    "SSH connection errors (Unreachable, AuthFailed, HostKeyMismatch).",
    [*RELEASE_LABELS, "reason"],
)
INSECURE_HOST_KEYS = Gauge(
    "kapistrano_insecure_host_keys",
    "1 while a Release skips host key checks (spec.ssh.insecureSkipHostKeyCheck), else 0.",
    RELEASE_LABELS,
)
HOSTS_BY_PHASE = Gauge("kapistrano_hosts", "Hosts of a Release by phase.", [*RELEASE_LABELS, "phase"])
HOST_READY = Gauge("kapistrano_host_ready", "1 while the host's services pass readiness.", [*RELEASE_LABELS, "host"])
RELEASE_CONDITION = Gauge(
    "kapistrano_release_condition",
    "1 for a Release condition's current status, 0 for the other statuses.",
    [*RELEASE_LABELS, "type", "status"],
)

#: Host error reasons that are SSH errors (the connection, not a command or a readiness check).
SSH_ERROR_REASONS = frozenset({Reason.UNREACHABLE, Reason.AUTH_FAILED, Reason.HOST_KEY_MISMATCH})
#: Per-Release series, dropped when the Release goes.
_PER_RELEASE = (
    ROLLOUTS_STARTED,
    ROLLOUTS_FINISHED,
    ROLLOUTS_FAILED,
    RUNS,
    HOST_RESTART_SECONDS,
    HOST_RESTARTS,
    SSH_ERRORS,
)
_PER_RELEASE_GAUGES = (HOSTS_BY_PHASE, HOST_READY, RELEASE_CONDITION, INSECURE_HOST_KEYS)


def serve(port: int) -> None:
    """Set build info and start the /metrics endpoint on `port` unless it is 0 (starts a thread)."""
    BUILD_INFO.labels(__version__, platform.python_version()).set(1)
    if port:
        start_http_server(port)


def record_status(namespace: str, release: str, status: ReleaseStatus) -> None:
    """Set the per-Release gauges (hosts by phase, host readiness, conditions) from a status (changes gauges)."""
    tally = Tally(str(h.phase) for h in status.hosts)
    for phase in HostPhase:
        HOSTS_BY_PHASE.labels(namespace, release, phase.value).set(tally.get(phase.value, 0))
    for host in status.hosts:
        HOST_READY.labels(namespace, release, host.name).set(1 if host.ready else 0)
    for condition in status.conditions:
        for value in ConditionStatus:
            RELEASE_CONDITION.labels(namespace, release, condition.type, value.value).set(
                1 if condition.status == value else 0
            )
    if status.host_keys_verified is not None:
        INSECURE_HOST_KEYS.labels(namespace, release).set(0 if status.host_keys_verified else 1)


def forget(namespace: str, release: str) -> None:
    """Drop every series of a deleted Release (changes metrics)."""
    for metric in (*_PER_RELEASE, *_PER_RELEASE_GAUGES):
        for labels in [key for key in _label_sets(metric) if key[:2] == (namespace, release)]:
            metric.remove(*labels)


def _label_sets(metric: Counter | Gauge | Histogram) -> list[tuple[str, ...]]:
    """The label values of every child series of a metric (pure read)."""
    return [tuple(key) for key in metric._metrics]  # prometheus_client lists children only privately


@dataclass(frozen=True)
class RolloutKey:
    """What a rollout rolls out: a version, and the restart request it answers, if any."""

    version: str
    restart: str | None = None


def rollout_key(version: str, restart: str | None, saved: ReleaseStatus | None) -> RolloutKey | None:
    """The rollout a run would start, or None when the hosts already have it (a drift check) (pure)."""
    if saved is not None and saved.current_version == version and (restart is None or saved.restarted_at == restart):
        return None
    return RolloutKey(version, restart)


@dataclass
class RolloutLedger:
    """Which rollout of one Release was counted, so that retries and drift checks count nothing (state only)."""

    current: RolloutKey | None = None
    finished: bool = False
    failed: bool = False

    def start(self, key: RolloutKey | None) -> bool:
        """Whether a run with this key starts a rollout to count (updates the ledger)."""
        if key is None or key == self.current:
            return False
        self.current, self.finished, self.failed = key, False, False
        return True

    def finish(self) -> bool:
        """Whether a Ready outcome ends a counted rollout not yet counted as finished (updates the ledger)."""
        if self.current is None or self.finished:
            return False
        self.finished = True
        return True

    def fail(self) -> bool:
        """Whether a stalled outcome is the counted rollout's first failure (updates the ledger)."""
        if self.current is None or self.failed or self.finished:
            return False
        self.failed = True
        return True


def rollout_started(namespace: str, release: str, ledger: RolloutLedger, key: RolloutKey | None) -> bool:
    """Count a run that starts a new rollout; True when it did (changes the ledger and a counter)."""
    if not ledger.start(key):
        return False
    ROLLOUTS_STARTED.labels(namespace, release).inc()
    return True


def rollout_finished(namespace: str, release: str, ledger: RolloutLedger) -> bool:
    """Count a Ready outcome that ends the counted rollout; True when it did (changes the ledger and a counter)."""
    if not ledger.finish():
        return False
    ROLLOUTS_FINISHED.labels(namespace, release).inc()
    return True


def rollout_failed(namespace: str, release: str, ledger: RolloutLedger, reason: str) -> bool:
    """Count the counted rollout's first stall; True when it did (changes the ledger and a counter)."""
    if not ledger.fail():
        return False
    ROLLOUTS_FAILED.labels(namespace, release, reason).inc()
    return True


def metrics_sink(namespace: str, release: str) -> EventSink:
    """A HostEvent sink that times host restarts and counts SSH errors of one Release (changes metrics)."""
    restarting: dict[str, float] = {}

    def emit(event: HostEvent) -> None:
        if event.warning and event.reason in SSH_ERROR_REASONS:
            SSH_ERRORS.labels(namespace, release, event.reason).inc()
        if event.phase == HostPhase.RESTARTING:
            restarting.setdefault(event.host, time.monotonic())
        elif event.phase == HostPhase.READY and event.host in restarting:
            HOST_RESTART_SECONDS.labels(namespace, release).observe(time.monotonic() - restarting.pop(event.host))
            HOST_RESTARTS.labels(namespace, release, event.host).inc()
        elif event.phase in (HostPhase.FAILED, HostPhase.ROLLED_BACK, HostPhase.UNREACHABLE):
            restarting.pop(event.host, None)

    return emit
