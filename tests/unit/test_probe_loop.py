"""The exec probe loop's lines and command line (pure)."""

from __future__ import annotations

import shlex

from kapistrano.api.spec import Probe
from kapistrano.hosts.managers.base import ServiceContext
from kapistrano.hosts.probe_loop import centiseconds, loop_command, parse_attempt, silence_limit


def test_attempt_lines_read_as_exec_attempts_word_them() -> None:
    assert parse_attempt("exit\t0\t", 1) == (True, "exit 0")
    assert parse_attempt("exit\t1\tnot yet ", 1) == (False, "exit 1: not yet")
    assert parse_attempt("timeout", 2.5) == (False, "timed out after 2.5s")
    assert parse_attempt("exit\tx\t", 1) is None
    assert parse_attempt("something else", 1) is None


def test_the_loop_runs_the_probe_in_the_release_with_the_service_environment() -> None:
    probe = Probe.model_validate({"exec": {"command": "test -e 'a b'"}, "periodSeconds": 0.25, "timeoutSeconds": 2})
    ctx = ServiceContext(deploy_to="/var/www/app", env={"KAPISTRANO_PID": "42"})
    words = shlex.split(loop_command(ctx, probe))
    assert words[:4] == ["cd", ctx.current, "&&", "env"]
    assert "KAPISTRANO_PID=42" in words
    assert words[-4:] == ["test -e 'a b'", "25", "0", "2s"], "command, period and delay in cs, timeout in s"
    assert centiseconds(0.001) == 1
    assert silence_limit(probe) > probe.period_seconds + probe.timeout_seconds
