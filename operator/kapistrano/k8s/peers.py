"""The replicas of this operator's shard as kopf peering sees them: who is gone, for host-lock takeover.

kopf peering elects the active replica of a shard: each replica renews its entry (identity ->
priority, lifetime, lastseen) in the shard's ClusterKopfPeering, and a standby resumes once the
active one's entry has expired. The operator's peering identity is its host-lock instance
(kapistrano.hosts.lock.INSTANCE), so the same expiry tells the host locks which instance is gone:
this module reads the peering object every PEERING_POLL_SECONDS and records in
kapistrano.hosts.takeover.DEPARTED every peer seen alive whose entry then expired or vanished (and
every expired entry found), forgetting a peer that shows up alive again. What a departure allows,
and why it is safe when the peer is in fact alive but cut off, is in hosts/takeover.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kapistrano.hosts.takeover import DEPARTED, Departures
from kapistrano.k8s import kubeapi

log = logging.getLogger(__name__)

#: How often the peering object is read; far below the peering lifetime.
PEERING_POLL_SECONDS = 1.0
#: kopf's lifetime for a peer that gives none.
DEFAULT_LIFETIME_SECONDS = 60


def _expiry(info: Mapping[str, Any]) -> datetime | None:
    """When a peering entry expires; None when it cannot be read (pure)."""
    try:
        seen = datetime.fromisoformat(str(info["lastseen"]))
        lifetime = int(info.get("lifetime", DEFAULT_LIFETIME_SECONDS))
    except (KeyError, TypeError, ValueError):
        return None
    return (seen if seen.tzinfo else seen.replace(tzinfo=UTC)) + timedelta(seconds=lifetime)


def judge(status: Mapping[str, Any], now: datetime) -> tuple[set[str], set[str]]:
    """(alive, expired) peer identities of a peering object's status at `now` (pure)."""
    alive: set[str] = set()
    expired: set[str] = set()
    for identity, info in status.items():
        until = _expiry(info) if isinstance(info, Mapping) else None
        if until is None:
            continue
        (alive if until > now else expired).add(identity)
    return alive, expired


@dataclass
class PeerWatch:
    """Successive readings of one peering object turned into departures."""

    own: str
    seen: set[str] = field(default_factory=set)

    def read(self, status: Mapping[str, Any], now: datetime) -> tuple[set[str], set[str]]:
        """(gone, alive) peers after this reading: expired, or seen alive before and absent now (changes `seen`)."""
        alive, expired = judge(status, now)
        gone = (expired | (self.seen - alive)) - {self.own}
        self.seen = alive - {self.own}
        return gone, alive


def read_peering(name: str) -> Mapping[str, Any]:
    """The status of ClusterKopfPeering `name` (blocking network I/O)."""
    body = kubeapi.custom_objects().get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
    status = body.get("status") if isinstance(body, Mapping) else None
    return status if isinstance(status, Mapping) else {}


class PeerFollower:
    """Follows one peering object and records its peers' departures."""

    def __init__(self, name: str, own: str, departures: Departures = DEPARTED) -> None:
        self.name = name
        self.watch = PeerWatch(own)
        self.departures = departures
        self._failing = False

    async def sync(self) -> None:
        """Read the peering object now and record departures; a failed read keeps what is known (network I/O)."""
        try:
            status = await asyncio.to_thread(read_peering, self.name)
        except Exception as exc:  # the API server may be away for a while
            if not self._failing:
                log.warning("reading peering %s failed: %s", self.name, exc)
            self._failing = True
            return
        self._failing = False
        gone, alive = self.watch.read(status, datetime.now(UTC))
        new = sorted(peer for peer in gone if peer not in self.departures)
        if new:
            log.info("peers gone from %s: %s", self.name, ", ".join(new))
        self.departures.update(gone, alive)

    async def run(self) -> None:
        """Sync every PEERING_POLL_SECONDS until cancelled (network I/O)."""
        while True:
            await self.sync()
            await asyncio.sleep(PEERING_POLL_SECONDS)


#: The follower of this operator's peering, when it peers cluster-wide (set by `kapistrano run`).
FOLLOWER: PeerFollower | None = None


async def sync() -> None:
    """Bring the departures up to date before acting, when the operator peers (network I/O)."""
    if FOLLOWER is not None:
        await FOLLOWER.sync()
