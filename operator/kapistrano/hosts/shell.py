"""The one place remote command lines are built. Every value is shell-quoted.

User-given commands (hooks, start/stop commands, exec probes) are the only raw shell, and they are
always run as `cd <dir> && <command>` through `user_command`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping


def quote(value: str | int) -> str:
    """Quote one value for a POSIX shell (pure)."""
    return shlex.quote(str(value))


def cmd(*argv: str | int) -> str:
    """A command line with every argument quoted (pure)."""
    return " ".join(quote(a) for a in argv)


def chain(*commands: str) -> str:
    """Commands joined with && so the first failure stops the rest (pure)."""
    return " && ".join(c for c in commands if c)


def with_env(env: Mapping[str, str], command: str) -> str:
    """Prefix a command with quoted environment assignments (pure)."""
    assignments = " ".join(f"{k}={quote(v)}" for k, v in env.items())
    return f"env {assignments} {command}" if assignments else command


def user_command(directory: str, command: str, env: Mapping[str, str] | None = None) -> str:
    """Run a user-given shell command in a directory (pure): the only raw shell we emit."""
    inner = with_env(env or {}, cmd("sh", "-c", command))
    return chain(cmd("cd", directory), inner)


def script(lines: Iterable[str]) -> str:
    """A multi-line shell script that stops at the first failing line (pure)."""
    return "set -e\n" + "\n".join(lines) + "\n"
