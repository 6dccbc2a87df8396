"""Readiness probes with Kubernetes semantics, run through the host's SSH connection.

`exec` runs a command in the current release directory; `httpGet` and `tcpSocket` open a TCP stream
FROM the host (SSH direct-tcpip), so a port bound to 127.0.0.1 on the host is reachable. The pure
part is ProbeTracker (consecutive successes/failures against the thresholds) and `next_slot`
(attempts at first + k*period on the event loop's clock, skipping slots an attempt overran, so
timing never drifts); `wait_ready` runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import h11

from kapistrano.api.spec import ExecAction, HttpGetAction, Probe, TcpSocketAction
from kapistrano.hosts.errors import CommandFailed, CommandTimeout, NotReady, TcpConnectFailed
from kapistrano.hosts.httpget import DEFAULT_HOST, get_status
from kapistrano.hosts.managers.base import ServiceContext
from kapistrano.hosts.probe_loop import EXIT_NO_TIMEOUT, Streamer, loop_command, parse_attempt, silence_limit, watch
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.shell import user_command


class Verdict(Enum):
    """What a probe's history says so far."""

    CONTINUE = "continue"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ProbeTracker:
    """Counts consecutive results against successThreshold/failureThreshold (pure state machine)."""

    success_threshold: int = 1
    failure_threshold: int = 3
    successes: int = 0
    failures: int = 0
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.success_threshold < 1 or self.failure_threshold < 1:
            raise ValueError("thresholds must be at least 1")

    @property
    def verdict(self) -> Verdict:
        """READY or FAILED once a threshold is reached, CONTINUE before (pure)."""
        if self.successes >= self.success_threshold:
            return Verdict.READY
        if self.failures >= self.failure_threshold:
            return Verdict.FAILED
        return Verdict.CONTINUE

    def feed(self, ok: bool) -> Verdict:
        """Record one attempt's result and return the verdict (mutates the tracker only)."""
        if self.verdict is not Verdict.CONTINUE:
            return self.verdict
        self.attempts += 1
        self.successes, self.failures = (self.successes + 1, 0) if ok else (0, self.failures + 1)
        return self.verdict


def next_index(first: float, period: float, attempt: int, now: float) -> int:
    """The slot k of the attempt after slot `attempt`: the first k > attempt with first + k*period >= now (pure).

    Slots an overrunning attempt missed are skipped rather than fired back to back.
    """
    k = attempt + 1
    if now > first + k * period:
        k = max(k, math.ceil((now - first) / period))
        while first + k * period < now:
            k += 1
    return k


@dataclass(frozen=True)
class Attempt:
    """One probe attempt's result."""

    ok: bool
    message: str


@dataclass(frozen=True)
class ProbeOutcome:
    """How waiting for readiness ended."""

    ready: bool
    attempts: int
    elapsed: float
    last: Attempt | None


class Clock(Protocol):
    """Where wait_ready reads time and waits; the event loop's monotonic clock by default."""

    def time(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once time() >= deadline."""
        ...


class LoopClock:
    """The running event loop's clock (loop.time())."""

    def time(self) -> float:
        """loop.time() (pure read)."""
        return asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        """Wait until loop.time() reaches deadline (side effects: none)."""
        delay = deadline - self.time()
        if delay > 0:
            await asyncio.sleep(delay)


# -- one attempt -------------------------------------------------------------------------------------


def http_ok(code: int | None) -> bool:
    """Kubernetes' rule: 200-399 means success (pure)."""
    return code is not None and 200 <= code < 400


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a stream, ignoring errors from a peer already gone (side effects: network)."""
    writer.close()
    with contextlib.suppress(OSError, EOFError):
        await writer.wait_closed()


async def http_attempt(runner: Runner, action: HttpGetAction) -> Attempt:
    """GET (HTTP or HTTPS) through the host's SSH connection; 2xx/3xx is success (side effects: one request)."""
    reader, writer = await runner.open_tcp(action.host or DEFAULT_HOST, action.port)
    try:
        code = await get_status(reader, writer, action)
    except (h11.ProtocolError, ssl.SSLError) as exc:
        return Attempt(False, f"not {action.scheme}: {type(exc).__name__}: {exc}")
    finally:
        await _close(writer)
    return Attempt(http_ok(code), f"HTTP {code}")


async def tcp_attempt(runner: Runner, action: TcpSocketAction) -> Attempt:
    """Connect through the host's SSH connection; connecting is success (side effects: one connection)."""
    _, writer = await runner.open_tcp(action.host or DEFAULT_HOST, action.port)
    await _close(writer)
    return Attempt(True, "connected")


async def exec_attempt(runner: Runner, ctx: ServiceContext, action: ExecAction, timeout: float) -> Attempt:
    """Run the command in the current release; exit 0 is success (side effects: the command's)."""
    result = await runner.run(user_command(ctx.current, action.command, ctx.env), timeout=timeout, check=False)
    detail = (result.stderr or result.stdout).strip()[-200:]
    return Attempt(result.ok, f"exit {result.exit_status}" + (f": {detail}" if detail else ""))


async def attempt(runner: Runner, ctx: ServiceContext, probe: Probe) -> Attempt:
    """One probe attempt bounded by timeoutSeconds; connection loss to the host itself propagates (side effects)."""
    try:
        async with asyncio.timeout(probe.timeout_seconds):
            if probe.exec is not None:
                return await exec_attempt(runner, ctx, probe.exec, probe.timeout_seconds)
            if probe.http_get is not None:
                return await http_attempt(runner, probe.http_get)
            if probe.tcp_socket is not None:
                return await tcp_attempt(runner, probe.tcp_socket)
    except (TimeoutError, CommandTimeout):
        return Attempt(False, f"timed out after {probe.timeout_seconds}s")
    except (TcpConnectFailed, ConnectionError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return Attempt(False, f"{type(exc).__name__}: {exc}")
    raise ValueError("probe has no action")


# -- the loop ------------------------------------------------------------------------------------------

AttemptSink = Callable[[int, Attempt, Verdict], None]


def ignore_attempt(number: int, result: Attempt, verdict: Verdict) -> None:
    """The default attempt sink: drop it (pure)."""


async def wait_ready(
    runner: Runner,
    ctx: ServiceContext,
    probe: Probe,
    *,
    clock: Clock | None = None,
    on_attempt: AttemptSink = ignore_attempt,
) -> ProbeOutcome:
    """Probe until successThreshold successes in a row; raise NotReady after failureThreshold failures (side effects).

    Attempts start at start + initialDelaySeconds + k * periodSeconds on the clock, never at
    "period after the previous attempt", so slow attempts do not make the schedule drift. An exec
    probe loops on the host in one session (hosts/probe_loop.py) unless a clock is given.
    """
    if clock is None and probe.exec is not None and isinstance(runner, Streamer):
        streamed = await _wait_streamed(runner, ctx, probe, on_attempt)
        if streamed is not None:
            return _ended(runner.name, *streamed)
    clock = clock or LoopClock()
    tracker = ProbeTracker(probe.success_threshold, probe.failure_threshold)
    start = clock.time()
    first = start + probe.initial_delay_seconds
    slot = 0
    while True:
        await clock.sleep_until(first + slot * probe.period_seconds)
        last = await attempt(runner, ctx, probe)
        verdict = tracker.feed(last.ok)
        on_attempt(tracker.attempts, last, verdict)
        if verdict is not Verdict.CONTINUE:
            break
        slot = next_index(first, probe.period_seconds, slot, clock.time())
    return _ended(
        runner.name, tracker, ProbeOutcome(verdict is Verdict.READY, tracker.attempts, clock.time() - start, last)
    )


def _ended(host: str, tracker: ProbeTracker, outcome: ProbeOutcome) -> ProbeOutcome:
    """The outcome of a wait that reached its verdict; raises NotReady when it is a failure (pure)."""
    if not outcome.ready:
        last = outcome.last.message if outcome.last else "no attempt"
        error = NotReady(host, f"not ready after {tracker.failures} failed attempts in a row: {last}")
        error.outcome = outcome
        raise error
    return outcome


async def _wait_streamed(
    runner: Streamer, ctx: ServiceContext, probe: Probe, on_attempt: AttemptSink
) -> tuple[ProbeTracker, ProbeOutcome] | None:
    """An exec probe's wait in one session; None when the host cannot loop (no `timeout`) (side effects)."""
    loop = asyncio.get_running_loop()
    tracker = ProbeTracker(probe.success_threshold, probe.failure_threshold)
    decided = asyncio.Event()
    start = loop.time()
    heard = [start]
    seen: list[Attempt] = []

    def on_line(line: str) -> None:
        parsed = parse_attempt(line, probe.timeout_seconds)
        if parsed is None or decided.is_set():
            return
        heard[0] = loop.time()
        seen.append(Attempt(*parsed))
        verdict = tracker.feed(seen[-1].ok)
        on_attempt(tracker.attempts, seen[-1], verdict)
        if verdict is not Verdict.CONTINUE:
            decided.set()

    command = loop_command(ctx, probe)
    task = asyncio.create_task(runner.stream(command, on_line, timeout=math.inf, stop_on_cancel=True))
    try:
        await watch(task, decided, heard, silence_limit(probe), runner.name)
    finally:
        if not task.done():
            task.cancel()  # the session closes; the loop ends at its next line
        await asyncio.gather(task, return_exceptions=True)
    if not decided.is_set():
        status = task.result()  # a lost connection raises here
        if status == EXIT_NO_TIMEOUT and not seen:
            return None
        raise CommandFailed(runner.name, "readiness loop", status, seen[-1].message if seen else "")
    outcome = ProbeOutcome(tracker.verdict is Verdict.READY, tracker.attempts, loop.time() - start, seen[-1])
    return tracker, outcome
