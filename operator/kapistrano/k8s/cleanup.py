"""What a deleted Release leaves behind: its host locks are released (the hosts keep running as they are).

An operator handing a Release to another one (another shard, a peer of higher priority) releases
the locks of its own process the same way, so that the other one need not wait for them.
"""

from __future__ import annotations

import asyncio
import logging

from kapistrano.api.release import Release
from kapistrano.api.spec import Host
from kapistrano.hosts import lock
from kapistrano.hosts.errors import HostError
from kapistrano.hosts.ssh import SshConnection, target_for_host
from kapistrano.k8s import credentials

log = logging.getLogger(__name__)

#: Deleting a Release never waits longer than this for its hosts (an unreachable one keeps its lock
#: until it expires).
UNLOCK_TIMEOUT_SECONDS = 20.0


async def release_host_locks(namespace: str, uid: str, release: Release, *, instance: str = "") -> list[str]:
    """Remove the locks `uid` holds from `instance` ("" = any) on every host; returns those hosts (network I/O)."""
    try:
        creds = await credentials.load(namespace, release.spec)
    except credentials.CredentialsProblem as problem:
        log.warning("cannot release the host locks of %s/%s: %s", namespace, release.metadata.name, problem.message)
        return []
    spec = release.spec

    async def one(host: Host) -> bool:
        conn = SshConnection(target_for_host(spec, host, creds.private_key, creds.known_hosts))
        try:
            return await lock.release_lock(conn, spec.deploy_path, uid, instance=instance)
        except HostError as exc:
            log.warning("host lock on %s kept until it expires: %s", host.name, exc)
            return False
        finally:
            await conn.close()

    try:
        async with asyncio.timeout(UNLOCK_TIMEOUT_SECONDS):
            done = await asyncio.gather(*(one(h) for h in spec.hosts))
    except TimeoutError:
        log.warning("releasing the host locks of %s/%s timed out", namespace, release.metadata.name)
        return []
    return [h.name for h, removed in zip(spec.hosts, done, strict=True) if removed]
