"""When the same Release's lock may pass from one process to another: the takeover rules.

A host lock names the process instance holding it. Another process of the same Release (an operator
replica) takes it over only when that instance is known gone:

- dead here: a process of this very machine whose pid no longer runs. Certain, so at once.
- departed: named gone by the operator's peering (its keep-alive expired, see k8s/peers.py). That is
  a belief, not a proof: a replica cut off from the API server still runs and may still act on hosts.
  So its lock is taken only once it has not been refreshed for TAKEOVER_GRACE_SECONDS. A process
  refreshes the lock of every host it acts on every ACTION_HEARTBEAT_SECONDS and confirms it right
  before it starts an action, so a lock refreshed that recently may belong to a running action; one
  older than the grace belongs to no action, and its holder, should it live, finds the lock no longer
  its own at its next refresh or confirmation and stops acting on that host (hosts/lock.heartbeat).
- stale: not refreshed for STALE_SECONDS, whoever it is (lock.py, in the lock script itself).

What this does not cover: a holder whose refreshes all fail or stall for longer than the grace while
its action goes on (refreshes and action share one SSH connection, so this takes a host that still
runs the action's commands but not the refresh in 10 s); the holder then learns of the loss at its
next refresh. A holder could fence itself (stop when it has not refreshed for less than the grace);
it does not, as a slow machine would then stop actions that nobody took over.

Departures are recorded here by whoever learns them (the operator's peering watch); the host layer
reads them without knowing where they come from.
"""

from __future__ import annotations

import threading

#: A lock of a departed instance refreshed this recently may be held by a running action: not taken yet.
TAKEOVER_GRACE_SECONDS = 10
#: How often a lock is refreshed while an action runs on its host; well under the grace.
ACTION_HEARTBEAT_SECONDS = 3.0
#: How often a departed instance's lock is tried again while its grace runs.
TAKEOVER_POLL_SECONDS = 1.0


def takeover_grace(*, dead_here: bool, departed: bool) -> int | None:
    """Seconds since its last refresh after which a sibling's lock may be taken; None: not at all (pure)."""
    if dead_here:
        return 0
    if departed:
        return TAKEOVER_GRACE_SECONDS
    return None


def grace_wait_limit(grace: int) -> float:
    """How long to keep trying a departed sibling's lock before calling it a conflict (pure).

    A lock nobody refreshes any more becomes takeable within `grace` seconds of our first try; one
    still refreshed past grace plus two polls belongs to a live process (a partitioned replica).
    """
    return grace + 2 * TAKEOVER_POLL_SECONDS


class Departures:
    """Process instances known to be gone, as told by the operator's peering (thread-safe)."""

    def __init__(self) -> None:
        self._gone: set[str] = set()
        self._lock = threading.Lock()

    def update(self, gone: set[str], alive: set[str]) -> None:
        """Add instances now gone and forget those alive again (changes the set)."""
        with self._lock:
            self._gone = (self._gone | gone) - alive

    def __contains__(self, instance: object) -> bool:
        """Whether an instance is known to be gone (reads the set)."""
        with self._lock:
            return instance in self._gone

    def clear(self) -> None:
        """Forget every departure (changes the set)."""
        with self._lock:
            self._gone.clear()


#: Departures of this process's peers; empty when the operator runs without peering.
DEPARTED = Departures()
