"""Which operator replica serves which Release: shards, and kopf peering inside each shard (pure).

- Shard of a Release: the label `kapistrano.dev/shard=<n>` when it names a shard (0 <= n < shards);
  otherwise (no label, or a label naming no shard) a consistent hash of the Release's uid, so every
  Release is served by exactly one shard and an unlabelled one stays in its shard for its lifetime.
  Changing the number of shards moves unlabelled Releases: the host locks keep a Release moving
  between shards from being acted on by two operators at once.
- Replicas: the pods of a StatefulSet, ordinal i serving shard i % shards with rank i // shards;
  rank 0 is the preferred (active) replica, higher ranks are hot standbys.
- Peering: the replicas of a shard peer through the ClusterKopfPeering `<name>-shard-<n>` (just
  `<name>` unsharded); a replica's kopf priority falls with its rank, so the rank-0 replica is active
  and a standby takes over when its keep-alive has not been seen for PEERING_LIFETIME_SECONDS.
- Finalizer: kopf removes its finalizer from objects its handlers do not serve, so each shard has its
  own: shard 0 keeps `kapistrano.dev/finalizer` (an unsharded install's Releases keep theirs, and
  shard 0 clears it from Releases of other shards), shard n > 0 uses `kapistrano.dev/finalizer-shard-<n>`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from kapistrano.api.release import GROUP

SHARD_LABEL = f"{GROUP}/shard"
FINALIZER = f"{GROUP}/finalizer"
#: Seconds a replica's peering keep-alive stays valid; it is renewed every 1 to 5 s (kopf: lifetime - 5..10).
PEERING_LIFETIME_SECONDS = 10
#: The kopf priority of a rank-0 replica; each further rank is one lower.
TOP_PRIORITY = 100


@dataclass(frozen=True)
class Placement:
    """Where one operator replica sits: its shard among `shards`, and its rank in the shard."""

    shard: int = 0
    shards: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        if self.shards < 1 or not 0 <= self.shard < self.shards or self.rank < 0:
            raise ValueError(f"no shard {self.shard} of {self.shards} (rank {self.rank})")

    @property
    def priority(self) -> int:
        """The kopf peering priority: the lower the rank, the higher (pure)."""
        return TOP_PRIORITY - self.rank

    @property
    def finalizer(self) -> str:
        """The finalizer this replica's kopf manages (pure)."""
        return FINALIZER if self.shard == 0 else f"{FINALIZER}-shard-{self.shard}"

    def peering_name(self, base: str) -> str:
        """The peering object of this replica's shard (pure)."""
        return base if self.shards == 1 else f"{base}-shard-{self.shard}"

    def serves(self, labels: Mapping[str, str], uid: str) -> bool:
        """Whether a Release with these labels and uid is this replica's to serve (pure)."""
        return shard_of(labels, uid, self.shards) == self.shard


def placement_of(ordinal: int, shards: int) -> Placement:
    """The shard and rank of StatefulSet pod `ordinal` (pure)."""
    if ordinal < 0:
        raise ValueError(f"negative ordinal {ordinal}")
    return Placement(shard=ordinal % shards, shards=shards, rank=ordinal // shards)


def ordinal_of(pod_name: str) -> int | None:
    """The ordinal at the end of a StatefulSet pod's name (`kapistrano-3` -> 3), None without one (pure)."""
    _, _, tail = pod_name.rpartition("-")
    return int(tail) if tail.isdigit() else None


def hashed_shard(uid: str, shards: int) -> int:
    """The shard of an unlabelled Release: a stable hash of its uid (pure)."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_of(labels: Mapping[str, str], uid: str, shards: int) -> int:
    """The shard serving a Release: its shard label when it names one, else the hash of its uid (pure)."""
    value = labels.get(SHARD_LABEL, "")
    if value.isdigit() and int(value) < shards:
        return int(value)
    return hashed_shard(uid, shards)
