"""The fair SSH gate and the connection bound: round-robin order, leases, cancellation, LRU eviction."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kapistrano.hosts.hub import SshHub
from kapistrano.hosts.scheduler import FairScheduler, RoundRobin

pushes = st.lists(st.tuples(st.sampled_from("abcde"), st.integers()), max_size=60)


@given(pushes)
def test_round_robin_serves_every_item_once_in_fifo_order_per_key(items: list[tuple[str, int]]) -> None:
    queue: RoundRobin[tuple[int, int]] = RoundRobin()
    for n, (key, value) in enumerate(items):
        queue.push(key, (n, value))
    popped = []
    while (turn := queue.pop()) is not None:
        popped.append(turn)
    assert sorted(n for _, (n, _) in popped) == list(range(len(items)))
    for key in set(k for k, _ in items):
        order = [n for k, (n, _) in popped if k == key]
        assert order == sorted(order)
    assert len(queue) == 0


@given(pushes)
def test_round_robin_never_serves_a_key_twice_while_another_waits_for_its_turn(items: list[tuple[str, int]]) -> None:
    queue: RoundRobin[int] = RoundRobin()
    remaining: Counter[str] = Counter()
    for key, value in items:
        queue.push(key, value)
        remaining[key] += 1
    served: Counter[str] = Counter()
    while (turn := queue.pop()) is not None:
        key = turn[0]
        waiting = [k for k, left in remaining.items() if left]
        assert served[key] == min(served[k] for k in waiting), "a key was served ahead of its turn"
        served[key] += 1
        remaining[key] -= 1


def test_round_robin_forgets_a_removed_item() -> None:
    queue: RoundRobin[int] = RoundRobin()
    queue.push("a", 1)
    queue.push("b", 2)
    assert queue.remove("a", 1)
    assert not queue.remove("a", 1)
    assert queue.keys() == frozenset({"b"})
    assert queue.pop() == ("b", 2)


async def _until(condition: object) -> None:
    """Let other tasks run until the condition holds (no clock involved)."""
    for _ in range(10_000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_small_release_is_served_within_one_turn_of_a_big_queue() -> None:
    admitted: list[str] = []
    gate = FairScheduler(1, lease=float("inf"), on_admit=lambda key, what, waiting: admitted.append(key))
    hold = asyncio.Event()

    async def work(key: str) -> None:
        async with gate.slot(key):
            await hold.wait() if key == "first" else None

    first = asyncio.create_task(work("first"))
    await _until(lambda: gate.in_use == 1)
    big = [asyncio.create_task(work("big")) for _ in range(20)]
    await _until(lambda: gate.waiting == 20)
    small = asyncio.create_task(work("small"))
    await _until(lambda: gate.waiting == 21)
    hold.set()
    await asyncio.gather(first, small, *big)
    assert admitted.index("small") <= 2, admitted  # first, at most one big, then small


async def test_a_lease_gives_the_slot_back_while_the_work_still_runs() -> None:
    gate = FairScheduler(1, lease=0.01)
    release_first = asyncio.Event()
    second_in = asyncio.Event()

    async def long() -> None:
        async with gate.slot("a"):
            await release_first.wait()

    async def short() -> None:
        async with gate.slot("b"):
            second_in.set()

    first = asyncio.create_task(long())
    await _until(lambda: gate.in_use == 1)
    second = asyncio.create_task(short())
    await second_in.wait()  # admitted although the first still works
    assert not first.done()
    release_first.set()
    await asyncio.gather(first, second)
    assert gate.in_use == 0


async def test_a_waiter_that_gives_up_leaves_no_slot_taken() -> None:
    gate = FairScheduler(1, lease=float("inf"))
    hold = asyncio.Event()

    async def work() -> None:
        async with gate.slot("a"):
            await hold.wait()

    first = asyncio.create_task(work())
    await _until(lambda: gate.in_use == 1)
    quitter = asyncio.create_task(work())
    await _until(lambda: gate.waiting == 1)
    quitter.cancel()
    await asyncio.gather(quitter, return_exceptions=True)
    hold.set()
    await first
    assert (gate.in_use, gate.waiting) == (0, 0)


class FakeConnection:
    """A connection the hub can count, close and evict."""

    def __init__(self, name: str, key: str = "r") -> None:
        self.name = name
        self.key = key
        self.busy = 1
        self.failed_connects = 0
        self.last_used = 0.0
        self.open = False
        self.closed = 0

    @property
    def is_open(self) -> bool:
        return self.open

    async def close(self) -> None:
        self.open = False
        self.closed += 1


async def test_the_hub_closes_the_least_recently_used_idle_connection_for_a_new_one() -> None:
    hub = SshHub(2, 4, min_idle=0.0)
    a, b, c = FakeConnection("a"), FakeConnection("b"), FakeConnection("c")
    for conn in (a, b):
        async with hub.connecting(conn):
            conn.open = True
    waiting = asyncio.create_task(_connect(hub, c))
    await _until(lambda: hub.open_count == 2 and not waiting.done())
    b.busy = 0
    hub.touch(b)  # b goes idle first
    a.busy = 0
    hub.touch(a)
    await waiting
    assert (a.closed, b.closed, hub.open_count, hub.peak) == (0, 1, 2, 2)
    await hub.close()
    assert hub.open_count == 0


async def test_a_failed_connect_gives_its_place_back_and_goes_to_the_suspect_lane() -> None:
    hub = SshHub(1, 8)
    dead = FakeConnection("dead")
    with pytest.raises(OSError, match="no route"):
        async with hub.connecting(dead):
            raise OSError("no route")
    assert hub.open_count == 0
    dead.failed_connects = 1
    lanes: list[int] = []
    async with hub.connecting(dead):
        lanes.append(hub.suspects.in_use)
    assert lanes == [1]
    await hub.close()


async def _connect(hub: SshHub, conn: FakeConnection) -> None:
    async with hub.connecting(conn):
        conn.open = True


class SlowClose(FakeConnection):
    """A connection whose close waits until let go."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.let_go = asyncio.Event()
        self.closing = False

    async def close(self) -> None:
        self.closing = True
        await self.let_go.wait()
        await super().close()


async def test_a_connection_used_again_while_the_hub_closes_it_waits_for_a_place_anew() -> None:
    hub = SshHub(1, 4, min_idle=0.0)
    old = SlowClose("old")
    await _connect(hub, old)
    old.busy = 0
    hub.touch(old)
    newcomer = FakeConnection("new")
    taking = asyncio.create_task(_connect(hub, newcomer))  # closes `old` to take its place
    await _until(lambda: old.closing)
    old.busy = 1
    again = asyncio.create_task(_connect(hub, old))  # its owner runs a command meanwhile
    for _ in range(50):
        await asyncio.sleep(0)
    assert not again.done(), "reconnected on the place being taken away"
    old.let_go.set()
    await taking
    assert not again.done()
    assert hub.open_count == 1  # the newcomer holds the only place
    newcomer.busy = 0
    hub.touch(newcomer)
    await again
    assert hub.open_count == 1
    assert hub.peak == 1
    await hub.close()
