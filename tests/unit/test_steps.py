"""Several steps in one command: the first failure stops the rest and is that step's own error."""

from __future__ import annotations

import subprocess

from kapistrano.hosts.errors import CommandFailed, HostError, SourceError
from kapistrano.hosts.runner import CommandResult
from kapistrano.hosts.shell import cmd
from kapistrano.hosts.steps import Step, failed_step, step_error, steps_command


def run_locally(command: str) -> CommandResult:
    """Run a command line with the local sh, as a host's login shell would."""
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    return CommandResult(done.returncode, done.stdout, done.stderr)


def source_missing(host: str, result: CommandResult) -> HostError | None:
    return SourceError(host, "no source") if result.exit_status == 85 else None


def test_steps_run_in_order_and_the_first_failure_names_its_step_and_keeps_its_status() -> None:
    steps = [
        Step("one", cmd("echo", "one")),
        Step("two", "sh -c 'echo two; echo oops >&2; exit 85'", source_missing),
        Step("three", cmd("echo", "three")),
    ]
    result = run_locally(steps_command(steps))
    assert result.exit_status == 85
    assert result.stdout.split() == ["one", "two"], "the step after the failure never ran"
    name, stderr = failed_step(result.stderr)
    assert (name, stderr) == ("two", "oops\n")
    error = step_error("h1", steps, result)
    assert isinstance(error, SourceError)
    assert error.step == "two"


def test_a_failure_without_an_error_of_its_own_is_a_command_failure_naming_the_step() -> None:
    steps = [Step("copy it", "false"), Step("never", "true")]
    result = run_locally(steps_command(steps))
    error = step_error("h1", steps, result)
    assert isinstance(error, CommandFailed)
    assert (error.command, error.exit_status, error.step) == ("copy it", 1, "copy it")


def test_quoted_names_and_commands_spanning_lines_survive_the_chain() -> None:
    steps = [Step("it's a step", "sh -c '\nexit 3\n'")]
    result = run_locally(steps_command(steps))
    assert result.exit_status == 3
    assert failed_step(result.stderr)[0] == "it's a step"
    ok = run_locally(steps_command([Step("a", "sh -c 'echo a\n'"), Step("b", cmd("echo", "b c"))]))
    assert (ok.exit_status, ok.stdout) == (0, "a\nb c\n")
