"""Waiting for an exec readiness probe with ONE sshd session: the attempts loop on the host.

Each attempt of an exec probe run as its own command costs the host an sshd session (a fork and a
shell) and the operator a channel open: a worker that takes 30 s to boot, probed every second, cost
30 sessions per host. Here one remote script makes the attempts on the same grid as `wait_ready`
(initialDelaySeconds + k * periodSeconds on the host's monotonic clock, skipping slots an attempt
overran), each bounded by timeoutSeconds with coreutils' `timeout`, and prints one line per
attempt; the thresholds stay in ProbeTracker, which reads the lines as they come and closes the
session once it has a verdict. A host without `timeout` (the script exits EXIT_NO_TIMEOUT before
any attempt) is probed one command per attempt instead.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol, runtime_checkable

from kapistrano.api.spec import Probe
from kapistrano.hosts.errors import CommandTimeout
from kapistrano.hosts.managers.base import ServiceContext
from kapistrano.hosts.shell import cmd, with_env

#: The loop's exit status when the host has no `timeout` command.
EXIT_NO_TIMEOUT = 79
#: An attempt line arrives at least this much later than the schedule says only when the host or
#: the connection is stuck.
SILENCE_SLACK_SECONDS = 10.0

_LOOP = r"""
command -v timeout >/dev/null 2>&1 || exit 79
probe=$1 period=$2 first=$3 limit=$4
now() { read -r _u _r < /proc/uptime; echo $(( ${_u%.*} * 100 + 1${_u#*.} - 100 )); }
first=$(( $(now) + first )) k=0
while :; do
  left=$(( first + k * period - $(now) ))
  [ "$left" -gt 0 ] && sleep "$(printf '%d.%02d' $((left / 100)) $((left % 100)))"
  out=$(timeout -k 2 "$limit" sh -c "$probe" 2>&1 </dev/null); rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo timeout
  elif [ -z "$out" ]; then printf 'exit\t%s\t\n' "$rc"
  else printf 'exit\t%s\t%s\n' "$rc" "$(printf '%s' "$out" | tail -c 200 | tr '\n\t' '  ')"; fi
  late=$(( $(now) - first )) k=$((k + 1))
  [ "$late" -gt $((k * period)) ] && k=$(( (late + period - 1) / period ))
done
"""


@runtime_checkable
class Streamer(Protocol):
    """A host connection that streams a command's output lines (hosts/ssh.py)."""

    @property
    def name(self) -> str:
        """The host's name in the Release."""
        ...

    async def stream(
        self, command: str, on_line: LineSink, *, timeout: float | None = None, stop_on_cancel: bool = False
    ) -> int:
        """Run a command, passing each stdout line to `on_line`; returns the exit status."""
        ...


class LineSink(Protocol):
    """Takes one output line."""

    def __call__(self, line: str) -> None:
        """Take one line."""


def centiseconds(seconds: float) -> int:
    """Seconds as whole centiseconds, at least 1 (pure)."""
    return max(1, round(seconds * 100))


def loop_command(ctx: ServiceContext, probe: Probe) -> str:
    """The attempts loop of an exec probe in the current release, with the service's environment (pure)."""
    assert probe.exec is not None
    limit = f"{max(1, math.ceil(probe.timeout_seconds))}s"
    delay = round(probe.initial_delay_seconds * 100)
    loop = cmd("sh", "-c", _LOOP, "sh", probe.exec.command, centiseconds(probe.period_seconds), delay, limit)
    return f"{cmd('cd', ctx.current)} && {with_env(ctx.env, loop)}"


def parse_attempt(line: str, timeout_seconds: float) -> tuple[bool, str] | None:
    """(ok, message) of one attempt line, as exec_attempt words it; None for another line (pure)."""
    if line == "timeout":
        return False, f"timed out after {timeout_seconds}s"
    word, _, rest = line.partition("\t")
    status, _, detail = rest.partition("\t")
    if word != "exit" or not status.isdigit():
        return None
    detail = detail.strip()
    return status == "0", f"exit {status}" + (f": {detail}" if detail else "")


def silence_limit(probe: Probe) -> float:
    """How long the loop may print nothing before the host counts as stuck (pure)."""
    return probe.initial_delay_seconds + probe.period_seconds + probe.timeout_seconds + SILENCE_SLACK_SECONDS


async def watch(task: asyncio.Task[int], decided: asyncio.Event, heard: list[float], limit: float, host: str) -> None:
    """Wait until a verdict or the loop's end; raises CommandTimeout when the loop falls silent (side effects: none)."""
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(decided.wait())
    try:
        while not (task.done() or decided.is_set()):
            await asyncio.wait({task, waiter}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
            if not (task.done() or decided.is_set()) and loop.time() - heard[-1] > limit:
                raise CommandTimeout(host, f"the readiness loop printed nothing for {limit:g}s")
    finally:
        waiter.cancel()
