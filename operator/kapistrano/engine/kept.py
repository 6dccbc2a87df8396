"""The host drivers of one Release, kept from one engine run to the next.

A Rollout closes the drivers it made when it ends, so the next run (the next version, a drift check)
opened every host connection again: at 500 hosts, 500 SSH handshakes before the first host could
be updated, each one a new sshd process on its host. The operator keeps them instead; the process's
SshHub still closes connections idle for a minute, so this saves the handshakes of versions pushed
close together (a closed connection reconnects at its next command).
"""

from __future__ import annotations

import asyncio
import logging

from kapistrano.api.spec import Host, ReleaseSpec
from kapistrano.engine.driver import HostDriver
from kapistrano.engine.rollout import DriverFactory

log = logging.getLogger(__name__)

#: What makes a driver reusable: the credentials, the spec's SSH settings, the host's entry, its user
#: and deployTo (any change to what its connection was made from makes a new one).
DriverKey = tuple[str, str, str, str, str]


class KeptDrivers:
    """Drivers by what they connect to and with which credentials; those a run did not use are closed after it."""

    def __init__(self) -> None:
        self._drivers: dict[DriverKey, HostDriver] = {}
        self._used: set[DriverKey] = set()

    def __len__(self) -> int:
        return len(self._drivers)

    def factory(self, make: DriverFactory, credentials: str) -> DriverFactory:
        """A factory for one run: the kept driver of a host and `credentials` when there is one (fills the cache)."""

        def get(spec: ReleaseSpec, host: Host) -> HostDriver:
            ssh, entry = spec.ssh.model_dump_json(), host.model_dump_json()
            key = (credentials, ssh, entry, spec.user_for(host), spec.deploy_path)
            self._used.add(key)
            if key not in self._drivers:
                self._drivers[key] = make(spec, host)
            return self._drivers[key]

        return get

    async def close_unused(self) -> None:
        """Close the drivers the last run did not ask for: hosts gone from the spec, old credentials (network I/O)."""
        gone = [key for key in self._drivers if key not in self._used]
        self._used = set()
        await _close([self._drivers.pop(key) for key in gone])

    async def close(self) -> None:
        """Close every driver (network I/O)."""
        drivers, self._drivers, self._used = list(self._drivers.values()), {}, set()
        await _close(drivers)


async def _close(drivers: list[HostDriver]) -> None:
    """Close drivers; one failing to close does not keep the others open (network I/O)."""
    for failed in await asyncio.gather(*(d.close() for d in drivers), return_exceptions=True):
        if isinstance(failed, BaseException):
            log.warning("closing a host connection failed: %s", failed)
