"""Operator metrics and logs: rollouts counted once per real rollout, labelled series, JSON log fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import kopf
import pytest
from kapistrano import __version__
from kapistrano.api.status import HostPhase, HostStatus, ReleaseStatus
from kapistrano.engine.events import HostEvent
from kapistrano.k8s import logs, metrics
from kapistrano.plan.conditions import first_sight
from kopf._core.actions.loggers import make_formatter
from prometheus_client import REGISTRY

from .planfixtures import NOW

NS = "deploy"
_names = iter(range(10_000))


@pytest.fixture
def release() -> Iterator[str]:
    """A Release name no other test used (metrics are process-wide); its series are dropped afterwards."""
    name = f"rel-{next(_names)}"
    yield name
    metrics.forget(NS, name)


def sample(name: str, **labels: str) -> float:
    """The current value of a sample, 0 when it does not exist."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def saved(current: str | None, restarted_at: str | None = None) -> ReleaseStatus:
    """A saved status whose hosts all completed `current` (and the restart request `restarted_at`)."""
    return ReleaseStatus(current_version=current, restarted_at=restarted_at)


#: (spec.version, restart request, saved status before the run, outcome) -> (counted start, counted end).
RUNS = [
    ("v1", None, None, "Ready", True, True),  # the first rollout
    ("v1", None, saved("v1"), "Ready", False, False),  # a drift check: nothing to roll out
    ("v2", None, saved("v1"), "Deadline", True, False),  # a new version, past its deadline
    ("v2", None, saved("v1"), "Deadline", False, False),  # the retry of the same version
    ("v2", None, saved("v1"), "Ready", False, True),  # the retry succeeds: the rollout ends once
    ("v2", None, saved("v2"), "Ready", False, False),  # another drift check
    ("v2", "t1", saved("v2"), "Ready", True, True),  # a restart request
    ("v2", "t1", saved("v2", "t1"), "Ready", False, False),  # a drift check after the restart
]


def test_rollouts_are_counted_once_per_new_version_or_restart_request(release: str) -> None:
    ledger = metrics.RolloutLedger()
    events = []
    for version, token, before, result, starts, ends in RUNS:
        key = metrics.rollout_key(version, token, before)
        assert metrics.rollout_started(NS, release, ledger, key) is starts, (version, token, before)
        if result == "Ready":
            ended = metrics.rollout_finished(NS, release, ledger)
            if ended:
                events.append(("RolloutComplete", version))
        else:
            ended = False
            metrics.rollout_failed(NS, release, ledger, "ProgressDeadlineExceeded")
        assert ended is ends, (version, token, before)
    assert sample("kapistrano_rollouts_started_total", namespace=NS, release=release) == 3
    assert sample("kapistrano_rollouts_finished_total", namespace=NS, release=release) == 3
    failed = {"namespace": NS, "release": release, "reason": "ProgressDeadlineExceeded"}
    assert sample("kapistrano_rollouts_failed_total", **failed) == 1
    assert events == [("RolloutComplete", "v1"), ("RolloutComplete", "v2"), ("RolloutComplete", "v2")]


def test_the_condition_gauge_shows_each_conditions_status(release: str) -> None:
    status = ReleaseStatus(
        conditions=first_sight(1, NOW), hosts=[HostStatus(name="web-1", phase=HostPhase.READY, ready=True)]
    )
    metrics.record_status(NS, release, status)
    ours = {"namespace": NS, "release": release}
    assert sample("kapistrano_release_condition", type="Ready", status="Unknown", **ours) == 1
    assert sample("kapistrano_release_condition", type="Ready", status="True", **ours) == 0
    assert sample("kapistrano_release_condition", type="Reconciling", status="True", **ours) == 1
    assert sample("kapistrano_host_ready", host="web-1", **ours) == 1
    assert sample("kapistrano_hosts", phase="Ready", **ours) == 1
    metrics.forget(NS, release)
    assert (
        REGISTRY.get_sample_value("kapistrano_release_condition", {"type": "Ready", "status": "Unknown", **ours})
        is None
    )
    assert REGISTRY.get_sample_value("kapistrano_host_ready", {"host": "web-1", **ours}) is None


def test_only_ssh_errors_count_as_ssh_errors_and_restarts_are_timed_per_release(release: str) -> None:
    emit = metrics.metrics_sink(NS, release)
    emit(HostEvent("web-1", "connection refused", HostPhase.UNREACHABLE, reason="Unreachable", warning=True))
    emit(HostEvent("web-1", "exit 1", HostPhase.FAILED, reason="CommandFailed", warning=True))
    emit(HostEvent("web-1", "not ready", HostPhase.FAILED, reason="NotReady", warning=True))
    emit(HostEvent("web-2", "restarting", HostPhase.RESTARTING))
    emit(HostEvent("web-2", "ready", HostPhase.READY))
    ours = {"namespace": NS, "release": release}
    assert sample("kapistrano_ssh_errors_total", reason="Unreachable", **ours) == 1
    assert sample("kapistrano_ssh_errors_total", reason="CommandFailed", **ours) == 0
    assert sample("kapistrano_ssh_errors_total", reason="NotReady", **ours) == 0
    assert sample("kapistrano_host_restart_duration_seconds_count", **ours) == 1
    assert sample("kapistrano_host_restarts_total", host="web-2", **ours) == 1


def test_build_info_names_the_version() -> None:
    metrics.serve(0)
    found = [s for m in REGISTRY.collect() if m.name == "kapistrano_build_info" for s in m.samples]
    assert [(s.labels["version"], s.value) for s in found] == [(__version__, 1.0)]


def test_json_logs_carry_the_object_the_host_and_the_version() -> None:
    body = {
        "apiVersion": "kapistrano.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "billing", "namespace": NS, "uid": "u-1"},
        "spec": {"version": "v7"},
    }
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(make_formatter(log_format=kopf.LogFormat.JSON))  # as `kapistrano run --log-format json`
    logger = logging.getLogger("kapistrano.release.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log = logs.release_logger(logger, body)
        emit = logs.log_sink(log)
        emit(HostEvent("web-1", "sneakers stopping", HostPhase.RESTARTING))
        emit(HostEvent("web-1", "still stopping", HostPhase.RESTARTING))  # no phase change: not logged again
        emit(HostEvent("web-1", "connection refused", HostPhase.UNREACHABLE, reason="Unreachable", warning=True))
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["host"], line["version"], line["severity"]) for line in lines] == [
        ("web-1", "v7", "info"),
        ("web-1", "v7", "warn"),
    ]
    assert lines[0]["object"] == {
        "apiVersion": "kapistrano.dev/v1alpha1",
        "kind": "Release",
        "name": "billing",
        "namespace": NS,
        "uid": "u-1",
    }
    assert "sneakers stopping" in lines[0]["message"]
