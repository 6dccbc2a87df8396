"""Host locks taken and shown by hand, as `kamal lock` does: `kapistrano lock status|acquire|release`.

A person takes every host's lock before maintenance, with a message; any Release's rollout then
reports Conflict on those hosts with that message until the person releases them. The lock is owned
by `manual:<user>@<machine>` and held until released (it expires only after MANUAL_TTL_SECONDS).
Releasing is `kapistrano unlock` (kapistrano.cli.unlock), which shows the holders and asks first.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from pathlib import Path

from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.cli.unlock import describe, each_host
from kapistrano.hosts import lock
from kapistrano.hosts.errors import HostError
from kapistrano.hosts.runner import Runner
from kapistrano.hosts.ssh_options import LocalSsh

#: A lock taken by hand lasts until released; this only bounds a lock forgotten on a host (ten years).
MANUAL_TTL_SECONDS = 10 * 365 * 24 * 3600


def manual_owner(user: str | None = None, machine: str | None = None) -> str:
    """`manual:<user>@<machine>` for the person running this (reads the environment)."""
    return f"{lock.MANUAL_PREFIX}{user or getpass.getuser()}@{machine or socket.gethostname()}"


def lock_status(
    spec: ReleaseSpec, key: bytes | Path | None, known: bytes | None, hosts: list[Host], local: LocalSsh | None
) -> int:
    """Print who holds each host's lock, since when and why; 1 when a host could not be read (network I/O)."""
    found = asyncio.run(each_host(spec, key, known, hosts, lock.read_lock, local=local))
    for name, info in found.items():
        print(describe(name, info))
    return 1 if any(isinstance(v, HostError) for v in found.values()) else 0


def lock_acquire(
    spec: ReleaseSpec,
    key: bytes | Path | None,
    known: bytes | None,
    hosts: list[Host],
    *,
    local: LocalSsh | None,
    message: str,
) -> int:
    """Take every host's lock for the person running this; 1 when a host is held by another (network I/O)."""
    owner = manual_owner()

    async def take(runner: Runner, deploy_to: str) -> None:
        await lock.acquire_lock(runner, deploy_to, owner, MANUAL_TTL_SECONDS, instance="", message=message)

    found = asyncio.run(each_host(spec, key, known, hosts, take, local=local))
    for name, outcome in found.items():
        done = f"not locked: {outcome.message}" if isinstance(outcome, HostError) else f"locked by {owner}"
        print(f"{name}: {done}")
    return 1 if any(isinstance(v, HostError) for v in found.values()) else 0
