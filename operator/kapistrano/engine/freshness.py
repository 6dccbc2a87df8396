"""How long a host's reading stays fresh during a rollout (pure).

Hosts not being acted on are re-read in the background so that the plan counts a host that went
down by itself. At hundreds of hosts per operator those reads are most of its SSH work, so only the
hosts the plan may act on next are kept fresh every FULL_OBSERVE_SECONDS; hosts done, or waiting
further down the order, every SETTLED_OBSERVE_SECONDS, or less often when the process rolls out
many hosts, so that the settled hosts of all its rollouts together cost at most
SETTLED_READS_PER_SECOND readings a second (500 hosts, in one Release or in fifty: every 50 s, about
Kubernetes' own grace before it calls a silent node NotReady). No plan uses a reading older than its
period.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from kapistrano.api.spec import ReleaseSpec
from kapistrano.plan import HostObservation
from kapistrano.plan.budget import max_unavailable

#: Hosts the plan may act on next are re-read at least this often.
FULL_OBSERVE_SECONDS = 5.0
#: Hosts done (on the spec's version, ready, nothing to stop or resume) or far down the order.
SETTLED_OBSERVE_SECONDS = 15.0
#: Readings a second the process spends on settled hosts at most (stretching their period).
SETTLED_READS_PER_SECOND = 10.0
#: A host that could not be read is tried again after this long (not at every step: a dead host
#: would make every step wait for its connect timeout).
RETRY_OBSERVE_SECONDS = 1.0


def is_done(found: HostObservation, spec: ReleaseSpec) -> bool:
    """Whether a host runs the spec's version, ready, with nothing left to stop or resume (pure)."""
    return (
        found.version == spec.version
        and found.ready is True
        and found.services_running is not False
        and not found.orphans
        and found.underway is None
    )


def soon_hosts(spec: ReleaseSpec, observations: Mapping[str, HostObservation]) -> frozenset[str]:
    """The hosts the plan may act on next: every one not done when role budgets pick out of order,
    else the first 2 x (maxUnavailable + maxSurge) not done, in spec order (pure)."""
    pending = [h.name for h in spec.hosts if (o := observations.get(h.name)) is None or not is_done(o, spec)]
    if spec.strategy.roles:
        return frozenset(pending)
    total = len(spec.hosts)
    slots = max_unavailable(spec.strategy.max_unavailable, total) + max_unavailable(spec.strategy.max_surge, total)
    return frozenset(pending[: 2 * slots])


def reading_period(found: HostObservation, spec: ReleaseSpec | None, *, soon: bool = True, fleet: int = 0) -> float:
    """How long a host's reading stays fresh: short when it failed, long when done or not due soon (pure).

    `fleet` is how many hosts the process's rollouts read in all (this Release's at least).
    """
    if not found.reachable or found.error_reason is not None:
        return RETRY_OBSERVE_SECONDS
    if spec is None or (soon and not is_done(found, spec)):
        return FULL_OBSERVE_SECONDS
    return settled_period(max(len(spec.hosts), fleet))


def settled_period(hosts: int) -> float:
    """How long the reading of a settled host stays fresh in a Release of `hosts` hosts (pure)."""
    return max(SETTLED_OBSERVE_SECONDS, hosts / SETTLED_READS_PER_SECOND)


class Fleet:
    """The hosts of the rollouts running in this process, so that their settled readings share one rate."""

    def __init__(self) -> None:
        self._hosts: dict[object, int] = {}
        self._lock = threading.Lock()

    def join(self, rollout: object, hosts: int) -> None:
        """Count a rollout's hosts, replacing what it counted before (changes the registry)."""
        with self._lock:
            self._hosts[rollout] = hosts

    def leave(self, rollout: object) -> None:
        """Stop counting a rollout's hosts (changes the registry)."""
        with self._lock:
            self._hosts.pop(rollout, None)

    @property
    def hosts(self) -> int:
        """Every rollout's hosts together (reads the registry)."""
        with self._lock:
            return sum(self._hosts.values())


#: The rollouts of this process (all its Releases' engine runs).
FLEET = Fleet()
