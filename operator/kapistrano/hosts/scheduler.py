"""A fair admission gate for SSH work: a bounded number of slots, waiters served round-robin by Release.

Every Release (a key) queues its own waiters; a freed slot goes to the next key in turn, so a
Release with 500 hosts queued cannot make a 10-host Release wait behind all of them: the small one
is served within one round of the keys waiting. A slot is a *lease*: it is given back when the work
ends or after `lease` seconds, whichever comes first, so work that waits on the host (a drain, a
hook, a fetch, a connect to a host that does not answer) never keeps a slot others need.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: How long one admitted piece of work keeps its slot at most.
SLOT_LEASE_SECONDS = 1.0


class RoundRobin(Generic[T]):
    """Items queued per key; pop() takes the oldest item of the key whose turn it is (no I/O).

    Keys take turns in the order they started waiting; a key served goes to the back of the ring.
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[T]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def push(self, key: str, item: T) -> None:
        """Queue an item under its key (changes the queue)."""
        self._queues.setdefault(key, deque()).append(item)

    def pop(self) -> tuple[str, T] | None:
        """The next (key, item) in turn, None when empty (changes the queue)."""
        if not self._queues:
            return None
        key = next(iter(self._queues))
        queue = self._queues.pop(key)
        item = queue.popleft()
        if queue:
            self._queues[key] = queue  # back of the ring
        return key, item

    def keys(self) -> frozenset[str]:
        """The keys with items queued (pure)."""
        return frozenset(self._queues)

    def remove(self, key: str, item: T) -> bool:
        """Take an item out (a waiter that gave up); False if it was not queued (changes the queue)."""
        queue = self._queues.get(key)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._queues[key]
        return True


#: Told of each admission: the key, what it is for, and the keys still waiting.
Admitted = Callable[[str, str, frozenset[str]], None]


def _ignore(key: str, what: str, waiting: frozenset[str]) -> None:
    """The default admission hook: nothing (pure)."""


class FairScheduler:
    """`slots` leases shared by every key, handed out round-robin by key (asyncio; no threads)."""

    def __init__(self, slots: int, lease: float = SLOT_LEASE_SECONDS, on_admit: Admitted = _ignore) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.lease = lease
        self.on_admit = on_admit
        self._free = slots
        self._waiting: RoundRobin[tuple[asyncio.Future[None], str]] = RoundRobin()

    @property
    def in_use(self) -> int:
        """Slots leased now (pure)."""
        return self.slots - self._free

    @property
    def waiting(self) -> int:
        """Waiters queued now (pure)."""
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, key: str, what: str = "") -> AsyncIterator[None]:
        """Hold a slot for the body, or until the lease ends (waits in `key`'s queue; side effects: none)."""
        await self._acquire(key, what)
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self._release()

        timer = asyncio.get_running_loop().call_later(self.lease, give_back) if math.isfinite(self.lease) else None
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            give_back()

    async def _acquire(self, key: str, what: str) -> None:
        """Take a free slot, or wait in the key's queue for one handed over (side effects: none)."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            self.on_admit(key, what, self._waiting.keys())
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, what)
        self._waiting.push(key, entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if not self._waiting.remove(key, entry) and waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as we gave up: pass it on
            raise

    def _release(self) -> None:
        """Hand a slot to the next waiter in turn, or free it (wakes a waiter; tells on_admit at the hand-over)."""
        while (turn := self._waiting.pop()) is not None:
            key, (waiter, what) = turn
            if not waiter.done():
                waiter.set_result(None)
                self.on_admit(key, what, self._waiting.keys())
                return
        self._free += 1
