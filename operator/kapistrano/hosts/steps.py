"""Several remote steps in ONE command (one sshd session), each failing with its own error.

Every sshd session costs the host a fork and a shell and the operator a channel open, so steps that
always follow one another (create a release, copy the source into it, link shared/, write its
markers) run as one command. The first failure stops the rest, names its step on stderr and keeps
its exit status, so the error raised is the one that step alone would have raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kapistrano.hosts.errors import CommandFailed, HostError
from kapistrano.hosts.runner import CommandResult, Runner
from kapistrano.hosts.shell import quote

#: The stderr line that names the step that failed.
FAILED_STEP = "kapistrano-failed-step"

Failure = Callable[[str, CommandResult], HostError | None]


def no_failure(host: str, result: CommandResult) -> HostError | None:
    """No error of its own: a failed step is a CommandFailed (pure)."""
    return None


@dataclass(frozen=True)
class Step:
    """One command of a chain, with what to make of its failure."""

    name: str
    command: str
    #: The step's own error for a failed result, None for a plain CommandFailed.
    failure: Failure = no_failure


def steps_command(steps: Sequence[Step]) -> str:
    """The steps one after the other in one command line; the first failure ends it (pure)."""

    def one(step: Step) -> str:
        report = f"printf '{FAILED_STEP}\\t%s\\n' {quote(step.name)} >&2"
        return f"{{ {step.command}\n}} || {{ s=$?; {report}; exit $s; }}"

    return "\n".join(one(s) for s in steps)


def failed_step(stderr: str) -> tuple[str | None, str]:
    """The name of the step that failed, and stderr without the line naming it (pure)."""
    name, kept = None, []
    for line in stderr.splitlines(keepends=True):
        head, sep, rest = line.partition("\t")
        if head == FAILED_STEP and sep:
            name = rest.strip()
        else:
            kept.append(line)
    return name, "".join(kept)


def step_error(host: str, steps: Sequence[Step], result: CommandResult) -> HostError:
    """The error of a failed chain: its failed step's own, else a CommandFailed naming it (pure)."""
    name, stderr = failed_step(result.stderr)
    step = next((s for s in steps if s.name == name), None)
    own = CommandResult(result.exit_status, result.stdout, stderr)
    error = step.failure(host, own) if step is not None else None
    what = step.name if step is not None else ", ".join(s.name for s in steps)
    error = error or CommandFailed(host, what, result.exit_status, stderr)
    error.step = name
    return error


async def run_steps(runner: Runner, steps: Sequence[Step], *, timeout: float | None = None) -> CommandResult:
    """Run the steps in one command; raises the failed step's error (side effects: the steps')."""
    if not steps:
        return CommandResult(0, "", "")
    result = await runner.run(steps_command(steps), check=False, timeout=timeout)
    if not result.ok:
        raise step_error(runner.name, steps, result)
    return result
