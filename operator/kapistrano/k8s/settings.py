"""How the operator runs: kopf settings, and the options `kapistrano run` passes to them.

- Persistence: kopf keeps its progress and the last handled spec in annotations under the
  `kapistrano.dev` prefix, and its finalizer is `kapistrano.dev/finalizer`. The finalizer is kopf's
  way to stop the per-Release daemon before the object goes away; deleting a Release never touches
  its hosts (they keep running the last release) beyond releasing its host locks.
- Peering: by default the operator runs standalone (no peering objects needed). Run two replicas
  only with `--peering NAME` (kopf peering, the KopfPeering CRD installed): the replicas then elect
  one active operator by priority, so two operators never roll the same Release at once. The host
  lock (`<deployTo>/.kapistrano.lock`) is a second guard: its owner is the Release's uid and the
  process holding it, so a second process running the same Release is kept out too. A deleted
  Release's daemon releases its host locks before it ends. The peering identity is the host-lock
  instance and the keep-alive lifetime short (k8s/sharding.py), so a standby resumes a few seconds
  after its active peer died and takes its host locks over (k8s/peers.py, hosts/takeover.py).
- Shards: `--shards M` with `--shard N` or `--ordinal I` serves only the Releases of one shard, with
  its own peering name and finalizer (k8s/sharding.py).
- Posting: kopf's own log lines are posted as Events only from WARNING up; host transitions are
  posted by kapistrano.k8s.events.
- Liveness: `--liveness URL` (e.g. http://0.0.0.0:8080/healthz) serves kopf's liveness endpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import kopf

from kapistrano.api.release import GROUP
from kapistrano.hosts.hub import DEFAULT_MAX_CONNECTIONS, DEFAULT_SLOTS
from kapistrano.k8s.sharding import PEERING_LIFETIME_SECONDS, Placement


@dataclass
class RunOptions:
    """Options of `kapistrano run` that handlers read at startup."""

    metrics_port: int = 9090
    #: How often a Release whose Secret is missing or invalid is checked again.
    credentials_recheck_seconds: float = 10.0
    #: How often a stalled (non-terminal, e.g. Conflict) or timed-out Release is tried again.
    retry_seconds: float = 30.0
    namespaces: list[str] = field(default_factory=list)
    #: Refuse Releases with spec.ssh.insecureSkipHostKeyCheck (Stalled, InsecureHostKeysForbidden).
    forbid_insecure_host_keys: bool = False
    #: The shard this replica serves and its rank there.
    placement: Placement = field(default_factory=Placement)
    #: Whether replicas peer (kopf peering): then the keep-alive lifetime is short.
    peering: bool = False
    #: SSH connections open at once, all Releases together (kapistrano.hosts.hub).
    max_ssh_connections: int = DEFAULT_MAX_CONNECTIONS
    #: SSH connects and commands admitted at once, shared round-robin by the Releases.
    ssh_concurrency: int = DEFAULT_SLOTS


OPTIONS = RunOptions()


def configure(settings: kopf.OperatorSettings) -> None:
    """Apply kapistrano's kopf settings (changes `settings`)."""
    settings.persistence.finalizer = OPTIONS.placement.finalizer
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.connect_timeout = 60
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # A daemon is told to stop when its Release is deleted; give a running step time to finish.
    settings.process.ultimate_exiting_timeout = 30
    if OPTIONS.peering:
        settings.peering.lifetime = PEERING_LIFETIME_SECONDS
        settings.peering.priority = OPTIONS.placement.priority
        settings.peering.mandatory = True
        settings.peering.stealth = True
