"""What one kapistrano process allows itself over SSH, shared by every Release it serves.

- At most `max_connections` connections open at once. A connection needing a place when all are
  taken closes the least recently used idle one (LRU); when none is idle it waits for one to be.
  A closed connection reconnects by itself at its next command (hosts/ssh.py). Connections idle
  for `idle_seconds` are closed.
- Connects and commands are admitted by a FairScheduler (hosts/scheduler.py): `slots` leases,
  round-robin by Release. A lease is short (SLOT_LEASE_SECONDS): a command that waits on the host
  (a drain, a hook, a fetch) runs on without its slot, so waiting never starves anyone.
- A host whose last connect failed connects in its own lane (a few slots of its own), so a dead
  half of a fleet cannot take the slots the live half needs, whatever its connect timeout.

Jump host connections are not counted: each lives and dies with the connection it carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import AsyncIterator
from typing import Protocol

from kapistrano.hosts.scheduler import SLOT_LEASE_SECONDS, Admitted, FairScheduler, _ignore

log = logging.getLogger(__name__)

#: asyncssh keeps ~21 KiB per idle connection (benchmarks/README.md): a thousand cost ~20 MiB,
#: while a bound below the hosts read in turn makes every reading a new handshake (LRU thrashes).
DEFAULT_MAX_CONNECTIONS = 1000
#: Open files kept free of SSH connections (API clients, the metrics server, logs).
FILES_HEADROOM = 256
DEFAULT_SLOTS = 64
DEFAULT_IDLE_SECONDS = 60.0
#: A connection used this recently is not closed for another (a probe's TCP stream may still be open on it).
MIN_IDLE_SECONDS = 1.0


class Pooled(Protocol):
    """What the hub needs from a connection (hosts/ssh.py SshConnection)."""

    key: str
    busy: int
    failed_connects: int
    last_used: float

    @property
    def name(self) -> str:
        """The host's name."""
        ...

    @property
    def is_open(self) -> bool:
        """True while connected."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...


class SshHub:
    """The process-wide bound on SSH connections and the fair gate for SSH work (asyncio; one event loop)."""

    def __init__(
        self,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        slots: int = DEFAULT_SLOTS,
        *,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        lease: float = SLOT_LEASE_SECONDS,
        on_admit: Admitted = _ignore,
        min_idle: float = MIN_IDLE_SECONDS,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.idle_seconds = idle_seconds
        self.min_idle = min_idle
        self.scheduler = FairScheduler(slots, lease, on_admit)
        #: Connects to hosts whose last connect failed: a lane of their own.
        self.suspects = FairScheduler(max(1, slots // 8), lease, on_admit)
        #: Connections holding a place, least recently used first.
        self._places: dict[Pooled, None] = {}
        self._closing: set[Pooled] = set()
        self._changed = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        #: The most places ever held at once (for tests and metrics).
        self.peak = 0

    @property
    def open_count(self) -> int:
        """Connections holding a place now (pure)."""
        return len(self._places)

    @contextlib.asynccontextmanager
    async def connecting(self, conn: Pooled) -> AsyncIterator[None]:
        """A place for the connection and a connect slot in its lane; the place is given up if the body fails."""
        await self._place(conn)
        lane = self.suspects if conn.failed_connects else self.scheduler
        try:
            async with lane.slot(conn.key, f"connect {conn.name}"):
                yield
        except BaseException:
            self.release(conn)
            raise

    def command(self, conn: Pooled, what: str) -> contextlib.AbstractAsyncContextManager[None]:
        """A slot for one command or stream open on a connection (side effects: none)."""
        return self.scheduler.slot(conn.key, what)

    def touch(self, conn: Pooled) -> None:
        """Mark a connection used now: last in the LRU order; an idle one may be taken (changes the order)."""
        if conn in self._places:
            del self._places[conn]
            self._places[conn] = None
        conn.last_used = asyncio.get_running_loop().time()
        if conn.busy == 0:
            self._wake()

    def release(self, conn: Pooled) -> None:
        """A connection closed: its place is free (wakes waiters)."""
        self._places.pop(conn, None)
        self._closing.discard(conn)
        self._wake()

    async def _place(self, conn: Pooled) -> None:
        """Wait for a place for `conn`, closing the least recently used idle connection when all are taken."""
        self._start_reaper()
        while conn not in self._places or conn in self._closing:  # one being closed gets a place anew
            if conn not in self._places and len(self._places) < self.max_connections:
                self._places[conn] = None
                self.peak = max(self.peak, len(self._places))
                return
            victim = self._victim()
            if victim is not None:
                await self._close(victim)
                continue
            self._changed.clear()
            with contextlib.suppress(TimeoutError):  # time passing makes connections idle enough too
                await asyncio.wait_for(self._changed.wait(), self.min_idle or None)

    def _victim(self) -> Pooled | None:
        """The least recently used connection that may be closed now: idle, or dead (pure read)."""
        now = asyncio.get_running_loop().time()
        idle = (c for c in self._places if c.busy == 0 and c not in self._closing)
        return next((c for c in idle if not c.is_open or now - c.last_used >= self.min_idle), None)

    async def _close(self, conn: Pooled) -> None:
        """Close one connection to free its place (side effect: network)."""
        self._closing.add(conn)
        try:
            await conn.close()
        except Exception:  # a close that fails still frees the place
            log.warning("closing the connection to %s failed", conn.name, exc_info=True)
        finally:
            self.release(conn)

    def _wake(self) -> None:
        """Let waiters for a place look again (side effect: an event)."""
        self._changed.set()

    def _start_reaper(self) -> None:
        """Start closing idle connections in the background, once (side effect: a task)."""
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        """Close connections idle for idle_seconds, looking every quarter of that (network I/O)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.idle_seconds / 4)
            now = loop.time()
            stale = [c for c in self._places if c.busy == 0 and c not in self._closing]
            stale = [c for c in stale if not c.is_open or now - c.last_used >= self.idle_seconds]
            for conn in stale:
                await self._close(conn)

    async def close(self) -> None:
        """Stop the reaper and close every connection (network I/O)."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        for conn in list(self._places):
            await self._close(conn)


_PROCESS_HUBS: dict[int, tuple[asyncio.AbstractEventLoop, SshHub]] = {}


def process_hub(max_connections: int = DEFAULT_MAX_CONNECTIONS, slots: int = DEFAULT_SLOTS) -> SshHub:
    """The hub every Release of this process shares, made on first use in the running loop (changes a registry)."""
    loop = asyncio.get_running_loop()
    found = _PROCESS_HUBS.get(id(loop))
    if found is None or found[0] is not loop:
        found = (loop, SshHub(max_connections, slots))
        _PROCESS_HUBS[id(loop)] = found
    return found[1]


def soft_files_limit(wanted: int, soft: int, hard: int) -> int | None:
    """The soft RLIMIT_NOFILE to set for `wanted` open files, never above `hard`; None when `soft` is enough (pure)."""
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    return wanted if wanted > soft else None


def connections_fit(requested: int, soft: int, hard: int) -> tuple[int | None, int]:
    """The soft open-files limit to set (None: keep it) and how many connections then fit (pure)."""
    raised = soft_files_limit(requested + FILES_HEADROOM, soft, hard)
    return raised, max(1, min(requested, (raised or soft) - FILES_HEADROOM))


def fit_connections(requested: int) -> int:
    """Raise the soft open-files limit for `requested` connections; the count that fits (side effect: rlimit).

    A container's soft limit is often 1024: without this the thousandth connect fails with EMFILE.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised, fits = connections_fit(requested, soft, hard)
    if raised is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if fits < requested:
        log.warning("only %d SSH connections fit the open-files limit (asked for %d)", fits, requested)
    return fits
