"""What the rest of kapistrano needs from a host connection: run a command, open a TCP stream.

hosts/ssh.py implements it over asyncssh. Service managers, probes, the layout and the engine are
written against this protocol only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    """What a finished remote command returned."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True when the command exited 0 (pure)."""
        return self.exit_status == 0


class Runner(Protocol):
    """A live connection to one host."""

    @property
    def name(self) -> str:
        """The host's name in the Release."""
        ...

    async def run(
        self, command: str, *, timeout: float | None = None, check: bool = True, stdin: str | None = None
    ) -> CommandResult:
        """Run a shell command line on the host; raises CommandFailed when check and exit != 0,
        CommandTimeout past timeout, Unreachable when the connection is gone."""
        ...

    async def open_tcp(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a TCP stream to host:port as seen FROM the host (SSH direct-tcpip)."""
        ...
