"""Tailing a service's log (`<deployTo>/shared/log/<service>.log`) on several hosts at once, line by line."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kapistrano.hosts.errors import HostError
from kapistrano.hosts.shell import cmd
from kapistrano.hosts.ssh import SshConnection

#: A log name: what services write to shared/log/<name>.log (no path, no leading dot).
LOG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class TailRequest:
    """Which log, how many lines to start with, and whether to keep following it."""

    deploy_to: str
    service: str
    lines: int = 10
    follow: bool = False


def log_file(deploy_to: str, service: str) -> str:
    """The service's log on the host; raises ValueError for a name that is not a plain file name (pure)."""
    if not LOG_NAME.fullmatch(service):
        raise ValueError(f"{service!r} is not a log name (letters, digits, '_', '.', '-')")
    return f"{deploy_to.rstrip('/')}/shared/log/{service}.log"


def tail_command(request: TailRequest) -> str:
    """`tail` of the log, following it by name (so across rotation) when asked (pure)."""
    argv = ["tail", "-n", str(max(0, request.lines)), *(["-F"] if request.follow else [])]
    return "exec " + cmd(*argv, "--", log_file(request.deploy_to, request.service)) + " 2>&1"


async def tail_hosts(
    connections: Sequence[SshConnection],
    request: TailRequest,
    on_line: Callable[[str, str], None],
    on_error: Callable[[str, str], None],
) -> bool:
    """Tail the log on every host at once; `on_line(host, line)` per line (network I/O).

    A host that fails is reported through `on_error(host, message)` and the others go on. Returns
    True when every host's tail ended well. Cancelled, each remote tail is stopped.
    """
    command = tail_command(request)

    async def one(conn: SshConnection) -> bool:
        try:
            status = await conn.stream(
                command, lambda line: on_line(conn.name, line), timeout=math.inf, stop_on_cancel=True
            )
        except HostError as exc:
            on_error(conn.name, exc.message)
            return False
        if status != 0:
            on_error(conn.name, f"tail exited with status {status}")
        return status == 0

    return all(await asyncio.gather(*(one(c) for c in connections)))
