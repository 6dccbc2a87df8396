"""Readiness probes against real lab hosts over SSH: exec, httpGet and tcpSocket, with thresholds.

httpGet and tcpSocket reach a server bound to 127.0.0.1 INSIDE the host, which the test machine
itself cannot reach: only the SSH connection's direct-tcpip channel can.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kapistrano.api.spec import Probe
from kapistrano.hosts.errors import NotReady
from kapistrano.hosts.probes import Attempt, LoopClock, ProbeOutcome, Verdict, wait_ready

from tests.integration.servicekit import PYTHON, RELEASE, App, app

__all__ = ["app"]

PORT = 8081


class RecordingClock(LoopClock):
    """The loop clock, remembering every deadline wait_ready sleeps until."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []

    async def sleep_until(self, deadline: float) -> None:
        """Record the deadline, then wait for it (side effects: none)."""
        self.deadlines.append(deadline)
        await super().sleep_until(deadline)


def probe(**fields: object) -> Probe:
    """A Probe from camelCase fields (pure)."""
    return Probe.model_validate(fields)


async def run(app: App, spec: Probe, clock: LoopClock | None = None) -> tuple[ProbeOutcome, list[Attempt]]:
    """wait_ready on the app's host, keeping every attempt (side effects: the probe's)."""
    seen: list[Attempt] = []

    def keep(number: int, attempt: Attempt, verdict: Verdict) -> None:
        seen.append(attempt)

    outcome = await wait_ready(app.runner, app.ctx, spec, clock=clock, on_attempt=keep)
    return outcome, seen


async def failing(app: App, spec: Probe) -> tuple[NotReady, list[Attempt]]:
    """wait_ready that must end in NotReady; the error and the attempts (side effects: the probe's)."""
    seen: list[Attempt] = []

    def keep(number: int, attempt: Attempt, verdict: Verdict) -> None:
        seen.append(attempt)

    with pytest.raises(NotReady) as caught:
        await wait_ready(app.runner, app.ctx, spec, on_attempt=keep)
    return caught.value, seen


@pytest_asyncio.fixture
async def web(app: App) -> AsyncIterator[App]:
    """An HTTP server bound to 127.0.0.1:PORT inside the host, stopped by pid afterwards."""
    app.write(f"{RELEASE}/health", "ok\n")
    started = app.host.exec(
        f"cd {RELEASE} && setsid {PYTHON} -m http.server {PORT} --bind 127.0.0.1 </dev/null >/dev/null 2>&1 & echo $!"
    )
    pid = int(started.stdout.strip())
    await wait_ready(app.runner, app.ctx, probe(tcpSocket={"port": PORT}, failureThreshold=30))
    yield app
    app.host.exec(["kill", str(pid)], check=False)


async def test_exec_succeeds_in_the_current_release(app: App) -> None:
    app.write(f"{RELEASE}/ready.flag", "")
    outcome, seen = await run(app, probe(exec={"command": "test -f ready.flag"}))
    assert outcome.ready
    assert outcome.attempts == 1
    assert seen[0].ok


async def test_exec_fails_after_failure_threshold_attempts_one_period_apart(app: App) -> None:
    error, seen = await failing(app, probe(exec={"command": "test -f ready.flag"}, failureThreshold=3))
    assert len(seen) == 3
    assert not any(a.ok for a in seen)
    assert "3 failed attempts in a row" in str(error)
    assert isinstance(error.outcome, ProbeOutcome)
    assert 1.9 <= error.outcome.elapsed < 3.0


async def test_consecutive_counts_ready_when_enough_successes_follow_failures(app: App) -> None:
    counter = "n=$(cat attempts 2>/dev/null || echo 0); n=$((n + 1)); echo $n > attempts; [ $n -ge 3 ]"
    outcome, seen = await run(app, probe(exec={"command": counter}, successThreshold=2, failureThreshold=3))
    assert outcome.ready
    assert [a.ok for a in seen] == [False, False, True, True]


async def test_fewer_failures_allowed_than_needed_is_not_ready(app: App) -> None:
    counter = "n=$(cat attempts 2>/dev/null || echo 0); n=$((n + 1)); echo $n > attempts; [ $n -ge 3 ]"
    _, seen = await failing(app, probe(exec={"command": counter}, failureThreshold=2))
    assert [a.ok for a in seen] == [False, False]


async def test_attempts_are_scheduled_on_the_period_grid_however_long_they_take(app: App) -> None:
    clock = RecordingClock()
    slow_failure = "sleep 0.4; false"
    spec = probe(exec={"command": slow_failure}, initialDelaySeconds=1, failureThreshold=3, periodSeconds=1)
    with pytest.raises(NotReady):
        await run(app, spec, clock)
    first = clock.deadlines[0]
    assert [round(d - first, 9) for d in clock.deadlines] == [0.0, 1.0, 2.0]


async def test_the_first_attempt_waits_for_initial_delay_seconds(app: App) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome, seen = await run(app, probe(exec={"command": "true"}, initialDelaySeconds=1))
    assert outcome.ready
    assert len(seen) == 1
    assert 1.0 <= loop.time() - started < 2.0, "the probe did not wait for initialDelaySeconds, or far longer"


async def test_an_attempt_is_bounded_by_timeout_seconds(app: App) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, seen = await failing(app, probe(exec={"command": "sleep 30"}, timeoutSeconds=1, failureThreshold=1))
    assert loop.time() - started < 5
    assert "timed out" in seen[0].message


async def test_http_get_reaches_a_port_bound_to_the_hosts_loopback_through_ssh(web: App) -> None:
    with pytest.raises(ConnectionRefusedError), socket.create_connection((web.host.address, PORT), timeout=2):
        pass  # not reachable from here: the probe below can only have gone through SSH
    outcome, seen = await run(web, probe(httpGet={"path": "/health", "port": PORT}))
    assert outcome.ready
    assert seen[0].message == "HTTP 200"


async def test_http_get_counts_a_404_as_a_failure(web: App) -> None:
    _, seen = await failing(web, probe(httpGet={"path": "/missing", "port": PORT}, failureThreshold=2))
    assert [a.message for a in seen] == ["HTTP 404", "HTTP 404"]


async def test_tcp_socket_succeeds_on_an_open_port_and_fails_on_a_closed_one(web: App) -> None:
    outcome, _ = await run(web, probe(tcpSocket={"port": PORT}))
    assert outcome.ready
    _, seen = await failing(web, probe(tcpSocket={"port": PORT + 1}, failureThreshold=2))
    assert len(seen) == 2
    assert "TcpConnectFailed" in seen[0].message
