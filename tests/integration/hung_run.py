"""Runs the engine for a Release whose status saves never land (an API server that hangs), until killed.

For the tests that SIGKILL a run after it began acting on a host but before any status save:

    python hung_run.py RELEASE.yaml STATE.json PRIVATE_KEY KNOWN_HOSTS [--restart TOKEN]

The status is loaded from STATE.json as `kapistrano apply` would; no save ever reaches it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import yaml
from kapistrano.api.release import parse_release
from kapistrano.api.status import ReleaseStatus
from kapistrano.engine.rollout import Desired, Rollout
from kapistrano.engine.ssh_driver import driver_factory
from kapistrano.engine.store import FileStatusStore

#: The owner the sample app's in-process runs use (tests/integration/appkit.py), so either may resume the other.
OWNER = "test:app"


class HungStore:
    """Loads from a state file; every save waits forever."""

    def __init__(self, path: Path) -> None:
        self.inner = FileStatusStore(path)

    async def load(self) -> ReleaseStatus | None:
        """The saved status (reads the file)."""
        return await self.inner.load()

    async def save(self, status: ReleaseStatus) -> None:
        """Never returns (no side effects)."""
        await asyncio.Event().wait()


async def main() -> None:
    """Run the Release until killed (network I/O, processes on the hosts)."""
    parser = argparse.ArgumentParser()
    for name in ("release", "state", "key", "known_hosts"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--restart")
    args = parser.parse_args()
    spec = parse_release(yaml.safe_load(args.release.read_text())).spec

    async def desired() -> Desired:
        return Desired(spec, restart_token=args.restart)

    drivers = driver_factory(args.key, args.known_hosts)
    await Rollout(source=desired, drivers=drivers, store=HungStore(args.state), owner=OWNER, poll_interval=0.2).run()


if __name__ == "__main__":
    asyncio.run(main())
